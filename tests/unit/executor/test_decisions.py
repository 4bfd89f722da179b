"""Decisions: succeeded, failed, retried or dead-lettered, and the messages that follow."""

from __future__ import annotations

import pytest

from common import (
    MAX_RETRY_DELAY_S,
    DeadReason,
    ErrorKind,
    InvalidParams,
    Outcome,
    PermanentTaskError,
    RetryableTaskError,
    TaskErrorInfo,
    encode,
)
from executor.decisions import (
    Action,
    decide,
    decide_rejection,
    fit_result,
)
from executor.runner import Attempt
from tests.unit.executor.handlers import (
    FINISHED,
    STARTED,
    Unavailable,
    a_delivery,
    a_job,
    a_rejection,
    a_task,
    decided,
    failed_attempt,
    run,
)

# decide_rejection: a message that can never run is dead-lettered


def test_rejection_without_any_task_id_is_dead_lettered_without_a_result() -> None:
    rejection = a_rejection(a_delivery(b"not json"))

    decision = decide_rejection(rejection, executor="e1", redelivered=False)

    assert rejection.task_id is None
    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.REJECTED
    assert decision.result is None
    assert decision.retry_in_s is None


def test_rejection_with_a_task_id_reports_a_dead_result() -> None:
    task = a_task("no_such_type")
    rejection = a_rejection(a_delivery(encode(task)))

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


# decide: succeeded, failed, retried or dead-lettered


async def test_success_is_acked_with_a_succeeded_result() -> None:
    job = a_job("word_count", {"text": "a"})
    attempt = await run(job)

    decision = decided(job, attempt)

    assert decision.action is Action.ACK
    assert decision.dead_reason is None
    assert decision.retry_in_s is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.SUCCEEDED
    assert decision.result.result == {"words": 1, "top": 3}
    assert decision.result.error is None


async def test_result_carries_executor_attempt_timing_and_redelivery() -> None:
    job = a_job("word_count", {"text": "a"})
    attempt = await run(job)

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
    job = a_job("flaky", attempt=1)
    attempt = await run(job)

    decision = decided(job, attempt, seed=42)

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
    job = a_job("flaky", attempt=1)
    attempt = failed_attempt(ConnectionError("reset"))

    first = decided(job, attempt, seed=7).retry_in_s
    again = decided(job, attempt, seed=7).retry_in_s

    assert first == again


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0)])
def test_retry_delay_grows_with_the_attempt(attempt: int, ceiling: float) -> None:
    job = a_job("flaky", attempt=attempt)

    delays = {decided(job, failed_attempt(OSError()), seed=s).retry_in_s for s in range(50)}

    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)


def test_last_allowed_retry_is_still_a_retry() -> None:
    job = a_job("flaky", attempt=3)  # max_retries=3: attempts 2, 3 and 4 are the retries

    assert decided(job, failed_attempt(OSError())).action is Action.RETRY


def test_failure_after_the_last_retry_is_dead_lettered() -> None:
    job = a_job("flaky", attempt=4)
    attempt = failed_attempt(ConnectionError("still down"))

    decision = decided(job, attempt)

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
    job = a_job("fragile", attempt=1)
    attempt = await run(job)

    decision = decided(job, attempt)

    assert decision.action is Action.ACK
    assert decision.dead_reason is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


@pytest.mark.parametrize(
    "exception",
    [PermanentTaskError("bad input"), InvalidParams("flaky", [{"loc": ["x"], "msg": "no"}])],
)
def test_permanent_errors_fail_at_once(exception: Exception) -> None:
    job = a_job("flaky", attempt=1)

    decision = decided(job, failed_attempt(exception))

    assert decision.action is Action.ACK
    assert decision.retry_in_s is None
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED
    assert decision.result.error is not None
    assert decision.result.error.type == type(exception).__name__


async def test_exception_types_the_options_declare_permanent_fail_at_once() -> None:
    job = a_job("picky", attempt=1)
    attempt = await run(job)

    decision = decided(job, attempt)

    assert isinstance(attempt.exception, Unavailable)
    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


def test_error_without_an_exception_fails_at_once() -> None:
    error = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="E", message="m")

    decision = decided(a_job("flaky", attempt=1), Attempt(STARTED, FINISHED, error=error))

    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


@pytest.mark.parametrize("delay", [7.0, 0.0, 5000.0])
def test_retryable_task_error_chooses_its_own_delay(delay: float) -> None:
    job = a_job("flaky", attempt=2)

    decision = decided(job, failed_attempt(RetryableTaskError("rate limited", delay=delay)))

    assert decision.action is Action.RETRY
    assert decision.retry_in_s == delay
    assert decision.result is not None
    assert decision.result.retry_in_s == delay


def test_retryable_task_error_without_a_delay_uses_the_backoff() -> None:
    job = a_job("flaky", attempt=1)

    decision = decided(job, failed_attempt(RetryableTaskError("later")))

    assert decision.retry_in_s is not None
    assert 1.0 <= decision.retry_in_s <= 2.0


def test_retryable_task_error_after_the_last_retry_is_dead_lettered() -> None:
    job = a_job("flaky", attempt=4)

    decision = decided(job, failed_attempt(RetryableTaskError("later", delay=7)))

    assert decision.action is Action.DEAD
    assert decision.dead_reason is DeadReason.RETRIES_EXHAUSTED


def test_negative_retry_delay_is_treated_as_no_wait() -> None:
    job = a_job("flaky", attempt=1)

    decision = decided(job, failed_attempt(RetryableTaskError("clock skew", delay=-3)))

    assert decision.action is Action.RETRY
    assert decision.retry_in_s == 0


async def test_result_that_is_not_json_fails_at_once() -> None:
    job = a_job("opaque", attempt=1)
    attempt = await run(job)

    decision = decided(job, attempt)

    assert decision.action is Action.ACK
    assert decision.result is not None
    assert decision.result.outcome is Outcome.FAILED


async def test_result_within_the_size_limit_is_kept_as_it_is() -> None:
    job = a_job("shout", {"text": "small"})
    decision = decided(job, await run(job))
    assert decision.result is not None

    fitted, body = fit_result(decision.result, max_body_bytes=10_000)

    assert fitted == decision.result
    assert body == encode(decision.result)


async def test_oversized_result_becomes_a_message_too_large_failure() -> None:
    job = a_job("shout", {"text": "x" * 5_000})
    decision = decided(job, await run(job))
    assert decision.result is not None

    fitted, body = fit_result(decision.result, max_body_bytes=1_000)

    assert fitted.outcome is Outcome.FAILED
    assert fitted.result is None
    assert fitted.error is not None
    assert fitted.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert fitted.task_id == decision.result.task_id
    assert len(body) < 1_000


@pytest.mark.parametrize("delay", [1e300, float("inf")])
def test_a_retry_delay_past_the_wire_limit_is_cut_to_it(delay: float) -> None:
    decision = decided(a_job("flaky", attempt=2), failed_attempt(RetryableTaskError(delay=delay)))

    assert decision.retry_in_s == MAX_RETRY_DELAY_S
    assert decision.result is not None
    assert decision.result.retry_in_s == MAX_RETRY_DELAY_S
