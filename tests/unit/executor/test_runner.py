"""``execute``: running the handler, its time limits and its task context."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from common import (
    ErrorKind,
    Outcome,
    ProgressUpdate,
    SoftTimeLimitExceeded,
    TaskContext,
    TimeLimitExceeded,
    current_task_context,
    encode,
)
from executor.decisions import (
    Action,
    decide_cancelled,
)
from executor.jobs import Rejection
from executor.runner import execute
from executor.threads import HandlerThreads
from tests.unit.executor.handlers import (
    RecordingThread,
    a_job,
    decided,
    registry,
    run,
)

# execute: run the handler and describe what happened


async def test_the_documented_async_example_runs_on_the_loop_with_its_context() -> None:
    from examples.tasks import registry as examples
    from executor.jobs import prepare
    from tests.unit.executor.handlers import MAX_BODY, a_delivery, a_task

    task = a_task("notify", {"recipient": "ops", "message": "disk full", "latency_ms": 1})
    job = prepare(a_delivery(encode(task)), examples, max_body_bytes=MAX_BODY)
    assert not isinstance(job, Rejection)
    assert job.definition.is_async
    thread, reports = RecordingThread(), list[ProgressUpdate]()
    context = TaskContext(task.task_id, task.attempt, report=reports.append)

    attempt = await execute(job, run_in_thread=thread, context=context)

    assert thread.calls == 0
    assert attempt.error is None
    assert attempt.value == {"recipient": "ops", "delivered": True, "chars": 9}
    assert [report.note for report in reports] == ["sending to ops"]


async def test_sync_handler_runs_through_run_in_thread() -> None:
    thread = RecordingThread()

    attempt = await run(a_job("word_count", {"text": "a b"}), thread)

    assert thread.calls == 1
    assert attempt.value == {"words": 2, "top": 3}
    assert attempt.error is None
    assert attempt.exception is None


async def test_async_handler_runs_on_the_loop() -> None:
    thread = RecordingThread()

    attempt = await run(a_job("shout", {"text": "hi"}), thread)

    assert thread.calls == 0
    assert attempt.value == "HI"


@pytest.mark.parametrize(
    ("task_type", "exc_type"), [("explode", "LookupError"), ("explode_async", "ValueError")]
)
async def test_handler_exception_becomes_the_attempts_error(task_type: str, exc_type: str) -> None:
    attempt = await run(a_job(task_type, {"message": "no rate for XXX"}))

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
    attempt = await run(a_job("opaque"))

    assert attempt.value is None
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.RESULT_NOT_JSON
    assert "object" in attempt.error.message


async def test_pydantic_model_result_is_serialised() -> None:
    attempt = await run(a_job("summarise", {"text": "hello world"}))

    assert attempt.value == {"words": 2, "first": "hello"}


async def test_datetime_result_is_serialised() -> None:
    job = a_job("finished")
    attempt = await run(job)

    result = decided(job, attempt).result

    assert attempt.value == "2030-05-06T07:08:09Z"
    assert result is not None
    assert json.loads(encode(result))["result"] == "2030-05-06T07:08:09Z"


async def test_attempt_is_timed_in_utc() -> None:
    before = datetime.now(UTC)

    attempt = await run(a_job("shout", {"text": "x"}))

    assert before <= attempt.started_at <= attempt.finished_at <= datetime.now(UTC)


async def test_sync_handler_gets_its_time_limits_from_the_task_options() -> None:
    thread = RecordingThread()

    attempt = await run(a_job("slow"), thread)

    assert thread.limits == [(1.5, 3.0)]
    assert attempt.value == "done"


async def test_handler_without_limits_runs_unlimited() -> None:
    thread = RecordingThread()

    await run(a_job("word_count", {"text": "a"}), thread)

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
    job = a_job("slow", attempt=1)
    attempt = await run(job, RecordingThread(raises=raised))

    decision = decided(job, attempt)

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.TIME_LIMIT
    assert attempt.error.type == type(raised).__name__
    assert attempt.error.message == message
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


async def test_async_handler_is_cancelled_at_its_time_limit() -> None:
    attempt = await run(a_job("slow_async"))

    assert isinstance(attempt.exception, TimeLimitExceeded)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.TIME_LIMIT
    assert attempt.error.type == "TimeLimitExceeded"


async def test_async_handlers_own_timeout_is_an_ordinary_retryable_error() -> None:
    job = a_job("impatient", attempt=1)
    attempt = await run(job)

    decision = decided(job, attempt)

    assert isinstance(attempt.exception, TimeoutError)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR
    assert decision.action is Action.RETRY


async def test_sync_handlers_own_timeout_is_an_ordinary_retryable_error() -> None:
    job = a_job("impatient_sync", attempt=1)
    threads = HandlerThreads()

    attempt = await execute(job, run_in_thread=threads.run)
    threads.close()
    decision = decided(job, attempt)

    assert isinstance(attempt.exception, TimeoutError)
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR
    assert decision.action is Action.RETRY


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
    job = a_job("stops_when_cancelled")
    context = TaskContext(job.task.task_id, job.task.attempt)
    context.cancel()

    attempt = await execute(job, run_in_thread=RecordingThread(), context=context)
    decision = decided(job, attempt)

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.CANCELLED
    assert attempt.error.type == "TaskCancelled"
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.CANCELLED
    assert decision.result.retry_in_s is None


async def test_handler_not_cancelled_runs_to_the_end() -> None:
    attempt = await run(a_job("stops_when_cancelled"))

    assert attempt.value == "ran to the end"


async def test_sync_handler_in_its_thread_sees_the_attempts_context() -> None:
    job = a_job("stops_when_cancelled")
    context = TaskContext(job.task.task_id, job.task.attempt)
    context.cancel()

    threads = HandlerThreads()

    attempt = await execute(job, run_in_thread=threads.run, context=context)
    threads.close()

    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.CANCELLED


async def test_async_handler_sees_a_context_for_its_task_by_default() -> None:
    job = a_job("sees_its_context", attempt=3)

    attempt = await run(job)

    assert attempt.value == [str(job.task.task_id), 3, False]


def test_a_task_cancelled_before_it_starts_is_acked_with_a_cancelled_result() -> None:
    job = a_job("word_count", {"text": "a"}, attempt=2)

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
