"""Request and response bodies of the HTTP API (JSON; the OpenAPI schema is built from them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from pydantic.config import JsonDict

from dispatcher.requests import (
    CancelOutcome,
    Countdown,
    Eta,
    IdempotencyKey,
    Priority,
    QueueName,
    TaskTypeName,
)
from dispatcher.store.records import (
    AttemptRecord,
    ExecutorRecord,
    ScheduleRecord,
    TaskRecord,
    TaskState,
)

MAX_BATCH: Final = 1000
MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 50
MAX_WAIT_S: Final = 60.0


class TaskSubmission(BaseModel):
    """One task to run."""

    model_config = ConfigDict(extra="forbid")

    # The field types are the Python API's own (dispatcher.requests): one range each.
    task_type: TaskTypeName = Field(examples=["word_count"])
    params: dict[str, JsonValue] = Field(
        default_factory=dict, examples=[{"text": "to be or not to be"}]
    )
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description="Submitting again with a key already used returns the first task.",
    )
    priority: Priority = Field(
        default=0,
        description="0 to 255; higher runs first. The task queue honours up to "
        "WQ_AMQP_MAX_PRIORITY (10 by default): higher values count as that.",
    )
    eta: Eta | None = Field(
        default=None,
        description="Not published before this time (with a time zone, between the years 1970 "
        "and 9000); the task is `scheduled` until then. A time not in the future publishes "
        "at once.",
        examples=["2026-05-01T09:00:00+02:00"],
    )
    countdown: Countdown | None = Field(
        default=None,
        description="Not published before this many seconds from now (0 to 315,360,000, ten "
        "years); not with `eta`.",
    )
    queue: QueueName | None = Field(
        default=None,
        description="The task queue to route it to (1 to 64 of a-z, 0-9, '-', '_'); by "
        "default the one its task type declares, else `default` (the wq.tasks queue).",
        examples=["reports"],
    )

    @model_validator(mode="after")
    def _one_delay(self) -> Self:
        if self.eta is not None and self.countdown is not None:
            raise ValueError("give eta or countdown, not both")
        return self


class Reschedule(BaseModel):
    """The new time of a delayed task: ``eta`` or ``countdown``, exactly one."""

    model_config = ConfigDict(extra="forbid")

    eta: Eta | None = Field(default=None, examples=["2026-05-01T09:00:00+02:00"])
    countdown: Countdown | None = Field(default=None, description="Seconds from now.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.eta is None) == (self.countdown is None):
            raise ValueError("give eta or countdown (one of them)")
        return self


class BatchSubmission(BaseModel):
    """Tasks to run; all are validated before any is recorded."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class SubmittedTask(BaseModel):
    """A recorded task: new, or the earlier task holding the same idempotency key."""

    task_id: UUID
    state: TaskState
    created: bool = Field(description="False when an earlier task held the idempotency key.")


class SubmittedBatch(BaseModel):
    """The batch's tasks, in request order."""

    tasks: list[SubmittedTask]


class NotQueued(BaseModel):
    """503: the broker did not confirm; tasks still ``submitted`` are published by the outbox."""

    detail: str
    tasks: list[SubmittedTask]


# What each field of a task means, for the OpenAPI docs: TaskRecord (dispatcher.store.records) is
# the store's record and the API's answer, and carries no descriptions of its own.
_TASK_FIELDS: Final = {
    "state": "scheduled, submitted, queued, running (an executor started the attempt), retrying, "
    "then one of the final states succeeded, failed, dead or cancelled.",
    "attempt": "The attempt that ran last (1 for the first).",
    "submitted_at": "When the task was recorded.",
    "queued_at": "When the broker confirmed the task message.",
    "started_at": "When the last attempt started on an executor (its latest start, while it runs).",
    "runs": "Starts of the current attempt reported by executors: more than 1 means it was "
    "started again after its executor died or lost its connection.",
    "finished_at": "When the outcome was reached.",
    "next_attempt_at": "While retrying: when the next attempt is due.",
    "executor": "The executor that ran the last attempt.",
    "result": "The handler's return value, once succeeded.",
    "error": "Why it failed, went dead or was cancelled.",
    "redelivered": "The broker delivered the task again (a connection or executor was lost).",
    "duplicate_results": "Results that arrived after the outcome (the task ran more than once).",
    "priority": "Broker priority, 0 (lowest, the default) to 255; higher runs first.",
    "eta": "Not published before this time: a delayed task, or a schedule's fire time.",
    "schedule_id": "The cron schedule that submitted the task, if one did.",
    "cancel_requested_at": "When a cancel was first requested; the task may still finish "
    "otherwise if it was running and did not stop.",
    "progress": "Last progress its handler reported, in percent (0-100).",
    "progress_note": "The note of the last progress report.",
    "progress_at": "When the last progress report was sent.",
}


def _described(descriptions: Mapping[str, str]) -> Callable[[JsonDict], None]:
    """A ``json_schema_extra`` that adds ``descriptions`` to a model's properties."""

    def describe(schema: JsonDict) -> None:
        properties = schema.get("properties")
        assert isinstance(properties, dict)
        for name, text in descriptions.items():
            field = properties.get(name)
            if isinstance(field, dict):
                field["description"] = text

    return describe


class TaskView(TaskRecord):
    """A task: state, result or error, attempts, timestamps, executor, priority, delay,
    cancel request and progress."""

    model_config = ConfigDict(frozen=True, json_schema_extra=_described(_TASK_FIELDS))

    @classmethod
    def of(cls, record: TaskRecord) -> TaskView:
        """The API's view of a store record."""
        return cls.model_validate(record, from_attributes=True)


