"""The store's schedules: delayed tasks and retries released when due, cron schedules (SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from common import ScheduleConflict, ScheduleExists, ScheduleNotFound, TaskMessage
from dispatcher.store.records import ScheduleRecord, TaskState
from dispatcher.store.rows import keys_for, schedule_record, task_message
from dispatcher.store.sql.dialect import Transaction
from dispatcher.store.sql.tasks import SqlConcern, insert_once_per_key, task_row


class SqlSchedules(SqlConcern):
    """Tasks that wait for their eta, and the cron schedules that submit tasks."""

    def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record delayed tasks as scheduled with their etas; keys as in ``add_submitted``."""
        keys = keys_for(tasks, idempotency_keys)
        rows = [
            task_row(task, key, TaskState.SCHEDULED, eta)
            for task, eta, key in zip(tasks, etas, keys, strict=True)
        ]
        if not rows:
            return []
        return self._db.write(lambda tx: insert_once_per_key(tx, self._q, rows))

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move the tasks owed a publish at ``now`` to submitted and return their messages.

        Those are scheduled tasks whose eta has come (eta becomes ``now``), then retrying tasks
        whose next attempt is due (their attempt number moves on, eta becomes ``now``), each
        earliest first, ``limit`` in all. The rows read stay locked until the commit (SQLite:
        the write lock taken at the start of the transaction; PostgreSQL: row locks, skipping
        those another replica holds), so of stores racing for one task exactly one claims it.
        """

        def write(tx: Transaction) -> list[TaskMessage]:
            claimed: list[TaskMessage] = []
            for select, release in (
                (self._q.due_tasks, self._q.release_tasks),
                (self._q.due_retries, self._q.release_retries),
            ):
                if len(claimed) >= limit:
                    break
                due = tx.run(select, {"now": now, "limit": limit - len(claimed)}).rows
                if due:
                    tx.run(release, {"ids": [row["task_id"] for row in due], "eta": now})
                    claimed.extend(task_message(row) for row in due)
            return claimed

        return self._db.write(write)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new schedule; ``ScheduleExists`` when the name is taken."""
        row = schedule.model_dump(exclude={"last_fire_at", "last_task_id"})
        if not self._db.write(lambda tx: tx.run(self._q.add_schedule, row).rowcount):
            raise ScheduleExists(schedule.name)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        return [schedule_record(row) for row in self._db.read(self._q.list_schedules, {})]

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        rows = self._db.read(self._q.get_schedule, {"name": name})
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_record(rows[0])

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule, optionally moving its next fire time; returns it."""
        params = {"name": name, "paused": paused, "next_fire_at": next_fire_at, "updated_at": at}
        rows = self._db.write(lambda tx: tx.run(self._q.set_schedule_paused, params).rows)
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_record(rows[0])

    def update_schedule(self, schedule: ScheduleRecord, *, read_at: datetime) -> ScheduleRecord:
        """Write an edited schedule, unless it changed since it was read (``updated_at`` was
        ``read_at``): ``ScheduleNotFound`` if it is gone, ``ScheduleConflict`` if edited."""
        params = schedule.model_dump(
            include={"name", "cron", "timezone", "params", "priority", "queue", "paused"}
        ) | {"next_fire_at": schedule.next_fire_at, "updated_at": schedule.updated_at}
        params["read_at"] = read_at
        rows = self._db.write(lambda tx: tx.run(self._q.update_schedule, params).rows)
        if rows:
            return schedule_record(rows[0])
        self.get_schedule(schedule.name)  # ScheduleNotFound if it was deleted meanwhile
        raise ScheduleConflict(schedule.name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it submitted stay."""
        deleted = self._db.write(
            lambda tx: tx.run(self._q.delete_schedule, {"name": name}).rowcount
        )
        if not deleted:
            raise ScheduleNotFound(name)

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next fire time has come, earliest first."""
        rows = self._db.read(self._q.due_schedules, {"now": now, "limit": limit})
        return [schedule_record(row) for row in rows]

    def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        """Move the schedule on if it still holds the fire time read, and record its task.

        Dispatchers firing one schedule serialise on its row (SQLite: the write lock;
        PostgreSQL: the row lock, with the condition re-checked against the committed row):
        the second finds next_fire_at moved on and records nothing.
        """
        advance = {
            "schedule_id": schedule.schedule_id,
            "next_fire_at": next_fire_at,
            "last_fire_at": schedule.next_fire_at,
            "last_task_id": task.task_id,
            "updated_at": task.submitted_at,
        }
        row = task_row(
            task, idempotency_key, eta=schedule.next_fire_at, schedule_id=schedule.schedule_id
        )

        def write(tx: Transaction) -> bool:
            if not tx.run(self._q.advance_schedule, advance).rowcount:
                return False
            return insert_once_per_key(tx, self._q, [row]) == [task.task_id]

        return self._db.write(write)
