"""What a delivery carries: a valid task ready to run (a ``Job``), or why it cannot run.

No AMQP here: ``admission.py`` feeds deliveries in, so every check is tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python

from common import (
    DecodeError,
    ErrorKind,
    InvalidParams,
    JsonValue,
    TaskDefinition,
    TaskErrorInfo,
    TaskMessage,
    TaskRegistry,
    UnknownTaskType,
    UnsupportedVersion,
    decode_task,
    task_id_from_properties,
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The parts of an AMQP delivery that ``prepare`` reads."""

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
        message = f"body of {len(delivery.body)} bytes exceeds the limit of {max_body_bytes}"
        error = error_info(ErrorKind.MESSAGE_TOO_LARGE, "MessageTooLarge", message)
        return Rejection(fallback_id, fallback_type, 1, error)
    try:
        task = decode_task(delivery.body)
    except UnsupportedVersion as exc:
        error = error_info(ErrorKind.UNSUPPORTED_VERSION, exc, str(exc))
        return Rejection(fallback_id, fallback_type, 1, error)
    except DecodeError as exc:
        details: JsonValue = {"excerpt": delivery.body[:200].decode("utf-8", "replace")}
        error = error_info(ErrorKind.DECODE_ERROR, exc, exc.reason, details=details)
        return Rejection(fallback_id, fallback_type, 1, error)
    try:
        definition = registry.get(task.task_type)
        kwargs = definition.validate(task.params)
    except UnknownTaskType as exc:
        known = _json(registry.names())
        error = error_info(ErrorKind.UNKNOWN_TASK_TYPE, exc, str(exc), details=known)
        return Rejection(task.task_id, task.task_type, task.attempt, error)
    except InvalidParams as exc:
        error = error_info(ErrorKind.INVALID_PARAMS, exc, str(exc), details=_json(exc.errors))
        return Rejection(task.task_id, task.task_type, task.attempt, error)
    return Job(task, definition, kwargs)


def error_info(
    kind: ErrorKind,
    exc: BaseException | str,
    message: str,
    *,
    tb: str | None = None,
    details: JsonValue = None,
) -> TaskErrorInfo:
    """The error of a task: ``exc`` names its type (or is the type's name)."""
    type_name = exc if isinstance(exc, str) else type(exc).__name__
    return TaskErrorInfo(kind=kind, type=type_name, message=message, traceback=tb, details=details)


def _json(value: object) -> JsonValue:
    return to_jsonable_python(value, fallback=repr)  # type: ignore[no-any-return]