class TaskDetail(TaskView):
    """A task as ``TaskView`` shows it, with every attempt it made, first to last."""

    attempts: list[AttemptRecord] = Field(
        description="Each attempt: executor, started_at and finished_at, runs (starts the "
        "executors reported), outcome (null while it runs) and error with its traceback."
    )

    @classmethod
    def with_attempts(cls, record: TaskRecord, attempts: list[AttemptRecord]) -> TaskDetail:
        """The API's detailed view of a store record."""
        return cls.model_validate({**dict(record), "attempts": attempts})


class TaskPage(BaseModel):
    """One page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    tasks: list[TaskView]
    next_cursor: str | None = Field(description="None on the last page.")


class CancelAnswer(BaseModel):
    """What a cancel request did, and the task after it."""

    outcome: CancelOutcome = Field(
        description="requested: recorded and every executor told (202); cancelled: it had not "
        "been published, so it is cancelled outright (200); already_final: it had an outcome, "
        "nothing changed (200)."
    )
    task: TaskView


class CancelNotPublished(BaseModel):
    """503: the cancel is recorded, but executors were not told; asking again is safe."""

    detail: str
    task: TaskView


class ScheduleCreation(BaseModel):
    """A cron schedule to create; name, cron, time zone and task are validated as
    ``dispatcher schedule add`` validates them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique; letters, digits and _.:- (up to 128).")
    cron: str = Field(
        description="Five fields (minute first), six (seconds first) or @hourly, @daily, "
        "@weekly, @monthly, @yearly.",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(default="UTC", description="IANA zone the cron follows.")
    task_type: str = Field(examples=["word_count"])
    params: dict[str, JsonValue] = Field(default_factory=dict)
    priority: Priority = Field(default=0)
    paused: bool = Field(default=False, description="Create it paused.")
    queue: QueueName | None = Field(
        default=None, description="Task queue of its tasks (default: the type's own)."
    )


class ScheduleEdit(BaseModel):
    """Fields of a schedule to change; those left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, examples=["30 4 * * *"])
    timezone: str | None = Field(default=None, description="IANA zone the cron follows.")
    params: dict[str, JsonValue] | None = None
    priority: Priority | None = None
    queue: QueueName | None = None
    paused: bool | None = Field(default=None, description="true pauses, false resumes.")


class ScheduleRun(BaseModel):
    """The task a schedule fired by hand."""

    task_id: UUID


class ScheduleList(BaseModel):
    """Every schedule, by name."""

    schedules: list[ScheduleRecord]


class QueueInfo(BaseModel):
    """A queue's ready messages and attached consumers."""

    name: str
    messages: int
    consumers: int


class QueueList(BaseModel):
    """The deployment's queues that exist (retry queues appear once first used)."""

    queues: list[QueueInfo]


_EXECUTOR_FIELDS: Final = {
    "executor_id": "The executor's name (WQ_EXECUTOR_NAME, or host.pid).",
    "state": "running while heartbeats arrive; lost once silent for "
    "WQ_DISPATCHER_EXECUTOR_LOST_AFTER seconds; stopped after a clean stop.",
    "last_seen_at": "When its last heartbeat was sent.",
    "slots": "Tasks it runs at once (--concurrency).",
    "task_types": "The task types it runs.",
    "current_tasks": "The tasks it was running at its last heartbeat.",
    "processed": "Tasks it settled since it started.",
    "failed": "Of those, the ones that failed (retried, failed or dead).",
    "cpu_percent": "Its CPU use over the last heartbeat interval (100 = one core).",
    "rss_bytes": "Its resident memory.",
}


class ExecutorView(ExecutorRecord):
    """An executor as its last heartbeat described it, with its state as of now."""

    model_config = ConfigDict(frozen=True, json_schema_extra=_described(_EXECUTOR_FIELDS))

    @classmethod
    def of(cls, record: ExecutorRecord) -> ExecutorView:
        """The API's view of a store record."""
        return cls.model_validate(record, from_attributes=True)


class ExecutorList(BaseModel):
    """Every executor recorded, by id."""

    executors: list[ExecutorView]


class TaskTypeInfo(BaseModel):
    """A task type: the JSON Schema its params must match, its description and options."""

    name: str
    params_schema: dict[str, Any]
    description: str | None = Field(default=None, description="The handler's summary line.")
    options: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Retries, backoff, permanent errors and time limits.",
    )
    source: Literal["dispatcher", "executor"] = Field(
        description="dispatcher: the dispatcher's own task module (WQ_DISPATCHER_TASKS); "
        "executor: published by an executor's heartbeats."
    )
    published_by: str | None = Field(
        default=None, description="The executor that published it last (source executor)."
    )
    updated_at: datetime | None = Field(
        default=None, description="When it was last published (source executor)."
    )


class TaskTypeList(BaseModel):
    """Task types the dispatcher knows, by name: a type may be listed once per source.

    Submissions and schedules are validated against the dispatcher's task module when
    WQ_DISPATCHER_TASKS is set, otherwise against what executors published.
    """

    task_types: list[TaskTypeInfo]


class Liveness(BaseModel):
    """The process is up and serving."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether the dispatcher can do its work, and which dependency is missing if not."""

    ready: bool
    broker: bool = Field(description="Every connection to RabbitMQ is open.")
    results: bool = Field(
        description="The results consumer keeps up: no result has waited unsettled, with none "
        "settled, for longer than WQ_DISPATCHER_RESULTS_STALL_AFTER seconds."
    )
    store: bool = Field(description="The task store answered.")


class ErrorDetail(BaseModel):
    """An error answered with a message."""

    detail: str
