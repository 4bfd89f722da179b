"""Wire models: task, result, cancel notice, progress and heartbeat messages (docs/protocol.md).

Every message carries ``version`` 1 of the schema.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
)

from common.topology import DEFAULT_QUEUE, check_queue_name

SCHEMA_VERSION = 1
# Most task queues one heartbeat may list.
MAX_QUEUES = 256
MAX_ATTEMPT = 10_000  # far above any retry policy; keeps the number a 64-bit integer anywhere
MAX_PRIORITY = 255  # the AMQP priority property is one octet

# Task types appear in routing, the management UI and logs: keep them readable and safe.
TASK_TYPE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"

# The longest wait a retry may ask for (ten years): a result's next attempt time must still be a
# time every store can hold.
MAX_RETRY_DELAY_S = 10 * 365 * 24 * 3600
# Times on the wire must lie in this range once in UTC: every store and every computation on
# them (a retry's next attempt, a countdown) then stays inside ``datetime``'s years 1 to 9999.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9000, 1, 1, tzinfo=UTC)
# Counters and sizes fit a signed 64-bit integer: SQLite's and PostgreSQL's bigint.
MAX_COUNT = 2**63 - 1


def _in_range(moment: datetime) -> datetime:
    try:
        instant = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    except OverflowError:  # 9999-12-31T23:00-05:00 has no UTC equivalent in datetime's range
        instant = None
    if instant is None or not EARLIEST_TIME <= instant.replace(tzinfo=UTC) < LATEST_TIME:
        first, last = EARLIEST_TIME.year, LATEST_TIME.year
        raise ValueError(f"time out of range: must lie between the years {first} and {last} UTC")
    return moment


# A time a message carries, with the offset it was sent with, checked to be in range.
WireTime = Annotated[datetime, AfterValidator(_in_range)]
AwareWireTime = Annotated[AwareDatetime, AfterValidator(_in_range)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class _Wire(BaseModel):
    # Frozen: a decoded message is a fact, not a draft. Extra fields are ignored so that a
    # newer producer can add optional fields without breaking older executors.
    model_config = ConfigDict(frozen=True, extra="ignore")

    @field_validator("version", mode="before", check_fields=False)
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # JSON true would pass as 1 in lax mode; a version must be the number itself.
        if isinstance(value, bool):
            raise ValueError("version must be an integer")
        return value


class TaskMessage(_Wire):
    """One unit of work, as published to the task queue."""

    version: Literal[1] = 1
    task_id: UUID
    task_type: str = Field(pattern=TASK_TYPE_PATTERN)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    submitted_at: AwareWireTime
    # Also sent as the AMQP ``priority`` property, which is what the broker orders by; kept
    # in the body so that every republished copy (retry, outbox, replay) carries it on.
    priority: int = Field(default=0, ge=0, le=MAX_PRIORITY)
    # The task queue the dispatcher routes it to. Not part of the body (``exclude``): the
    # routing key says it (docs/protocol.md), and the store keeps it for every republish.
    queue: str = Field(default=DEFAULT_QUEUE, exclude=True)

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return check_queue_name(value)


class Outcome(StrEnum):
    """How an attempt ended, as the executor reports it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # Not final: this attempt failed and the next one waits in a retry queue.
    RETRYING = "retrying"
    # Final until replayed: the task message is in the dead-letter queue.
    DEAD = "dead"
    # Final: skipped because a cancel was requested, or stopped by its handler on request.
    CANCELLED = "cancelled"


class ErrorKind(StrEnum):
    """Why an attempt failed; stable strings that clients may branch on."""

    HANDLER_ERROR = "handler_error"
    DECODE_ERROR = "decode_error"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TASK_TYPE = "unknown_task_type"
    INVALID_PARAMS = "invalid_params"
    RESULT_NOT_JSON = "result_not_json"
    MESSAGE_TOO_LARGE = "message_too_large"
    DELIVERY_LIMIT = "delivery_limit"
    TIME_LIMIT = "time_limit"
    CANCELLED = "cancelled"


class TaskErrorInfo(_Wire):
    """What went wrong: a stable kind, the exception type and message, and a traceback."""

    kind: ErrorKind
    type: str
    message: str
    traceback: str | None = None
    details: JsonValue = None


class ResultMessage(_Wire):
    """The outcome of one attempt, as published to the task's ``reply_to`` queue."""

    version: Literal[1] = 1
    task_id: UUID
    task_type: str
    outcome: Outcome
    result: JsonValue = None
    error: TaskErrorInfo | None = None
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    executor: str
    redelivered: bool = False
    started_at: WireTime
    finished_at: WireTime
    retry_in_s: float | None = Field(default=None, ge=0, le=MAX_RETRY_DELAY_S, allow_inf_nan=False)


