"""The runner's decisions for one delivery: reject, run, describe the outcome, settle."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, Field

from common import (
    DeadReason,
    ErrorKind,
    InvalidParams,
    Outcome,
    PermanentTaskError,
    RetryableTaskError,
    SoftTimeLimitExceeded,
    TaskContext,
    TaskErrorInfo,
    TaskMessage,
    TaskRegistry,
    TimeLimitExceeded,
    current_task_context,
    encode,
)
from executor.decisions import (
    Action,
    Decision,
    decide,
    decide_cancelled,
    decide_rejection,
    fit_result,
    next_attempt,
)
from executor.jobs import Delivery, Job, Rejection, prepare
from executor.runner import Attempt, execute
from executor.threads import HandlerThreads

MAX_BODY = 10_000
SUBMITTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STARTED = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=2)
FINISHED_AT = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

registry = TaskRegistry()


class Summary(BaseModel):
    words: int
    first: str


class Unavailable(Exception):
    """A handler's own error type that its task options declare permanent."""


@registry.task()
def word_count(text: str, top: Annotated[int, Field(ge=1, le=10)] = 3) -> dict[str, int]:
    return {"words": len(text.split()), "top": top}


@registry.task()
async def shout(text: str) -> str:
    return text.upper()


@registry.task()
def explode(message: str) -> None:
    raise LookupError(message)


@registry.task()
async def explode_async(message: str) -> None:
    raise ValueError(message)


@registry.task()
def opaque() -> object:
    return object()


@registry.task()
def summarise(text: str) -> Summary:
    return Summary(words=len(text.split()), first=text.split()[0])


@registry.task()
def finished() -> datetime:
    return FINISHED_AT


@registry.task("flaky", max_retries=3, retry_backoff=2.0, retry_backoff_max=100.0)
def flaky() -> None:
    raise ConnectionError("try again")


@registry.task("fragile", max_retries=0)
def fragile() -> None:
    raise ConnectionError("no second chance")


@registry.task("slow", soft_time_limit=1.5, time_limit=3.0)
def slow() -> str:
    return "done"


@registry.task("slow_async", time_limit=0.001)
async def slow_async() -> None:
    await asyncio.Event().wait()  # never set: only the time limit ends it


@registry.task("impatient")
async def impatient() -> None:
    raise TimeoutError("upstream did not answer")  # the handler's own timeout, not a limit


@registry.task("impatient_sync", time_limit=30)
def impatient_sync() -> None:
    raise TimeoutError("upstream did not answer")  # a socket timeout, say


@registry.task("picky", permanent=(Unavailable,))
def picky() -> None:
    raise Unavailable("gone for good")


class RecordingThread:
    """A ``run_in_thread`` stand-in that runs the function inline and records its limits."""

    def __init__(self, *, raises: BaseException | None = None) -> None:
        self.calls = 0
        self.limits: list[tuple[float | None, float | None]] = []
        self.raises = raises

    async def __call__(
        self, fn: Callable[[], Any], *, soft_time_limit: float | None, time_limit: float | None
    ) -> Any:
        self.calls += 1
        self.limits.append((soft_time_limit, time_limit))
        if self.raises is not None:
            raise self.raises
        return fn()


def _task(
    task_type: str = "word_count", params: dict[str, Any] | None = None, *, attempt: int = 2
) -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(),
        task_type=task_type,
        params={"text": "to be or not to be"} if params is None else params,
        attempt=attempt,
        submitted_at=SUBMITTED,
    )


def _delivery(
    body: bytes,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    task_type: str | None = None,
    redelivered: bool = False,
) -> Delivery:
    return Delivery(body, message_id, correlation_id, task_type, redelivered)


def _prepare(delivery: Delivery) -> Job | Rejection:
    return prepare(delivery, registry, max_body_bytes=MAX_BODY)


def _job(task_type: str, params: dict[str, Any] | None = None, *, attempt: int = 2) -> Job:
    prepared = _prepare(_delivery(encode(_task(task_type, params or {}, attempt=attempt))))
    assert isinstance(prepared, Job)
    return prepared


def _rejection(delivery: Delivery) -> Rejection:
    prepared = _prepare(delivery)
    assert isinstance(prepared, Rejection)
    return prepared


async def _execute(job: Job, thread: RecordingThread | None = None) -> Attempt:
    return await execute(job, run_in_thread=thread or RecordingThread())


