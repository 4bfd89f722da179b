"""Requests to the dispatcher and its answers: tasks to submit, submissions, cancel reports.

``build_task`` turns a request into its task message, for both clients and the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final
from uuid import UUID, uuid4

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from common import (
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    MAX_RETRY_DELAY_S,
    QUEUE_NAME_PATTERN,
    TASK_TYPE_PATTERN,
    AwareWireTime,
    CancelNotice,
    InvalidParams,
    InvalidRequest,
    JsonValue,
    TaskMessage,
    TaskRegistry,
    UnknownTaskType,
    WorkQueueError,
    check_queue_name,
    encode,
    invalid_params,
)
from dispatcher.store.records import TaskRecord, TaskState

Clock = Callable[[], datetime]

# The fields of a request, with their ranges (a malformed task type name is an unknown
# task type, as a registry would say): one definition for the Python API, the CLI and
# the HTTP API (whose request models use these types), so one input gets one answer.
TaskTypeName = Annotated[str, Field(pattern=TASK_TYPE_PATTERN)]
Priority = Annotated[int, Field(ge=0, le=MAX_PRIORITY)]
# Longest a task may be delayed: as long as a retry may wait (ten years).
MAX_DELAY_S: Final = MAX_RETRY_DELAY_S
Countdown = Annotated[float, Field(ge=0, le=MAX_DELAY_S, allow_inf_nan=False)]
Eta = AwareWireTime
MAX_IDEMPOTENCY_KEY: Final = 200
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]
QueueName = Annotated[str, Field(pattern=QUEUE_NAME_PATTERN), AfterValidator(check_queue_name)]

_CHECKS: Final[dict[str, TypeAdapter[Any]]] = {
    "priority": TypeAdapter(Priority),
    "countdown": TypeAdapter(Countdown),
    "eta": TypeAdapter(Eta),
    "idempotency_key": TypeAdapter(IdempotencyKey),
    "queue": TypeAdapter(QueueName),
}


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task to submit: ``TaskRequest("word_count", {"text": "hi"}, priority=5)``."""

    task_type: str
    params: Mapping[str, JsonValue] = field(default_factory=dict)
    _: KW_ONLY
    # Submitting again with a key already used returns the first task instead of a new one.
    idempotency_key: str | None = None
    # Broker priority, 0 (default) to 255; the classic task queue orders by it, up to
    # WQ_AMQP_MAX_PRIORITY (higher values count as that).
    priority: int = 0
    # A delayed task: not published before ``eta`` (an aware datetime), or ``countdown``
    # seconds after submission. One or neither; a time not in the future publishes at once.
    eta: datetime | None = None
    countdown: float | None = None
    # The task queue to route it to; None: the one its task type declares, else ``default``.
    queue: str | None = None

    def __post_init__(self) -> None:
        """Check every field against its range; ``InvalidRequest`` (a ``ValueError``) if not."""
        if self.eta is not None and self.countdown is not None:
            raise InvalidRequest("eta", "give eta or countdown, not both")
        if self.eta is not None and self.eta.utcoffset() is None:
            raise InvalidRequest("eta", "must be an aware datetime (with a time zone)")
        if isinstance(self.priority, bool):
            raise InvalidRequest("priority", "must be an integer, not a boolean")
        for name, check in _CHECKS.items():
            value = getattr(self, name)
            if value is None:
                continue
            try:
                check.validate_python(value, strict=True)
            except ValidationError as exc:
                raise InvalidRequest(name, exc.errors()[0]["msg"]) from None
        if not isinstance(self.params, Mapping):
            raise InvalidRequest("params", "must be a JSON object")

    def due_at(self, now: datetime) -> datetime | None:
        """When the task may be published, or None when it may be at once."""
        due = now + timedelta(seconds=self.countdown) if self.countdown is not None else self.eta
        return due if due is not None and due > now else None