# Longest progress note a handler may report: a status line, not a log.
MAX_PROGRESS_NOTE = 200


class CancelNotice(_Wire):
    """A request to cancel a task, as published to the cancellation stream."""

    version: Literal[1] = 1
    task_id: UUID
    requested_at: AwareWireTime
    # The attempts it cancels: this one and every earlier one; None (a notice from before
    # retries by hand) cancels every attempt. A task retried by hand after a cancel runs.
    attempt: int | None = Field(default=None, ge=1, le=MAX_ATTEMPT)


# Most starts of one attempt an executor may allow before it gives the attempt up.
MAX_DELIVERY_LIMIT = 10_000


class StartNotice(_Wire):
    """An attempt is starting, as published to the progress queue.

    The dispatcher counts the starts of each attempt: only a delivery that actually started
    counts towards ``delivery_limit``, the limit of the executor that sent it. A redelivered
    start asks for a ``StartVerdict`` before it runs.
    """

    version: Literal[1] = 1
    task_id: UUID
    task_type: str
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    executor: str
    redelivered: bool = False
    delivery_limit: int = Field(ge=1, le=MAX_DELIVERY_LIMIT)
    started_at: AwareWireTime


class Verdict(StrEnum):
    """What the dispatcher says of a redelivered start (docs/protocol.md, the delivery limit)."""

    RUN = "run"  # run it: an open attempt, within the limit (or unknown to this dispatcher)
    SETTLED = "settled"  # do not run it: the task already has its outcome; ack it
    GIVE_UP = "give_up"  # do not run it: started more often than the limit; dead-letter it


class StartVerdict(_Wire):
    """The dispatcher's answer to a start notice that asked for one (``reply_to`` set)."""

    version: Literal[1] = 1
    task_id: UUID
    attempt: int = Field(ge=1, le=MAX_ATTEMPT)
    verdict: Verdict
    runs: int = Field(ge=0, le=MAX_COUNT)


class ProgressMessage(_Wire):
    """How far a running attempt has got, as published to the progress queue (advisory)."""

    version: Literal[1] = 1
    task_id: UUID
    task_type: str
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    executor: str
    percent: float = Field(ge=0, le=100, allow_inf_nan=False)
    note: str | None = Field(default=None, max_length=MAX_PROGRESS_NOTE)
    reported_at: AwareWireTime


class DeadReason(StrEnum):
    """Why a task was dead-lettered (header ``x-wq-dead-reason``)."""

    REJECTED = "rejected"  # it can never run: bad body, unknown type, invalid params, too big
    RETRIES_EXHAUSTED = "retries_exhausted"
    DELIVERY_LIMIT = "delivery_limit"  # delivered too often without being settled


# Executor heartbeats, on ``wq.executors`` (docs/protocol.md, "Executor heartbeats"). An
# executor sends one when it starts, one every heartbeat interval, and one when it stops
# cleanly; every one carries its task types with their params JSON Schemas, so a dispatcher
# that starts later still learns them from the next heartbeat.


class ExecutorEvent(StrEnum):
    """Why a heartbeat was sent."""

    STARTED = "started"
    HEARTBEAT = "heartbeat"
    STOPPED = "stopped"  # the last one, after a clean stop


class RunningTask(_Wire):
    """A task an executor is running right now."""

    task_id: UUID
    task_type: str
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPT)
    started_at: AwareWireTime


class TaskTypeInfo(_Wire):
    """A task type as an executor publishes it: params JSON Schema, description, options."""

    name: str
    params_schema: dict[str, JsonValue]
    description: str | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)


class Heartbeat(_Wire):
    """One executor's state at ``sent_at``."""

    version: Literal[1] = 1
    event: ExecutorEvent
    executor: str
    host: str
    pid: Count
    slots: Count
    started_at: AwareWireTime
    sent_at: AwareWireTime
    task_types: list[TaskTypeInfo] = Field(default_factory=list)
    # The task queues it consumes (an executor from before named queues sends none).
    queues: list[Annotated[str, AfterValidator(check_queue_name)]] = Field(
        default_factory=list, max_length=MAX_QUEUES
    )
    current_tasks: list[RunningTask] = Field(default_factory=list)
    processed: Count = 0
    failed: Count = 0
    cpu_percent: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    rss_bytes: Count | None = None