def _failed(exception: BaseException) -> Attempt:
    """An attempt whose handler raised ``exception``, as ``execute`` would describe it."""
    error = TaskErrorInfo(
        kind=ErrorKind.HANDLER_ERROR, type=type(exception).__name__, message=str(exception)
    )
    return Attempt(STARTED, FINISHED, error=error, exception=exception)


def _decide(job: Job, attempt: Attempt, *, seed: int = 0) -> Decision:
    return decide(job, attempt, executor="e1", redelivered=False, rng=random.Random(seed))


# prepare: validation before anything runs


def test_valid_task_becomes_a_job_with_validated_kwargs() -> None:
    task = _task(params={"text": "a b c"})

    job = _prepare(_delivery(encode(task)))

    assert isinstance(job, Job)
    assert job.task == task
    assert job.definition.name == "word_count"
    assert job.kwargs == {"text": "a b c", "top": 3}


def test_oversized_body_is_rejected_before_decoding() -> None:
    task_id = uuid4()
    body = b"{" + b" " * MAX_BODY + b"}"

    rejection = _rejection(_delivery(body, message_id=str(task_id), task_type="word_count"))

    assert rejection.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert rejection.task_id == task_id
    assert rejection.task_type == "word_count"
    assert str(MAX_BODY) in rejection.error.message


def test_body_at_the_limit_is_accepted() -> None:
    body = encode(_task())

    assert isinstance(prepare(_delivery(body), registry, max_body_bytes=len(body)), Job)


def test_non_json_body_is_rejected_with_the_id_from_message_id() -> None:
    task_id = uuid4()

    rejection = _rejection(_delivery(b"\x00garbage", message_id=str(task_id), task_type="x"))

    assert rejection.error.kind is ErrorKind.DECODE_ERROR
    assert rejection.error.type == "DecodeError"
    assert rejection.task_id == task_id
    assert rejection.task_type == "x"
    assert rejection.error.details == {"excerpt": "\x00garbage"}


def test_rejection_falls_back_to_correlation_id_and_an_unknown_type() -> None:
    task_id = uuid4()

    rejection = _rejection(_delivery(b"[]", message_id="junk", correlation_id=str(task_id)))

    assert rejection.task_id == task_id
    assert rejection.task_type == "unknown"


def test_unsupported_version_is_rejected() -> None:
    task_id = uuid4()
    body = json.dumps({"version": 2, "task_id": str(task_id)}).encode()

    rejection = _rejection(_delivery(body, message_id=str(task_id)))

    assert rejection.error.kind is ErrorKind.UNSUPPORTED_VERSION
    assert rejection.error.type == "UnsupportedVersion"
    assert rejection.task_id == task_id


