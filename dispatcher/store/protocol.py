"""The task store's interfaces: one row of lifecycle per task id.

``TaskStore`` is the seam: the service depends on it. Each backend implements the synchronous
``SyncTaskStore`` (SQLite for one dispatcher, PostgreSQL for replicas), and
``dispatcher.store.threaded.ThreadedTaskStore`` turns either into a ``TaskStore``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from common import (
    Heartbeat,
    ProgressMessage,
    ResultMessage,
    StartNotice,
    TaskMessage,
    TaskTypeInfo,
)
from dispatcher.store.records import (
    ActivityBucket,
    AttemptRecord,
    ExecutorRecord,
    RecordedResult,
    ScheduleRecord,
    TaskRecord,
    TaskState,
    TaskTypeRecord,
)

if TYPE_CHECKING:
    from dispatcher.store.query import TaskQuery


class TaskStore(Protocol):
    """Durable task records, keyed by task id."""

    async def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted, before they are published; returns each one's id.

        A task whose idempotency key is already recorded is not added: its id in the result
        is the existing task's.
        """

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> Awaitable[None]:
        """Record that the broker confirmed these tasks; never moves a task backwards.

        Ordered at the call, not at the await: every call made after it sees the mark, so
        the caller may go on without awaiting the write (a task not marked stays
        ``submitted``, and the outbox publishes it again).
        """

    async def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks recorded as submitted before ``submitted_before`` and never confirmed."""

    async def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome; False when the task already had one (a duplicate changes nothing)."""

    async def record_replay(
        self, task: TaskMessage, at: datetime, *, cause: str | None = None
    ) -> bool:
        """Record, before it is published, that a dead task runs again as ``task.attempt``.

        False when the task is recorded in another state than dead: nothing to publish.
        """

    async def reschedule(self, task_id: UUID, eta: datetime) -> TaskRecord | None:
        """Move a scheduled task's eta; its record, None if it is not scheduled."""

    async def retry_tasks(
        self, task_ids: Sequence[UUID], at: datetime, *, cause: str
    ) -> list[TaskMessage]:
        """Move failed, dead or cancelled tasks to their next attempt; the ones moved."""

    async def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist, in no particular order."""

    async def attempts(self, task_id: UUID) -> list[AttemptRecord]:
        """Every recorded attempt of ``task_id``, first to last (none for an unknown id)."""

    async def prune_tasks(self, before: datetime, states: Sequence[TaskState], limit: int) -> int:
        """Delete up to ``limit`` tasks in ``states`` finished before ``before``, oldest first."""

    async def count_prunable(self, before: datetime, states: Sequence[TaskState]) -> int:
        """How many tasks ``prune_tasks`` would delete."""

    async def prune_executors(self, before: datetime) -> int:
        """Delete the executors not heard from since ``before``; how many there were."""

    async def close(self) -> None:
        """Release the store's resources."""

    async def record_results(
        self, results: Sequence[ResultMessage], *, read_back: Collection[UUID] = frozenset()
    ) -> list[RecordedResult]:
        """``record_result`` for each, in order, in one transaction.

        The records of the ids in ``read_back`` come back as the transaction wrote them, so
        that whoever waits for those outcomes needs no second read.
        """

    async def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Upsert the executor's row; an older heartbeat than the recorded one changes nothing."""

    async def list_executors(self) -> list[ExecutorRecord]:
        """Every executor ever recorded, by id (state left to the caller)."""

    async def publish_task_types(
        self,
        task_types: Sequence[TaskTypeInfo],
        *,
        published_by: str,
        at: datetime,
        live_since: datetime | None = None,
    ) -> list[str]:
        """Record task types as an executor published them; returns the names refused.

        A type published by another executor that is still live (not stopped, seen at or
        after ``live_since``) keeps its record; with no ``live_since`` the last publisher wins.
        """

    async def list_task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, by name."""

    async def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""

    async def count_tasks(self, query: TaskQuery) -> int:
        """How many tasks match ``query``'s filters (its position and limit aside)."""

    async def activity(
        self, since: datetime, bucket: timedelta, buckets: int
    ) -> list[ActivityBucket]:
        """What finished from ``since`` on, in ``buckets`` spans of ``bucket``, oldest first."""

    async def count_submitted(self, after: datetime, until: datetime) -> dict[str, int]:
        """How many tasks were submitted in ``(after, until]``, by task type."""

    async def ping(self) -> None:
        """Reach the store (reconnecting if need be); ``StoreError`` when it cannot."""

    async def request_cancel(self, task_id: UUID, at: datetime, *, via: str = "python") -> bool:
        """Flag a task as cancel-requested at ``at`` through ``via``; False if it is final.

        The first request's time is kept. A ``scheduled`` or ``retrying`` task, with no message
        on the broker, becomes ``cancelled`` at once; any other open task keeps its state until
        an outcome arrives.
        """

    async def record_start(self, notice: StartNotice) -> int | None:
        """Count a start of the attempt the task is on, while it is open (submitted or queued).

        Returns the starts of that attempt so far, or None when it was not counted (unknown
        task, another attempt, final or retrying). Not durable: it is advisory.
        """

    async def record_progress(self, report: ProgressMessage) -> bool:
        """Record a progress report unless the task is final or has a later one; whether it did."""

    async def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record delayed tasks as scheduled, not to be published before their eta.

        Idempotency keys work as in ``add_submitted``.
        """

    async def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move the tasks owed a publish at ``now`` to submitted; returns their messages.

        Those are scheduled tasks whose eta has come, and retrying tasks whose next attempt is
        due (returned with that attempt's number, which the record takes). Atomic: of stores
        racing for one task, exactly one claims it. A claimed task's eta becomes ``now``, its
        release time, so the outbox waits its full age from there.
        """

    async def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new cron schedule; ``ScheduleExists`` when its name is taken."""

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    async def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""

    async def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule (a new ``next_fire_at`` unless None); returns it."""

    async def update_schedule(
        self, schedule: ScheduleRecord, *, read_at: datetime
    ) -> ScheduleRecord:
        """Write an edited schedule read at ``read_at``; ``ScheduleConflict`` if edited since."""

    async def delete_schedule(self, name: str) -> None:
        """Delete a schedule (its tasks stay); ``ScheduleNotFound`` when there is none."""

    async def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose ``next_fire_at`` is at or before ``now``, earliest first."""

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        """Fire ``schedule`` once for its ``next_fire_at``: in one transaction, move it on to
        ``next_fire_at`` if it still holds the value read, and record ``task`` as submitted.

        Returns False, recording nothing, when another dispatcher fired it first (or it was
        paused or deleted meanwhile); the key makes a second task impossible even then.
        """


class SyncTaskStore(Protocol):
    """``TaskStore`` with blocking calls: what a backend implements, and the sync client uses.

    Implementations are thread-safe, and every method means what its ``TaskStore`` namesake
    documents.
    """

    def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]: ...

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None: ...

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]: ...

    def record_result(self, result: ResultMessage) -> bool: ...

    def record_replay(
        self, task: TaskMessage, at: datetime, *, cause: str | None = None
    ) -> bool: ...

    def reschedule(self, task_id: UUID, eta: datetime) -> TaskRecord | None: ...

    def retry_tasks(
        self, task_ids: Sequence[UUID], at: datetime, *, cause: str
    ) -> list[TaskMessage]: ...

    def get(self, task_id: UUID) -> TaskRecord: ...

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]: ...

    def attempts(self, task_id: UUID) -> list[AttemptRecord]: ...

    def prune_tasks(self, before: datetime, states: Sequence[TaskState], limit: int) -> int: ...

    def count_prunable(self, before: datetime, states: Sequence[TaskState]) -> int: ...

    def prune_executors(self, before: datetime) -> int: ...

    def close(self) -> None: ...

    def record_results(
        self, results: Sequence[ResultMessage], *, read_back: Collection[UUID] = frozenset()
    ) -> list[RecordedResult]: ...

    def record_heartbeat(self, heartbeat: Heartbeat) -> None: ...

    def list_executors(self) -> list[ExecutorRecord]: ...

    def publish_task_types(
        self,
        task_types: Sequence[TaskTypeInfo],
        *,
        published_by: str,
        at: datetime,
        live_since: datetime | None = None,
    ) -> list[str]: ...

    def list_task_types(self) -> list[TaskTypeRecord]: ...

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]: ...

    def count_tasks(self, query: TaskQuery) -> int: ...

    def activity(
        self, since: datetime, bucket: timedelta, buckets: int
    ) -> list[ActivityBucket]: ...

    def count_submitted(self, after: datetime, until: datetime) -> dict[str, int]: ...

    def ping(self) -> None: ...

    def request_cancel(self, task_id: UUID, at: datetime, *, via: str = "python") -> bool: ...

    def record_starts(self, notices: Sequence[StartNotice]) -> list[int | None]: ...

    def record_progress(self, report: ProgressMessage) -> bool: ...

    def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]: ...

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]: ...

    def add_schedule(self, schedule: ScheduleRecord) -> None: ...

    def list_schedules(self) -> list[ScheduleRecord]: ...

    def get_schedule(self, name: str) -> ScheduleRecord: ...

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord: ...

    def update_schedule(self, schedule: ScheduleRecord, *, read_at: datetime) -> ScheduleRecord: ...

    def delete_schedule(self, name: str) -> None: ...

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]: ...

    def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool: ...
