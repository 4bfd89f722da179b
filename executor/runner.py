"""What to do with one delivery: validate it, run its handler, build the result, decide the ack.

No AMQP here: ``consumer.py`` feeds deliveries in and carries the decisions out, so every
decision is tested without a broker.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic_core import PydanticSerializationError, to_jsonable_python

from common import (
    DecodeError,
    ErrorKind,
    InvalidParams,
    JsonValue,
    Outcome,
    ResultMessage,
    TaskDefinition,
    TaskErrorInfo,
    TaskMessage,
    TaskRegistry,
    UnknownTaskType,
    UnsupportedVersion,
    decode_task,
    task_id_from_properties,
)

RunInThread = Callable[[Callable[[], Any]], Awaitable[Any]]


class Settlement(Enum):
    """How the task message is settled once its result (if any) is safe with the broker."""

    ACK = "ack"
    # Rejected without requeue: the queue dead-letters it to wq.tasks.dead, so nothing is lost
    # and nothing loops.
    REJECT = "reject"


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


def prepare(delivery: Delivery, registry: TaskRegistry, *, max_body_bytes: int) -> Job | Rejection:
    """Decode and validate a delivery against the registry."""
    fallback_id = task_id_from_properties(delivery.message_id, delivery.correlation_id)
    fallback_type = delivery.task_type_property or "unknown"
    if len(delivery.body) > max_body_bytes:
        return Rejection(
            fallback_id,
            fallback_type,
            1,
            _error(
                ErrorKind.MESSAGE_TOO_LARGE,
                "MessageTooLarge",
                f"body of {len(delivery.body)} bytes exceeds the limit of {max_body_bytes}",
            ),
        )
    try:
        task = decode_task(delivery.body)
    except UnsupportedVersion as exc:
        return Rejection(
            fallback_id, fallback_type, 1, _error(ErrorKind.UNSUPPORTED_VERSION, exc, str(exc))
        )
    except DecodeError as exc:
        details: JsonValue = {"excerpt": delivery.body[:200].decode("utf-8", "replace")}
        return Rejection(
            fallback_id,
            fallback_type,
            1,
            _error(ErrorKind.DECODE_ERROR, exc, exc.reason, details=details),
        )
    try:
        definition = registry.get(task.task_type)
        kwargs = definition.validate(task.params)
    except UnknownTaskType as exc:
        return Rejection(
            task.task_id,
            task.task_type,
            task.attempt,
            _error(ErrorKind.UNKNOWN_TASK_TYPE, exc, str(exc), details=_json(registry.names())),
        )
    except InvalidParams as exc:
        return Rejection(
            task.task_id,
            task.task_type,
            task.attempt,
            _error(ErrorKind.INVALID_PARAMS, exc, str(exc), details=_json(exc.errors)),
        )
    return Job(task, definition, kwargs)


async def execute(
    job: Job, *, executor: str, redelivered: bool, run_in_thread: RunInThread
) -> ResultMessage:
    """Run the handler and describe the outcome; handler exceptions become a failed result."""
    started = _now()
    handler = job.definition.handler
    try:
        if job.definition.is_async:
            value = await handler(**job.kwargs)
        else:
            value = await run_in_thread(lambda: handler(**job.kwargs))
    except Exception as exc:
        # The process edge for task code: whatever a handler raises is the task's outcome.
        error = _error(ErrorKind.HANDLER_ERROR, exc, str(exc), tb=traceback.format_exc())
        return _result(job.task, Outcome.FAILED, None, error, executor, redelivered, started)
    try:
        result: JsonValue = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        error = _error(ErrorKind.RESULT_NOT_JSON, exc, f"handler returned {type(value).__name__}")
        return _result(job.task, Outcome.FAILED, None, error, executor, redelivered, started)
    return _result(job.task, Outcome.SUCCEEDED, result, None, executor, redelivered, started)


def rejection_result(
    rejection: Rejection, *, executor: str, redelivered: bool
) -> ResultMessage | None:
    """The error result to report for a rejected delivery, when its task id is known."""
    if rejection.task_id is None:
        return None
    now = _now()
    return ResultMessage(
        task_id=rejection.task_id,
        task_type=rejection.task_type,
        outcome=Outcome.FAILED,
        error=rejection.error,
        attempt=rejection.attempt,
        executor=executor,
        redelivered=redelivered,
        started_at=now,
        finished_at=now,
    )


def settlement_after_run(result: ResultMessage) -> Settlement:
    """A task that ran is settled by its result, whether it succeeded or failed."""
    # Retries and dead-lettering of exhausted tasks come with the reliability work (issue 3).
    return Settlement.ACK


def _result(
    task: TaskMessage,
    outcome: Outcome,
    result: JsonValue,
    error: TaskErrorInfo | None,
    executor: str,
    redelivered: bool,
    started: datetime,
) -> ResultMessage:
    return ResultMessage(
        task_id=task.task_id,
        task_type=task.task_type,
        outcome=outcome,
        result=result,
        error=error,
        attempt=task.attempt,
        executor=executor,
        redelivered=redelivered,
        started_at=started,
        finished_at=_now(),
    )


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