def test_unknown_type_is_rejected_listing_the_known_types() -> None:
    task = _task("no_such_type")

    rejection = _rejection(_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.UNKNOWN_TASK_TYPE
    assert rejection.task_id == task.task_id
    assert rejection.task_type == "no_such_type"
    assert rejection.attempt == 2
    assert rejection.error.details == registry.names()


def test_invalid_params_are_rejected_with_pydantic_errors() -> None:
    task = _task(params={"text": "a", "top": 99})

    rejection = _rejection(_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.INVALID_PARAMS
    assert rejection.task_id == task.task_id
    assert isinstance(rejection.error.details, list)
    assert rejection.error.details[0] == {
        "loc": ["top"],
        "msg": "Input should be less than or equal to 10",
        "type": "less_than_equal",
    }


# decide_rejection: a message that can never run is dead-lettered


def test_rejection_without_any_task_id_is_dead_lettered_without_a_result() -> None:
    rejection = _rejection(_delivery(b"not json"))

    decision = decide_rejection(rejection, executor="e1", redelivered=False)

    assert rejection.task_id is None
    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.REJECTED
    assert decision.result is None
    assert decision.retry_in_s is None


def test_rejection_with_a_task_id_reports_a_dead_result() -> None:
    task = _task("no_such_type")
    rejection = _rejection(_delivery(encode(task)))

    decision = decide_rejection(rejection, executor="e1", redelivered=True)

    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.REJECTED
    result = decision.result
    assert result is not None
    assert result.task_id == task.task_id
    assert result.task_type == "no_such_type"
    assert result.outcome is Outcome.DEAD
    assert result.error == rejection.error
    assert result.result is None
    assert result.attempt == 2
    assert result.executor == "e1"
    assert result.redelivered
    assert result.retry_in_s is None
    assert result.started_at == result.finished_at
    assert result.finished_at.tzinfo is not None


# execute: run the handler and describe what happened


async def test_sync_handler_runs_through_run_in_thread() -> None:
    thread = RecordingThread()

    attempt = await _execute(_job("word_count", {"text": "a b"}), thread)

    assert thread.calls == 1
    assert attempt.value == {"words": 2, "top": 3}
    assert attempt.error is None
    assert attempt.exception is None


async def test_async_handler_runs_on_the_loop() -> None:
    thread = RecordingThread()

    attempt = await _execute(_job("shout", {"text": "hi"}), thread)

    assert thread.calls == 0
    assert attempt.value == "HI"


@pytest.mark.parametrize(
    ("task_type", "exc_type"), [("explode", "LookupError"), ("explode_async", "ValueError")]
)
async def test_handler_exception_becomes_the_attempts_error(task_type: str, exc_type: str) -> None:
    attempt = await _execute(_job(task_type, {"message": "no rate for XXX"}))

    assert attempt.value is None
    assert type(attempt.exception).__name__ == exc_type
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR
    assert attempt.error.type == exc_type
    assert attempt.error.message == "no rate for XXX"
    assert attempt.error.traceback is not None
    assert "Traceback" in attempt.error.traceback
    assert f"{exc_type}: no rate for XXX" in attempt.error.traceback


async def test_result_that_is_not_json_is_an_error() -> None:
    attempt = await _execute(_job("opaque"))

    assert attempt.value is None
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.RESULT_NOT_JSON
    assert "object" in attempt.error.message


async def test_pydantic_model_result_is_serialised() -> None:
    attempt = await _execute(_job("summarise", {"text": "hello world"}))

    assert attempt.value == {"words": 2, "first": "hello"}


async def test_datetime_result_is_serialised() -> None:
    job = _job("finished")
    attempt = await _execute(job)

    result = _decide(job, attempt).result

    assert attempt.value == "2030-05-06T07:08:09Z"
    assert result is not None
    assert json.loads(encode(result))["result"] == "2030-05-06T07:08:09Z"


async def test_attempt_is_timed_in_utc() -> None:
    before = datetime.now(UTC)

    attempt = await _execute(_job("shout", {"text": "x"}))

    assert before <= attempt.started_at <= attempt.finished_at <= datetime.now(UTC)


async def test_sync_handler_gets_its_time_limits_from_the_task_options() -> None:
    thread = RecordingThread()

    attempt = await _execute(_job("slow"), thread)

    assert thread.limits == [(1.5, 3.0)]
    assert attempt.value == "done"


async def test_handler_without_limits_runs_unlimited() -> None:
    thread = RecordingThread()

    await _execute(_job("word_count", {"text": "a"}), thread)

    assert thread.limits == [(None, None)]


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (TimeLimitExceeded(3.0), "ran longer than its hard time limit of 3s"),
        (SoftTimeLimitExceeded(), "ran past its soft time limit of 1.5s"),
    ],
)
async def test_sync_handler_past_a_time_limit_fails_for_good(
    raised: Exception, message: str
) -> None:
    job = _job("slow", attempt=1)
    attempt = await _execute(job, RecordingThread(raises=raised))

    decision = _decide(job, attempt)

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.TIME_LIMIT
    assert attempt.error.type == type(raised).__name__
    assert attempt.error.message == message
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


async def test_async_handler_is_cancelled_at_its_time_limit() -> None:
    attempt = await _execute(_job("slow_async"))

    assert isinstance(attempt.exception, TimeLimitExceeded)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.TIME_LIMIT
    assert attempt.error.type == "TimeLimitExceeded"


async def test_async_handlers_own_timeout_is_an_ordinary_retryable_error() -> None:
    job = _job("impatient", attempt=1)
    attempt = await _execute(job)

    decision = _decide(job, attempt)

    assert isinstance(attempt.exception, TimeoutError)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR
    assert decision.action is Action.RETRY


async def test_sync_handlers_own_timeout_is_an_ordinary_retryable_error() -> None:
    job = _job("impatient_sync", attempt=1)
    threads = HandlerThreads()

    attempt = await execute(job, run_in_thread=threads.run)
    threads.close()
    decision = _decide(job, attempt)

    assert isinstance(attempt.exception, TimeoutError)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR
    assert decision.action is Action.RETRY


# decide: succeeded, failed, retried or dead-lettered


async def test_success_is_acked_with_a_succeeded_result() -> None:
    job = _job("word_count", {"text": "a"})
    attempt = await _execute(job)

    decision = _decide(job, attempt)

    assert decision.action is Action.ACK
    assert decision.dead_reason is None
    assert decision.retry_in_s is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.SUCCEEDED
    assert decision.result.result == {"words": 1, "top": 3}
    assert decision.result.error is None


