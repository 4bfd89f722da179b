"""Pure encoding and decoding of wire models, and the AMQP properties that go with them.

Nothing here touches a connection: adapters (aio-pika, pika) turn ``MessageProperties`` into
their own property objects, so both clients publish byte-identical messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from common.errors import DecodeError, MessageError, UnsupportedVersion
from common.messages import (
    SCHEMA_VERSION,
    CancelNotice,
    DeadReason,
    Heartbeat,
    ProgressMessage,
    ResultMessage,
    StartNotice,
    StartVerdict,
    TaskErrorInfo,
    TaskMessage,
)
from common.topology import (
    ATTEMPT_HEADER,
    ATTEMPTS_HEADER,
    DEAD_AT_HEADER,
    DEAD_REASON_HEADER,
    ERROR_HEADER,
    ERROR_KIND_HEADER,
    ERROR_TYPE_HEADER,
    EXECUTOR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    OUTCOME_HEADER,
)

CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
PERSISTENT = 2
TRANSIENT = 1
# The AMQP ``type`` of the messages on the cancellation stream; readers skip other types.
CANCEL_TYPE = "cancel"
MARKER_TYPE = "marker"
# The AMQP ``type`` of a start notice on the progress queue (a progress report's is its task
# type, which cannot contain a space, so the two never meet).
STARTED_TYPE = "wq started"
# The AMQP ``type`` of the dispatcher's answer to a redelivered start.
VERDICT_TYPE = "wq verdict"
_EXCERPT_BYTES = 200

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class MessageProperties:
    """The AMQP basic properties this project sets, independent of any client library.

    Those the project always sets are optional only for copies of a message another
    producer sent (a dead-letter copy keeps whatever the task had).
    """

    message_id: str | None
    type: str | None
    correlation_id: str | None
    timestamp: datetime | None
    app_id: str | None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = CONTENT_TYPE
    content_encoding: str | None = CONTENT_ENCODING
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


def decode_verdict(body: bytes) -> StartVerdict:
    """Decode a start verdict, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, StartVerdict)


def decode_start(body: bytes) -> StartNotice:
    """Decode a start notice, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, StartNotice)


def decode_progress(body: bytes) -> ProgressMessage:
    """Decode a progress report, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, ProgressMessage)


def decode_heartbeat(body: bytes) -> Heartbeat:
    """Decode an executor heartbeat, raising ``DecodeError`` or ``UnsupportedVersion``."""
    return _decode(body, Heartbeat)


def _decode(body: bytes, model: type[_Model]) -> _Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # The fast path failed; find the most useful explanation for the operator.
        raise _explain(body, exc) from exc


def _explain(body: bytes, exc: ValidationError) -> DecodeError | UnsupportedVersion:
    # Explained with pydantic's own parser, which bounds nesting and number size: the
    # standard library's json raises RecursionError on deep nesting and ValueError past 4,300
    # digits, and a body from the broker is anything anyone with publish rights sent.
    excerpt = body[:_EXCERPT_BYTES]
    invalid = [e["msg"] for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
    if invalid:
        reason = invalid[0].removeprefix("Invalid JSON: ")
        return DecodeError(f"body is not UTF-8 JSON: {reason}", excerpt=excerpt)
    try:
        document = from_json(body)
    except ValueError:
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
        headers={ATTEMPT_HEADER: task.attempt},
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
        headers={OUTCOME_HEADER: result.outcome.value, EXECUTOR_HEADER: result.executor},
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


def start_properties(
    notice: StartNotice, *, app_id: str, request_id: str | None = None, reply_to: str | None = None
) -> MessageProperties:
    """Properties for a start notice: transient, typed ``STARTED_TYPE``.

    A redelivered start asks for a verdict: ``reply_to`` names the queue, and ``request_id``
    (its ``message_id``) comes back as the verdict's ``correlation_id``.
    """
    return MessageProperties(
        message_id=request_id or f"{notice.task_id}.{notice.attempt}.started",
        type=STARTED_TYPE,
        correlation_id=str(notice.task_id),
        timestamp=notice.started_at,
        app_id=app_id,
        delivery_mode=TRANSIENT,
        reply_to=reply_to,
    )


def verdict_properties(request_id: str | None, *, app_id: str) -> MessageProperties:
    """Properties for a start verdict: transient, answering the start notice ``request_id``."""
    return MessageProperties(
        message_id=None,
        type=VERDICT_TYPE,
        correlation_id=request_id,
        timestamp=datetime.now(UTC),
        app_id=app_id,
        delivery_mode=TRANSIENT,
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


def heartbeat_properties(heartbeat: Heartbeat, *, app_id: str) -> MessageProperties:
    """Properties for a heartbeat: transient, typed by its event, naming its executor."""
    return MessageProperties(
        message_id=None,
        type=heartbeat.event.value,
        correlation_id=None,
        timestamp=heartbeat.sent_at,
        app_id=app_id,
        headers={EXECUTOR_HEADER: heartbeat.executor},
        delivery_mode=TRANSIENT,
    )


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """Why a task was dead-lettered: the headers an executor sets on the dead copy.

    Readable in the management UI, and read back by ``dispatcher dead list``; every field is
    optional when reading, since RabbitMQ dead-letters some messages itself (expired, or a
    copy the broker refused) without them.
    """

    reason: DeadReason | str | None
    error_kind: str | None = None
    error_type: str | None = None
    error: str | None = None
    attempts: int | None = None
    original_queue: str | None = None
    executor: str | None = None
    dead_at: str | None = None

    # An error message is cut to this many characters: headers are small, and shown whole.
    MAX_TEXT: ClassVar[int] = 1000

    @classmethod
    def of(
        cls,
        reason: DeadReason,
        error: TaskErrorInfo,
        *,
        attempts: int,
        queue: str,
        executor: str,
        at: datetime,
    ) -> DeadLetterHeaders:
        """The headers for a task dead-lettered now for ``reason`` after ``error``."""
        return cls(
            reason=reason,
            error_kind=error.kind.value,
            error_type=error.type,
            error=error.message[: cls.MAX_TEXT],
            attempts=attempts,
            original_queue=queue,
            executor=executor,
            dead_at=at.isoformat(),
        )

    def to_headers(self) -> dict[str, str | int]:
        """As AMQP headers (docs/protocol.md, "Dead letters"); fields left None are left out."""
        reason = self.reason.value if isinstance(self.reason, DeadReason) else self.reason
        values: dict[str, str | int | None] = {
            DEAD_REASON_HEADER: reason,
            ERROR_KIND_HEADER: self.error_kind,
            ERROR_TYPE_HEADER: self.error_type,
            ERROR_HEADER: self.error,
            ATTEMPTS_HEADER: self.attempts,
            ORIGINAL_QUEUE_HEADER: self.original_queue,
            EXECUTOR_HEADER: self.executor,
            DEAD_AT_HEADER: self.dead_at,
        }
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_headers(cls, headers: Mapping[str, object]) -> DeadLetterHeaders:
        """What a dead message's headers say; anything missing or mistyped reads as None."""

        def text(name: str) -> str | None:
            value = headers.get(name)
            return str(value) if value is not None else None

        attempts = headers.get(ATTEMPTS_HEADER)
        return cls(
            reason=text(DEAD_REASON_HEADER),
            error_kind=text(ERROR_KIND_HEADER),
            error_type=text(ERROR_TYPE_HEADER),
            error=text(ERROR_HEADER),
            attempts=attempts if type(attempts) is int else None,
            original_queue=text(ORIGINAL_QUEUE_HEADER),
            executor=text(EXECUTOR_HEADER),
            dead_at=text(DEAD_AT_HEADER),
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