@dataclass(frozen=True, slots=True)
class Submission:
    """What a submission recorded: each task's id, whether it is new, and a publish failure.

    A task whose idempotency key was already used is not new: its id is the first task's.
    After a failure every task is recorded; those not confirmed stay ``submitted`` until
    the outbox publishes them.
    """

    task_ids: list[UUID]
    created: list[bool]
    failure: WorkQueueError | None = None


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What a retry by hand did: the tasks it moved to their next attempt, and the others."""

    retried: list[UUID]
    # Why each of the others was left alone: its state, or that it is unknown.
    refused: dict[UUID, str]


class CancelOutcome(StrEnum):
    """What a cancel request did."""

    REQUESTED = "requested"  # flagged, and every executor told: skipped or stopped cooperatively
    CANCELLED = "cancelled"  # it had not been published (scheduled): cancelled outright
    ALREADY_FINAL = "already_final"  # it had an outcome already: nothing changed


@dataclass(frozen=True, slots=True)
class CancelReport:
    """The answer to a cancel request: what happened, and the task's record after it."""

    outcome: CancelOutcome
    record: TaskRecord

    @classmethod
    def of(cls, record: TaskRecord, *, requested: bool) -> CancelReport:
        """The report on ``record`` after the store flagged it (``requested``) or not."""
        if not requested:
            return cls(CancelOutcome.ALREADY_FINAL, record)
        if record.state is TaskState.CANCELLED:
            return cls(CancelOutcome.CANCELLED, record)
        return cls(CancelOutcome.REQUESTED, record)


def cancel_notice(record: TaskRecord, now: datetime) -> CancelNotice:
    """The notice that tells executors about ``record``'s cancel, at the first request's time.

    Published for a scheduled task too: whatever claims due tasks may have raced the flag.
    """
    return CancelNotice(
        task_id=record.task_id,
        requested_at=record.cancel_requested_at or now,
        attempt=record.attempt,
    )


def utcnow() -> datetime:
    """The time now, in UTC: the default clock."""
    return datetime.now(UTC)


def build_task(
    request: TaskRequest,
    registry: TaskRegistry | None,
    clock: Clock = utcnow,
    *,
    max_body_bytes: int | None = None,
    declared_queue: Callable[[str], str | None] = lambda task_type: None,
) -> TaskMessage:
    """A new task message for ``request``, validated against ``registry`` when there is one.

    Its queue is the request's, else the one its task type declares (in ``registry``, or
    else as ``declared_queue`` finds it: the executors' published task types), else
    ``default``. With ``max_body_bytes``, a task whose body would be larger is refused here,
    before it is recorded: every executor would refuse it (``WQ_AMQP_MAX_BODY_BYTES``).
    """
    params = dict(request.params)
    queue = request.queue
    if registry is not None:
        definition = registry.get(request.task_type)
        definition.validate(params)
        queue = queue or definition.options.queue
    queue = queue or declared_queue(request.task_type) or DEFAULT_QUEUE
    task = _task_message(request, params, clock, queue)
    if max_body_bytes is not None:
        size = len(encode(task))
        if size > max_body_bytes:
            limit = f"the limit of {max_body_bytes} (WQ_AMQP_MAX_BODY_BYTES)"
            error = f"make a task body of {size} bytes, over {limit}"
            raise InvalidParams(request.task_type, [{"loc": [], "msg": error, "type": "too_large"}])
    return task


def _task_message(
    request: TaskRequest, params: dict[str, JsonValue], clock: Clock, queue: str
) -> TaskMessage:
    try:
        return TaskMessage(
            task_id=uuid4(),
            task_type=request.task_type,
            params=params,
            submitted_at=clock(),
            priority=request.priority,
            queue=queue,
        )
    except ValidationError as exc:
        if any(error["loc"][:1] == ("task_type",) for error in exc.errors(include_url=False)):
            raise UnknownTaskType(request.task_type) from exc
        if any(error["loc"][:1] == ("priority",) for error in exc.errors(include_url=False)):
            raise ValueError(f"priority must be 0 to 255, not {request.priority}") from exc
        raise invalid_params(request.task_type, exc) from exc
