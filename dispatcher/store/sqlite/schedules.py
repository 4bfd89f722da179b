"""The SQLite store's schedules: delayed tasks released when due, and cron schedules."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from common import ScheduleExists, ScheduleNotFound, TaskMessage
from dispatcher.store.records import ScheduleRecord, TaskState
from dispatcher.store.rows import MESSAGE_COLUMNS, keys_for, schedule_record, task_message
from dispatcher.store.sqlite.connection import SqliteConnection, fetch_values, utc_text
from dispatcher.store.sqlite.tasks import insert_once_per_key, task_row

_ADD_SCHEDULE = """
INSERT INTO schedules (schedule_id, name, cron, timezone, task_type, params, priority, paused,
                       next_fire_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# The store's write lock (BEGIN IMMEDIATE) serialises dispatchers firing one schedule: the
# second finds next_fire_at moved on and updates nothing.
_ADVANCE_SCHEDULE = """
UPDATE schedules SET next_fire_at = ?, last_fire_at = ?, last_task_id = ?, updated_at = ?
WHERE schedule_id = ? AND next_fire_at = ? AND paused = 0
"""


class SqliteSchedules(SqliteConnection):
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
        return self._write(lambda db: insert_once_per_key(db, rows))

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move due scheduled tasks to submitted (eta = ``now``) and return them."""

        def write(db: sqlite3.Connection) -> list[TaskMessage]:
            # BEGIN IMMEDIATE holds the write lock from the read on: no other process
            # can claim the same rows in between.
            cursor = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM tasks"
                " WHERE state = ? AND eta <= ? ORDER BY eta LIMIT ?",
                (TaskState.SCHEDULED.value, utc_text(now), limit),
            )
            claimed = [task_message(row) for row in fetch_values(cursor)]
            db.executemany(
                "UPDATE tasks SET state = ?, eta = ? WHERE task_id = ? AND state = ?",
                [
                    (
                        TaskState.SUBMITTED.value,
                        utc_text(now),
                        str(t.task_id),
                        TaskState.SCHEDULED.value,
                    )
                    for t in claimed
                ],
            )
            return claimed

        return self._write(write)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new schedule; ``ScheduleExists`` when the name is taken."""
        row = (
            str(schedule.schedule_id),
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.task_type,
            json.dumps(schedule.params),
            schedule.priority,
            int(schedule.paused),
            utc_text(schedule.next_fire_at),
            utc_text(schedule.created_at),
            utc_text(schedule.updated_at),
        )

        def write(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM schedules WHERE name = ?", (schedule.name,)).fetchone():
                raise ScheduleExists(schedule.name)
            db.execute(_ADD_SCHEDULE, row)

        self._write(write)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        rows = self._read("SELECT * FROM schedules ORDER BY name", ())
        return [schedule_record(row) for row in rows]

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        rows = self._read("SELECT * FROM schedules WHERE name = ?", (name,))
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_record(rows[0])

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule, optionally moving its next fire time."""
        changes = (
            int(paused),
            utc_text(next_fire_at) if next_fire_at is not None else None,
            utc_text(at),
            name,
        )
        updated = self._write(
            lambda db: (
                db.execute(
                    "UPDATE schedules SET paused = ?, next_fire_at = coalesce(?, next_fire_at),"
                    " updated_at = ? WHERE name = ?",
                    changes,
                ).rowcount
            )
        )
        if not updated:
            raise ScheduleNotFound(name)
        return self.get_schedule(name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it submitted stay."""
        deleted = self._write(
            lambda db: db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount
        )
        if not deleted:
            raise ScheduleNotFound(name)

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next fire time has come, earliest first."""
        rows = self._read(
            "SELECT * FROM schedules WHERE paused = 0 AND next_fire_at <= ?"
            " ORDER BY next_fire_at LIMIT ?",
            (utc_text(now), limit),
        )
        return [schedule_record(row) for row in rows]

    def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        """Move the schedule on if it still holds the fire time read, and record its task."""
        fired_at = schedule.next_fire_at
        advance = (
            utc_text(next_fire_at),
            utc_text(fired_at),
            str(task.task_id),
            utc_text(task.submitted_at),
            str(schedule.schedule_id),
            utc_text(fired_at),
        )
        row = task_row(task, idempotency_key, eta=fired_at, schedule_id=schedule.schedule_id)

        def write(db: sqlite3.Connection) -> bool:
            if not db.execute(_ADVANCE_SCHEDULE, advance).rowcount:
                return False
            return insert_once_per_key(db, [row]) == [task.task_id]

        return self._write(write)
