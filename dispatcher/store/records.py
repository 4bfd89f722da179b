"""What the task store keeps: task, attempt, executor, task-type and schedule records.

The store's interfaces (``dispatcher.store.protocol``) read and write these; the HTTP API, the
command line and the sync client show them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from common import DEFAULT_QUEUE, JsonValue, Outcome, RunningTask, TaskErrorInfo


class TaskState(StrEnum):
    """Where a task is in its life."""

    SCHEDULED = "scheduled"  # recorded with an eta; published when it is due
    SUBMITTED = "submitted"  # recorded, publish not yet confirmed
    QUEUED = "queued"  # the broker confirmed the task message
    RUNNING = "running"  # an executor reported starting the attempt; no outcome yet
    RETRYING = "retrying"  # an attempt failed; the store holds the next until it is due
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"  # in the dead-letter queue: poison, retries exhausted or delivery limit
    CANCELLED = "cancelled"  # cancelled before it ran, or stopped cooperatively while running

    @property
    def is_final(self) -> bool:
        """Whether the task has an outcome; only a replay moves a dead task on."""
        return self in _FINAL_STATES


_FINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED}
)


class TaskRecord(BaseModel):
    """Everything the store knows about one task."""

    model_config = ConfigDict(frozen=True)

    task_id: UUID
    task_type: str
    params: dict[str, JsonValue]
    state: TaskState
    attempt: int
    submitted_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    executor: str | None = None
    result: JsonValue = None
    error: TaskErrorInfo | None = None
    redelivered: bool = False
    duplicate_results: int = 0
    idempotency_key: str | None = None
    # Broker priority of the task message (0 = lowest, the default).
    priority: int = 0
    # Not published before this time (a delayed task, or a cron schedule's fire time).
    eta: datetime | None = None
    # The cron schedule that created this task, if any.
    schedule_id: UUID | None = None
    # Set once by a cancel request; an executor checks the flag before it starts the task.
    cancel_requested_at: datetime | None = None
    # Where that first request came from: cli, http or python.
    cancel_requested_via: str | None = None
    # Last progress the handler reported: percent (0-100) and a short note.
    progress: float | None = None
    progress_note: str | None = None
    progress_at: datetime | None = None
    # Starts of the current attempt that executors reported (advisory start notices).
    runs: int = 0
    # The task queue it is routed to (``default``: the wq.tasks queue).
    queue: str = DEFAULT_QUEUE


class AttemptRecord(BaseModel):
    """One attempt of a task: where and when it ran, and how it ended.

    Written from the executor's start notice (``runs``, the latest ``executor`` and
    ``started_at``) and from the attempt's first outcome; an attempt whose executor sent no
    start notice appears with its outcome only.
    """

    model_config = ConfigDict(frozen=True)

    task_id: UUID
    attempt: int
    executor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # None while it runs (or if its outcome never came); retrying for a failure retried.
    outcome: Outcome | None = None
    error: TaskErrorInfo | None = None
    runs: int = 0
    # Who asked for this attempt, when it was not the task's own submission or retry policy:
    # "retried by hand (cli)", "replayed from the dead letters (http)", ...
    cause: str | None = None
    caused_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ActivityBucket:
    """What finished in one span of time: counts, and run-time percentiles in seconds
    (None when nothing that ran finished in it)."""

    start: datetime
    succeeded: int
    failed: int  # failed or dead
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True, slots=True)
class RecordedResult:
    """What recording one result did."""

    recorded: bool  # False for a duplicate: only the task's duplicate count changed
    # The row as the result wrote it, when its task id was asked to be read back.
    record: TaskRecord | None = None


class ExecutorState(StrEnum):
    """Whether an executor is alive, as far as its heartbeats tell."""

    RUNNING = "running"
    LOST = "lost"  # silent for longer than WQ_DISPATCHER_EXECUTOR_LOST_AFTER
    STOPPED = "stopped"  # said goodbye after a clean stop


class ExecutorRecord(BaseModel):
    """The last heartbeat recorded from one executor."""

    model_config = ConfigDict(frozen=True)

    executor_id: str
    host: str
    pid: int
    slots: int
    task_types: list[str]
    # The task queues it consumes (empty: an executor from before named queues).
    queues: list[str] = []
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None = None
    current_tasks: list[RunningTask] = []
    processed: int = 0
    failed: int = 0
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    # Filled in by ``with_state``: the store does not know the time or the timeout.
    state: ExecutorState = ExecutorState.RUNNING

    def with_state(self, now: datetime, *, lost_after: float) -> ExecutorRecord:
        """This record with ``state`` as of ``now``."""
        if self.stopped_at is not None:
            state = ExecutorState.STOPPED
        elif (now - self.last_seen_at).total_seconds() > lost_after:
            state = ExecutorState.LOST
        else:
            state = ExecutorState.RUNNING
        return self.model_copy(update={"state": state})


class TaskTypeRecord(BaseModel):
    """A task type as the last executor that published it described it."""

    model_config = ConfigDict(frozen=True)

    name: str
    params_schema: dict[str, JsonValue]
    description: str | None = None
    options: dict[str, JsonValue] = {}
    published_by: str
    updated_at: datetime


class ScheduleRecord(BaseModel):
    """A cron schedule: which task to submit, and when it fires next."""

    model_config = ConfigDict(frozen=True)

    schedule_id: UUID
    name: str
    cron: str
    timezone: str
    task_type: str
    params: dict[str, JsonValue]
    priority: int = 0
    # The task queue its tasks go to (resolved when it was created or last edited).
    queue: str = DEFAULT_QUEUE
    paused: bool = False
    # The next fire time not yet fired (UTC); the scheduler fires the schedule once it passed.
    next_fire_at: datetime
    last_fire_at: datetime | None = None
    last_task_id: UUID | None = None
    created_at: datetime
    updated_at: datetime
