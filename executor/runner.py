"""What to do with one delivery: validate it, run its handler, decide how to settle it.

No AMQP here: ``consumer.py`` feeds deliveries in and carries the decisions out, so every
decision is tested without a broker.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

from pydantic_core import PydanticSerializationError, to_jsonable_python

from common import (
    DecodeError,
    ErrorKind,
    InvalidParams,
    JsonValue,
    Outcome,
    ResultMessage,
    RetryableTaskError,
    SoftTimeLimitExceeded,
    TaskCancelled,
    TaskContext,
    TaskDefinition,
    TaskErrorInfo,
    TaskMessage,
    TaskRegistry,
    TimeLimitExceeded,
    UnknownTaskType,
    UnsupportedVersion,
    decode_task,
    encode,
    running_in,
    task_id_from_properties,
)
from common.retry import backoff_delay


class RunInThread(Protocol):
    """Runs a sync handler off the event loop, enforcing its time limits."""

    def __call__(
        self,
        fn: Callable[[], Any],
        *,
        soft_time_limit: float | None,
        time_limit: float | None,
    ) -> Awaitable[Any]: ...


class Action(Enum):
    """How the task message is settled once everything it needs is safe with the broker."""

    ACK = "ack"  # done: the result says how it went
    RETRY = "retry"  # a copy with the next attempt number is parked in a retry queue first
    DEAD = "dead"  # a copy with the reasons in its headers goes to the dead-letter queue first


class DeadReason(Enum):
    """Why a message was dead-lettered (header ``x-wq-dead-reason``)."""

    REJECTED = "rejected"  # it can never run: bad body, unknown type, invalid params, too big
    RETRIES_EXHAUSTED = "retries_exhausted"
    DELIVERY_LIMIT = "delivery_limit"  # delivered too often without being settled


@dataclass(frozen=True, slots=True)
class Delivery:
    """The parts of an AMQP delivery the runner needs."""

    body: bytes
    message_id: str | None
    correlation_id: str | None
    task_type_property: str | None
    redelivered: bool


@dataclass(frozen=True, slots=True)
class Job:
    """A valid task, ready to run."""

    task: TaskMessage
    definition: TaskDefinition
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A delivery that cannot run; ``task_id`` is known when the error can be reported."""

    task_id: UUID | None
    task_type: str
    attempt: int
    error: TaskErrorInfo


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened when the handler ran."""

    started_at: datetime
    finished_at: datetime
    value: JsonValue = None
    error: TaskErrorInfo | None = None
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The settlement of a delivery and the result to report before it (if any)."""

    action: Action
    result: ResultMessage | None
    dead_reason: DeadReason | None = None
    retry_in_s: float | None = None


def prepare(delivery: Delivery, registry: TaskRegistry, *, max_body_bytes: int) -> Job | Rejection:
    """Decode and validate a delivery against the registry."""
    fallback_id = task_id_from_properties(delivery.message_id, delivery.correlation_id)
    fallback_type = delivery.task_type_property or "unknown"
    if len(delivery.body) > max_body_bytes:
        message = f"body of {len(delivery.body)} bytes exceeds the limit of {max_body_bytes}"
        error = _error(ErrorKind.MESSAGE_TOO_LARGE, "MessageTooLarge", message)
        return Rejection(fallback_id, fallback_type, 1, error)
    try:
        task = decode_task(delivery.body)
    except UnsupportedVersion as exc:
        error = _error(ErrorKind.UNSUPPORTED_VERSION, exc, str(exc))
        return Rejection(fallback_id, fallback_type, 1, error)
    except DecodeError as exc:
        details: JsonValue = {"excerpt": delivery.body[:200].decode("utf-8", "replace")}
        error = _error(ErrorKind.DECODE_ERROR, exc, exc.reason, details=details)
        return Rejection(fallback_id, fallback_type, 1, error)
    try:
        definition = registry.get(task.task_type)
        kwargs = definition.validate(task.params)
    except UnknownTaskType as exc:
        known = _json(registry.names())
        error = _error(ErrorKind.UNKNOWN_TASK_TYPE, exc, str(exc), details=known)
        return Rejection(task.task_id, task.task_type, task.attempt, error)
    except InvalidParams as exc:
        error = _error(ErrorKind.INVALID_PARAMS, exc, str(exc), details=_json(exc.errors))
        return Rejection(task.task_id, task.task_type, task.attempt, error)
    return Job(task, definition, kwargs)


