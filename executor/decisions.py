"""How to settle a delivery: the result to report and the ack, retry or dead-letter after it.

No AMQP here: ``settling.py`` carries the decisions out, so every decision is tested without a
broker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from common import (
    MAX_RETRY_DELAY_S,
    DeadReason,
    ErrorKind,
    Outcome,
    ResultMessage,
    RetryableTaskError,
    TaskCancelled,
    backoff_delay,
    encode,
)
from executor.jobs import Job, Rejection, error_info
from executor.runner import Attempt


class Action(Enum):
    """How the task message is settled once everything it needs is safe with the broker."""

    ACK = "ack"  # done: the result says how it went
    RETRY = "retry"  # acked after a ``retrying`` result: the dispatcher publishes the next attempt
    DEAD = "dead"  # a copy with the reasons in its headers goes to the dead-letter queue first


@dataclass(frozen=True, slots=True)
class Decision:
    """The settlement of a delivery and the result to report before it (if any)."""

    action: Action
    result: ResultMessage | None
    dead_reason: DeadReason | None = None
    retry_in_s: float | None = None


def decide(
    job: Job,
    attempt: Attempt,
    *,
    executor: str,
    redelivered: bool,
    rng: random.Random | None = None,
) -> Decision:
    """Succeeded, failed for good, retried later, or dead-lettered after the last retry."""
    task, options = job.task, job.definition.options

    def result(outcome: Outcome, retry_in_s: float | None = None) -> ResultMessage:
        return ResultMessage(
            task_id=task.task_id,
            task_type=task.task_type,
            outcome=outcome,
            result=attempt.value,
            error=attempt.error,
            attempt=task.attempt,
            executor=executor,
            redelivered=redelivered,
            started_at=attempt.started_at,
            finished_at=attempt.finished_at,
            retry_in_s=retry_in_s,
        )

    if attempt.error is None:
        return Decision(Action.ACK, result(Outcome.SUCCEEDED))
    exception = attempt.exception
    if isinstance(exception, TaskCancelled):
        return Decision(Action.ACK, result(Outcome.CANCELLED))
    if exception is None or not options.is_retryable(exception):
        return Decision(Action.ACK, result(Outcome.FAILED))
    if options.max_retries == 0:
        return Decision(Action.ACK, result(Outcome.FAILED))
    if task.attempt > options.max_retries:
        dead = result(Outcome.DEAD)
        return Decision(Action.DEAD, dead, dead_reason=DeadReason.RETRIES_EXHAUSTED)
    asked = exception.delay if isinstance(exception, RetryableTaskError) else None
    if asked is not None:
        # A result may not carry a longer wait (MAX_RETRY_DELAY_S), nor a negative one.
        delay = min(max(0.0, asked), MAX_RETRY_DELAY_S)
    else:
        base, cap = options.retry_backoff, options.retry_backoff_max
        delay = backoff_delay(task.attempt, base=base, cap=cap, rng=rng)
    return Decision(Action.RETRY, result(Outcome.RETRYING, delay), retry_in_s=delay)


def decide_rejection(
    rejection: Rejection,
    *,
    executor: str,
    redelivered: bool,
    reason: DeadReason = DeadReason.REJECTED,
) -> Decision:
    """A message that will not run is dead-lettered, with an error result when possible."""
    result = None
    if rejection.task_id is not None:
        now = _now()
        result = ResultMessage(
            task_id=rejection.task_id,
            task_type=rejection.task_type,
            outcome=Outcome.DEAD,
            error=rejection.error,
            attempt=rejection.attempt,
            executor=executor,
            redelivered=redelivered,
            started_at=now,
            finished_at=now,
        )
    return Decision(Action.DEAD, result, dead_reason=reason)


def decide_cancelled(job: Job, *, executor: str, redelivered: bool) -> Decision:
    """A task cancelled before it started is not run: a ``cancelled`` result, then the ack."""
    now = _now()
    error = error_info(
        ErrorKind.CANCELLED, TaskCancelled(), "cancelled before it started; the handler never ran"
    )
    result = ResultMessage(
        task_id=job.task.task_id,
        task_type=job.task.task_type,
        outcome=Outcome.CANCELLED,
        error=error,
        attempt=job.task.attempt,
        executor=executor,
        redelivered=redelivered,
        started_at=now,
        finished_at=now,
    )
    return Decision(Action.ACK, result)


def fit_result(result: ResultMessage, *, max_body_bytes: int) -> tuple[ResultMessage, bytes]:
    """The result and its body, replaced by a ``message_too_large`` failure if too big.

    The dispatcher refuses bodies over the limit (and RabbitMQ 4 closes the channel past
    16 MiB), so an oversized result would leave its task without any recorded outcome.
    """
    body = encode(result)
    if len(body) <= max_body_bytes:
        return result, body
    error = error_info(
        ErrorKind.MESSAGE_TOO_LARGE,
        "ResultTooLarge",
        f"the result is {len(body)} bytes, over the limit of {max_body_bytes}",
    )
    failed = result.model_copy(
        update={"outcome": Outcome.FAILED, "result": None, "error": error, "retry_in_s": None}
    )
    return failed, encode(failed)


def _now() -> datetime:
    return datetime.now(UTC)
