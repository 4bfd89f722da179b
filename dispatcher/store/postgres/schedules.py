"""The PostgreSQL store's schedules: delayed tasks released when due, and cron schedules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from psycopg.types.json import Jsonb

from common import ScheduleExists, ScheduleNotFound, TaskMessage
from dispatcher.store.postgres.connection import Connection, PostgresConnection
from dispatcher.store.postgres.tasks import insert_once_per_key, insert_task, task_row
from dispatcher.store.records import ScheduleRecord, TaskState
from dispatcher.store.rows import keys_for, schedule_record, task_message

# SKIP LOCKED: replicas claiming at once take disjoint rows instead of queueing on each
# other; a row another replica claimed and committed meanwhile fails the re-checked WHERE.
# https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE
_CLAIM_DUE = """
WITH due AS (
    SELECT task_id FROM wq_tasks WHERE state = 'scheduled' AND eta <= %(now)s
    ORDER BY eta LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE wq_tasks SET state = 'submitted', eta = %(now)s
FROM due WHERE wq_tasks.task_id = due.task_id AND wq_tasks.state = 'scheduled'
RETURNING wq_tasks.task_id, task_type, params, attempt, submitted_at, priority
"""

# The schedule row's lock serialises replicas firing it: the second waits for the first to
# commit, re-checks next_fire_at against the committed row (READ COMMITTED) and updates
# nothing. https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED
_ADVANCE_SCHEDULE = """
UPDATE wq_schedules SET next_fire_at = %(next)s, last_fire_at = %(fired)s,
    last_task_id = %(task_id)s, updated_at = %(at)s
WHERE schedule_id = %(schedule_id)s AND next_fire_at = %(fired)s AND NOT paused
"""

_ADD_SCHEDULE = """
INSERT INTO wq_schedules (schedule_id, name, cron, timezone, task_type, params, priority,
                          paused, next_fire_at, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (name) DO NOTHING
"""


class PostgresSchedules(PostgresConnection):
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
            task_row(t, key, TaskState.SCHEDULED, eta)
            for t, eta, key in zip(tasks, etas, keys, strict=True)
        ]
        return self._write(lambda db: insert_once_per_key(db, rows, keys)) if rows else []

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move due scheduled tasks to submitted (eta = ``now``) and return them."""
        params = {"now": now, "limit": limit}
        rows = self._write(lambda db: db.execute(_CLAIM_DUE, params).fetchall())
        return sorted((task_message(row) for row in rows), key=lambda t: t.submitted_at)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new schedule; ``ScheduleExists`` when the name is taken."""
        row = (
            schedule.schedule_id,
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.task_type,
            Jsonb(schedule.params),
            schedule.priority,
            schedule.paused,
            schedule.next_fire_at,
            schedule.created_at,
            schedule.updated_at,
        )
        if not self._write(lambda db: db.execute(_ADD_SCHEDULE, row).rowcount):
            raise ScheduleExists(schedule.name)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        rows = self._read("SELECT * FROM wq_schedules ORDER BY name", ())
        return [schedule_record(row) for row in rows]

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        rows = self._read("SELECT * FROM wq_schedules WHERE name = %s", (name,))
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_record(rows[0])

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule, optionally moving its next fire time."""
        rows = self._write(
            lambda db: db.execute(
                "UPDATE wq_schedules SET paused = %s,"
                " next_fire_at = coalesce(%s, next_fire_at), updated_at = %s"
                " WHERE name = %s RETURNING *",
                (paused, next_fire_at, at, name),
            ).fetchall()
        )
        if not rows:
            raise ScheduleNotFound(name)
        return schedule_record(rows[0])

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it submitted stay."""
        deleted = self._write(
            lambda db: db.execute("DELETE FROM wq_schedules WHERE name = %s", (name,)).rowcount
        )
        if not deleted:
            raise ScheduleNotFound(name)

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next fire time has come, earliest first."""
        rows = self._read(
            "SELECT * FROM wq_schedules WHERE NOT paused AND next_fire_at <= %s"
            " ORDER BY next_fire_at LIMIT %s",
            (now, limit),
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
        advance = {
            "next": next_fire_at,
            "fired": schedule.next_fire_at,
            "task_id": task.task_id,
            "at": task.submitted_at,
            "schedule_id": schedule.schedule_id,
        }
        row = task_row(
            task, idempotency_key, eta=schedule.next_fire_at, schedule_id=schedule.schedule_id
        )

        def write(db: Connection) -> bool:
            if not db.execute(_ADVANCE_SCHEDULE, advance).rowcount:
                return False
            return insert_task(db, row)

        return self._write(write)
