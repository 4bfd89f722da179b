"""The PostgreSQL store's tasks: submitting, confirming, the outbox, reading and listing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from psycopg.types.json import Jsonb

from common import TaskMessage, TaskNotFound
from dispatcher.store.postgres.connection import Connection, PostgresConnection
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskRecord, TaskState
from dispatcher.store.rows import MESSAGE_COLUMNS, keys_for, task_message, task_record

_ADD_TASK = """
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                      priority, eta, schedule_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id
"""

# Rows are locked in task id order: two replicas marking overlapping batches (both re-publish
# an old unconfirmed task) wait for each other instead of deadlocking. FOR UPDATE re-checks
# the state of a row another transaction just changed, so an outcome is never overwritten.
_MARK_QUEUED = """
WITH locked AS (
    SELECT task_id FROM wq_tasks WHERE task_id = ANY(%(ids)s) AND state = 'submitted'
    ORDER BY task_id FOR UPDATE
)
UPDATE wq_tasks SET state = 'queued', queued_at = %(at)s
FROM locked WHERE wq_tasks.task_id = locked.task_id AND wq_tasks.state = 'submitted'
"""


class PostgresTasks(PostgresConnection):
    """Tasks from submission until the broker confirms them, and reading them back."""

    def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted; returns the id recorded for each.

        A task whose idempotency key is already recorded is not added: its entry in the
        returned list is the id of the task that holds the key.
        """
        keys = keys_for(tasks, idempotency_keys)
        rows = [task_row(t, key) for t, key in zip(tasks, keys, strict=True)]
        return self._write(lambda db: insert_once_per_key(db, rows, keys)) if rows else []

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Move submitted tasks to queued; a task that already has an outcome keeps it."""
        params = {"ids": list(task_ids), "at": at}
        # Not durable: a mark lost to a crash leaves the task to the outbox.
        self._write(lambda db: db.execute(_MARK_QUEUED, params), durable=False)

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks still ``submitted`` since before ``submitted_before``, oldest first."""
        # A released delayed task or a fired schedule's task waits its age from its eta.
        rows = self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM wq_tasks"
            " WHERE state = 'submitted' AND submitted_at < %(before)s"
            " AND (eta IS NULL OR eta < %(before)s) ORDER BY submitted_at LIMIT %(limit)s",
            {"before": submitted_before, "limit": limit},
        )
        return [task_message(row) for row in rows]

    def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""
        records = self.get_many([task_id])
        if not records:
            raise TaskNotFound(task_id)
        return records[0]

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        # One array parameter, however many ids: PostgreSQL has no bound-parameter limit here.
        rows = self._read("SELECT * FROM wq_tasks WHERE task_id = ANY(%s)", (list(task_ids),))
        return [task_record(row) for row in rows]

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""
        where: list[str] = []
        params: list[object] = []
        if query.states:
            where.append("state = ANY(%s)")
            params.append([state.value for state in query.states])
        if query.task_type is not None:
            where.append("task_type = %s")
            params.append(query.task_type)
        if query.submitted_after is not None:
            where.append("submitted_at > %s")
            params.append(query.submitted_after)
        if query.submitted_before is not None:
            where.append("submitted_at < %s")
            params.append(query.submitted_before)
        if query.after is not None:
            # A row comparison: the keyset condition in one term (uuid order is byte order,
            # the same as SQLite's order of the lower-case text form).
            where.append("(submitted_at, task_id) < (%s, %s)")
            params.extend([query.after.submitted_at, query.after.task_id])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT * FROM wq_tasks {condition} ORDER BY submitted_at DESC, task_id DESC LIMIT %s",
            [*params, query.limit],
        )
        return [task_record(row) for row in rows]


def task_row(
    task: TaskMessage,
    key: str | None,
    state: TaskState = TaskState.SUBMITTED,
    eta: datetime | None = None,
    schedule_id: UUID | None = None,
) -> tuple[object, ...]:
    """The values ``insert_task`` and ``insert_once_per_key`` insert for ``task``."""
    return (
        task.task_id,
        task.task_type,
        Jsonb(task.params),
        state.value,
        task.attempt,
        task.submitted_at,
        key,
        task.priority,
        eta,
        schedule_id,
    )


def insert_task(db: Connection, row: tuple[object, ...]) -> bool:
    """Insert one ``task_row`` unless its idempotency key is held; whether it was inserted."""
    return db.execute(_ADD_TASK, row).fetchone() is not None


def insert_once_per_key(
    db: Connection, rows: list[tuple[object, ...]], keys: Sequence[str | None]
) -> list[UUID]:
    """Insert ``task_row`` rows, skipping a held idempotency key; the id recorded for each."""
    # Inserted in key order: two replicas submitting overlapping keys wait for each
    # other's uncommitted rows in one order, so they cannot deadlock. The stable sort
    # keeps the first of two equal keys in one batch first, as SQLite does.
    order = sorted(range(len(rows)), key=lambda i: (keys[i] is None, keys[i] or ""))
    inserted: dict[int, UUID] = {}
    with db.cursor() as cursor:
        cursor.executemany(_ADD_TASK, [rows[i] for i in order], returning=True)
        for i in order:
            row = cursor.fetchone()
            if row is not None:
                inserted[i] = row["task_id"]
            cursor.nextset()
    held = [k for i, k in enumerate(keys) if i not in inserted]
    if not held:
        return [inserted[i] for i in range(len(keys))]
    # A statement sees rows committed before it began (READ COMMITTED), so the
    # holder of a key that made our insert do nothing is visible here.
    holders = {
        row["idempotency_key"]: row["task_id"]
        for row in db.execute(
            "SELECT idempotency_key, task_id FROM wq_tasks WHERE idempotency_key = ANY(%s)",
            (held,),
        )
    }
    return [inserted[i] if i in inserted else holders[k] for i, k in enumerate(keys)]