async def execute(
    job: Job, *, run_in_thread: RunInThread, context: TaskContext | None = None
) -> Attempt:
    """Run the handler; whatever it raises becomes the attempt's error.

    ``context`` is the handler's ``current_task_context()`` (cancel requests, progress).
    """
    with running_in(context or TaskContext(job.task.task_id, job.task.attempt)):
        return await _execute(job, run_in_thread=run_in_thread)


async def _execute(job: Job, *, run_in_thread: RunInThread) -> Attempt:
    started = _now()
    handler, options = job.definition.handler, job.definition.options
    try:
        if job.definition.is_async:
            # An async handler is cancelled at its first limit; it may clean up in finally.
            first_limit = options.soft_time_limit or options.time_limit
            try:
                async with asyncio.timeout(first_limit) as limit:
                    value = await handler(**job.kwargs)
            except TimeoutError:
                if not limit.expired():
                    raise  # the handler's own timeout: an ordinary, retryable error
                raise TimeLimitExceeded(first_limit or 0) from None
        else:
            value = await run_in_thread(
                lambda: handler(**job.kwargs),
                soft_time_limit=options.soft_time_limit,
                time_limit=options.time_limit,
            )
    except (SoftTimeLimitExceeded, TimeLimitExceeded) as exc:
        message = str(exc) or f"ran past its soft time limit of {options.soft_time_limit:g}s"
        error = _error(ErrorKind.TIME_LIMIT, exc, message, tb=traceback.format_exc())
        return Attempt(started, _now(), error=error, exception=exc)
    except TaskCancelled as exc:
        error = _error(ErrorKind.CANCELLED, exc, "the handler stopped: its task was cancelled")
        return Attempt(started, _now(), error=error, exception=exc)
    except Exception as exc:
        # The process edge for task code: whatever a handler raises is the task's outcome.
        error = _error(ErrorKind.HANDLER_ERROR, exc, str(exc), tb=traceback.format_exc())
        return Attempt(started, _now(), error=error, exception=exc)
    try:
        jsonable: JsonValue = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        message = f"handler returned {type(value).__name__}, which is not JSON"
        error = _error(ErrorKind.RESULT_NOT_JSON, exc, message)
        # No exception: the handler did its work; running it again would repeat its effects.
        return Attempt(started, _now(), error=error)
    return Attempt(started, _now(), value=jsonable)


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
        delay = max(0.0, asked)
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
    error = _error(
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
    error = _error(
        ErrorKind.MESSAGE_TOO_LARGE,
        "ResultTooLarge",
        f"the result is {len(body)} bytes, over the limit of {max_body_bytes}",
    )
    failed = result.model_copy(
        update={"outcome": Outcome.FAILED, "result": None, "error": error, "retry_in_s": None}
    )
    return failed, encode(failed)


def next_attempt(task: TaskMessage) -> TaskMessage:
    """The same task, one attempt later (for a retry or a replay)."""
    return task.model_copy(update={"attempt": task.attempt + 1})


def _error(
    kind: ErrorKind,
    exc: BaseException | str,
    message: str,
    *,
    tb: str | None = None,
    details: JsonValue = None,
) -> TaskErrorInfo:
    type_name = exc if isinstance(exc, str) else type(exc).__name__
    return TaskErrorInfo(kind=kind, type=type_name, message=message, traceback=tb, details=details)


def _json(value: object) -> JsonValue:
    return to_jsonable_python(value, fallback=repr)  # type: ignore[no-any-return]


def _now() -> datetime:
    return datetime.now(UTC)