async def test_result_carries_executor_attempt_timing_and_redelivery() -> None:
    job = _job("word_count", {"text": "a"})
    attempt = await _execute(job)

    result = decide(job, attempt, executor="host.7", redelivered=True).result

    assert result is not None
    assert result.task_id == job.task.task_id
    assert result.task_type == "word_count"
    assert result.executor == "host.7"
    assert result.attempt == 2
    assert result.redelivered
    assert result.started_at == attempt.started_at
    assert result.finished_at == attempt.finished_at


async def test_retryable_failure_is_retried_after_a_backoff() -> None:
    job = _job("flaky", attempt=1)
    attempt = await _execute(job)

    decision = _decide(job, attempt, seed=42)

    # flaky: retry_backoff=2, so the first wait is between half of 2 s and 2 s.
    assert decision.action is Action.RETRY
    assert decision.dead_reason is None
    assert decision.retry_in_s is not None
    assert 1.0 <= decision.retry_in_s <= 2.0
    assert decision.result is not None
    assert decision.result.outcome is Outcome.RETRYING
    assert decision.result.retry_in_s == decision.retry_in_s
    assert decision.result.error == attempt.error
    assert decision.result.attempt == 1


def test_retry_delay_is_drawn_from_the_given_random_source() -> None:
    job = _job("flaky", attempt=1)
    attempt = _failed(ConnectionError("reset"))

    first = _decide(job, attempt, seed=7).retry_in_s
    again = _decide(job, attempt, seed=7).retry_in_s

    assert first == again


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0)])
def test_retry_delay_grows_with_the_attempt(attempt: int, ceiling: float) -> None:
    job = _job("flaky", attempt=attempt)

    delays = {_decide(job, _failed(OSError()), seed=s).retry_in_s for s in range(50)}

    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)


def test_last_allowed_retry_is_still_a_retry() -> None:
    job = _job("flaky", attempt=3)  # max_retries=3: attempts 2, 3 and 4 are the retries

    assert _decide(job, _failed(OSError())).action is Action.RETRY


def test_failure_after_the_last_retry_is_dead_lettered() -> None:
    job = _job("flaky", attempt=4)
    attempt = _failed(ConnectionError("still down"))

    decision = _decide(job, attempt)

    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.RETRIES_EXHAUSTED
    assert decision.retry_in_s is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.DEAD
    assert decision.result.error == attempt.error
    assert decision.result.attempt == 4
    assert decision.result.retry_in_s is None


async def test_task_type_without_retries_fails_instead_of_dead_lettering() -> None:
    # max_retries=0 opts out of retrying: an ordinary failure, not a dead letter.
    job = _job("fragile", attempt=1)
    attempt = await _execute(job)

    decision = _decide(job, attempt)

    assert decision.action is Action.ACK
    assert decision.dead_reason is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


@pytest.mark.parametrize(
    "exception",
    [PermanentTaskError("bad input"), InvalidParams("flaky", [{"loc": ["x"], "msg": "no"}])],
)
def test_permanent_errors_fail_at_once(exception: Exception) -> None:
    job = _job("flaky", attempt=1)

    decision = _decide(job, _failed(exception))

    assert decision.action is Action.ACK
    assert decision.retry_in_s is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED
    assert decision.result.error is not None
    assert decision.result.error.type == type(exception).__name__


async def test_exception_types_the_options_declare_permanent_fail_at_once() -> None:
    job = _job("picky", attempt=1)
    attempt = await _execute(job)

    decision = _decide(job, attempt)

    assert isinstance(attempt.exception, Unavailable)
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


def test_error_without_an_exception_fails_at_once() -> None:
    error = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="E", message="m")

    decision = _decide(_job("flaky", attempt=1), Attempt(STARTED, FINISHED, error=error))

    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


@pytest.mark.parametrize("delay", [7.0, 0.0, 5000.0])
def test_retryable_task_error_chooses_its_own_delay(delay: float) -> None:
    job = _job("flaky", attempt=2)

    decision = _decide(job, _failed(RetryableTaskError("rate limited", delay=delay)))

    assert decision.action is Action.RETRY
    assert decision.retry_in_s == delay
    assert decision.result is not None
    assert decision.result.retry_in_s == delay


def test_retryable_task_error_without_a_delay_uses_the_backoff() -> None:
    job = _job("flaky", attempt=1)

    decision = _decide(job, _failed(RetryableTaskError("later")))

    assert decision.retry_in_s is not None
    assert 1.0 <= decision.retry_in_s <= 2.0


