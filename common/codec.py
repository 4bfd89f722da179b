"""Pure encoding and decoding of wire models, and the AMQP properties that go with them.

Nothing here touches a connection: adapters (aio-pika, pika) turn ``MessageProperties`` into
their own property objects, so both clients publish byte-identical messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError

from common.errors import DecodeError, MessageError, UnsupportedVersion
from common.messages import (
    SCHEMA_VERSION,
    CancelNotice,
    ProgressMessage,
    ResultMessage,
    TaskMessage,
)

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
PERSISTENT = 2
TRANSIENT = 1
# The AMQP ``type`` of the messages on the cancellation stream; readers skip other types.
CANCEL_TYPE = "cancel"
MARKER_TYPE = "marker"
_EXCERPT_BYTES = 200

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """The AMQP basic properties this project sets, independent of any client library."""

    message_id: str
    type: str
    correlation_id: str
    timestamp: datetime
    app_id: str
    reply_to: str | None = None
    headers: dict[str, str | int] = field(default_factory=dict)
    content_type: str = CONTENT_TYPE
    content_encoding: str = CONTENT_ENCODING
    delivery_mode: int = PERSISTENT
    priority: int | None = None


def encode(message: BaseModel) -> bytes:
    """Serialise a wire model to compact UTF-8 JSON."""
    return message.model_dump_json().encode()


def check_body_size(body: bytes, max_body_bytes: int, *, what: str) -> None:
    """Refuse ``body`` unread when it is over ``max_body_bytes`` (``MessageError``).

    Anyone with publish rights can write to a queue the services read: the size is checked
    before the body is parsed.
    """
    if len(body) > max_body_bytes:
        raise MessageError(f"{what} body of {len(body)} bytes is over the limit")


def decode_task(body: bytes) -> TaskMessage:
    """Decode a task body, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, TaskMessage)


def decode_result(body: bytes) -> ResultMessage:
    """Decode a result body, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, ResultMessage)


def decode_cancel(body: bytes) -> CancelNotice:
    """Decode a cancel notice, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, CancelNotice)


def decode_progress(body: bytes) -> ProgressMessage:
    """Decode a progress report, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, ProgressMessage)


def _decode(body: bytes, model: type[_Model]) -> _Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # The fast path failed; find the most useful explanation for the operator.
        raise _explain(body, exc) from exc


def _explain(body: bytes, exc: ValidationError) -> DecodeError | UnsupportedVersion:
    excerpt = body[:_EXCERPT_BYTES]
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return DecodeError("body is not UTF-8 JSON", excerpt=excerpt)
    if not isinstance(document, dict):
        return DecodeError("body is not a JSON object", excerpt=excerpt)
    if "version" in document and document["version"] != SCHEMA_VERSION:
        return UnsupportedVersion(document["version"])
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )
    return DecodeError(f"body does not match the schema: {problems}", excerpt=excerpt)


def task_properties(task: TaskMessage, *, reply_to: str | None, app_id: str) -> MessageProperties:
    """Properties for a task message: ids and type visible in the management UI."""
    return MessageProperties(
        message_id=str(task.task_id),
        type=task.task_type,
        correlation_id=str(task.task_id),
        timestamp=task.submitted_at,
        app_id=app_id,
        reply_to=reply_to,
        headers={"x-wq-attempt": task.attempt},
        priority=task.priority,
    )


def result_properties(result: ResultMessage, *, app_id: str) -> MessageProperties:
    """Properties for a result message; ``correlation_id`` ties it to its task."""
    return MessageProperties(
        message_id=f"{result.task_id}.{result.attempt}",
        type=result.task_type,
        correlation_id=str(result.task_id),
        timestamp=result.finished_at,
        app_id=app_id,
        headers={"x-wq-outcome": result.outcome.value, "x-wq-executor": result.executor},
    )


def cancel_properties(notice: CancelNotice, *, app_id: str) -> MessageProperties:
    """Properties for a cancel notice: persistent, typed ``cancel``, keyed by the task id."""
    return MessageProperties(
        message_id=str(notice.task_id),
        type=CANCEL_TYPE,
        correlation_id=str(notice.task_id),
        timestamp=notice.requested_at,
        app_id=app_id,
    )


def marker_properties(marker_id: str, *, at: datetime, app_id: str) -> MessageProperties:
    """Properties for a reader's own marker on the cancellation stream (see docs/protocol.md)."""
    return MessageProperties(
        message_id=marker_id,
        type=MARKER_TYPE,
        correlation_id=marker_id,
        timestamp=at,
        app_id=app_id,
    )


def progress_properties(report: ProgressMessage, *, app_id: str) -> MessageProperties:
    """Properties for a progress report: transient, since a lost report is only advisory."""
    return MessageProperties(
        message_id=f"{report.task_id}.{report.attempt}.progress",
        type=report.task_type,
        correlation_id=str(report.task_id),
        timestamp=report.reported_at,
        app_id=app_id,
        delivery_mode=TRANSIENT,
    )


def task_id_from_properties(message_id: str | None, correlation_id: str | None) -> UUID | None:
    """Recover a task id from a message whose body could not be decoded."""
    for candidate in (message_id, correlation_id):
        if candidate:
            try:
                return UUID(candidate)
            except ValueError:
                continue
    return None