def test_retryable_task_error_after_the_last_retry_is_dead_lettered() -> None:
    job = _job("flaky", attempt=4)

    decision = _decide(job, _failed(RetryableTaskError("later", delay=7)))

    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.RETRIES_EXHAUSTED


def test_negative_retry_delay_is_treated_as_no_wait() -> None:
    job = _job("flaky", attempt=1)

    decision = _decide(job, _failed(RetryableTaskError("clock skew", delay=-3)))

    assert decision.action is Action.RETRY
    assert decision.retry_in_s == 0


async def test_result_that_is_not_json_fails_at_once() -> None:
    job = _job("opaque", attempt=1)
    attempt = await _execute(job)

    decision = _decide(job, attempt)

    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


# next_attempt: the message a retry publishes


def test_next_attempt_is_the_same_task_one_attempt_later() -> None:
    task = _task(params={"text": "a b"}, attempt=2)

    retry = next_attempt(task)

    assert retry.attempt == 3
    assert retry.task_id == task.task_id
    assert retry.task_type == task.task_type
    assert retry.params == task.params
    assert retry.submitted_at == task.submitted_at
    assert task.attempt == 2


def test_next_attempt_survives_the_wire() -> None:
    retry = next_attempt(_task(attempt=1))

    prepared = _prepare(_delivery(encode(retry)))

    assert isinstance(prepared, Job)
    assert prepared.task == retry


async def test_result_within_the_size_limit_is_kept_as_it_is() -> None:
    job = _job("shout", {"text": "small"})
    decision = _decide(job, await _execute(job))
    assert decision.result is not None

    fitted, body = fit_result(decision.result, max_body_bytes=10_000)

    assert fitted == decision.result
    assert body == encode(decision.result)


async def test_oversized_result_becomes_a_message_too_large_failure() -> None:
    job = _job("shout", {"text": "x" * 5_000})
    decision = _decide(job, await _execute(job))
    assert decision.result is not None

    fitted, body = fit_result(decision.result, max_body_bytes=1_000)

    assert fitted.outcome is Outcome.FAILED
    assert fitted.result is None
    assert fitted.error is not None
    assert fitted.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert fitted.task_id == decision.result.task_id
    assert len(body) < 1_000


# Cancel and the task context


@registry.task("stops_when_cancelled")
def stops_when_cancelled() -> str:
    current_task_context().raise_if_cancelled()
    return "ran to the end"


@registry.task("sees_its_context")
async def sees_its_context() -> list[object]:
    context = current_task_context()
    return [str(context.task_id), context.attempt, context.cancelled]


async def test_handler_that_raises_task_cancelled_ends_cancelled() -> None:
    job = _job("stops_when_cancelled")
    context = TaskContext(job.task.task_id, job.task.attempt)
    context.cancel()

    attempt = await execute(job, run_in_thread=RecordingThread(), context=context)
    decision = _decide(job, attempt)

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.CANCELLED
    assert attempt.error.type == "TaskCancelled"
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.CANCELLED
    assert decision.result.retry_in_s is None


async def test_handler_not_cancelled_runs_to_the_end() -> None:
    attempt = await _execute(_job("stops_when_cancelled"))

    assert attempt.value == "ran to the end"


async def test_sync_handler_in_its_thread_sees_the_attempts_context() -> None:
    job = _job("stops_when_cancelled")
    context = TaskContext(job.task.task_id, job.task.attempt)
    context.cancel()

    threads = HandlerThreads()

    attempt = await execute(job, run_in_thread=threads.run, context=context)
    threads.close()

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.CANCELLED


async def test_async_handler_sees_a_context_for_its_task_by_default() -> None:
    job = _job("sees_its_context", attempt=3)

    attempt = await _execute(job)

    assert attempt.value == [str(job.task.task_id), 3, False]


def test_a_task_cancelled_before_it_starts_is_acked_with_a_cancelled_result() -> None:
    job = _job("word_count", {"text": "a"}, attempt=2)

    decision = decide_cancelled(job, executor="e1", redelivered=True)

    assert decision.action is Action.ACK
    result = decision.result
    assert result is not None
    assert result.outcome is Outcome.CANCELLED
    assert (result.task_id, result.attempt, result.executor) == (job.task.task_id, 2, "e1")
    assert result.redelivered is True
    assert result.error is not None
    assert result.error.kind is ErrorKind.CANCELLED
    assert result.result is None
