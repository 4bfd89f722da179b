"""The SQLite store's tasks: submitting, confirming, the outbox, reading and listing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from common import TaskMessage, TaskNotFound
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskRecord, TaskState
from dispatcher.store.rows import MESSAGE_COLUMNS, keys_for, task_message, task_record
from dispatcher.store.sqlite.connection import SqliteConnection, utc_key, utc_text

_ADD_TASK = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                   priority, eta, schedule_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


class SqliteTasks(SqliteConnection):
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
        rows = [task_row(task, key) for task, key in zip(tasks, keys, strict=True)]
        return self._write(lambda db: insert_once_per_key(db, rows))

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Move submitted tasks to queued; a task that already has an outcome keeps it."""
        rows = [
            (TaskState.QUEUED.value, at.isoformat(), str(i), TaskState.SUBMITTED.value)
            for i in task_ids
        ]
        self._write(
            lambda db: db.executemany(
                "UPDATE tasks SET state = ?, queued_at = ? WHERE task_id = ? AND state = ?", rows
            ),
            durable=False,  # a lost mark leaves the task to the outbox
        )

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks still ``submitted`` since before ``submitted_before``, oldest first."""
        # A released delayed task or a fired schedule's task waits its age from its eta.
        rows = self._read(
            f"SELECT {MESSAGE_COLUMNS} FROM tasks"
            " WHERE state = ? AND submitted_at < ? AND (eta IS NULL OR eta < ?)"
            " ORDER BY submitted_at LIMIT ?",
            (
                TaskState.SUBMITTED.value,
                submitted_before.isoformat(),
                utc_text(submitted_before),
                limit,
            ),
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
        records: list[TaskRecord] = []
        ids = [str(i) for i in task_ids]
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT * FROM tasks WHERE task_id IN ({marks})", chunk)
            records.extend(task_record(row) for row in rows)
        return records

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""
        where: list[str] = []
        params: list[object] = []
        if query.states:
            where.append(f"state IN ({','.join('?' * len(query.states))})")
            params.extend(state.value for state in query.states)
        if query.task_type is not None:
            where.append("task_type = ?")
            params.append(query.task_type)
        if query.submitted_after is not None:
            where.append("wq_utc(submitted_at) > ?")
            params.append(utc_key(query.submitted_after.isoformat()))
        if query.submitted_before is not None:
            where.append("wq_utc(submitted_at) < ?")
            params.append(utc_key(query.submitted_before.isoformat()))
        if query.after is not None:
            where.append("(wq_utc(submitted_at), task_id) < (?, ?)")
            params.extend([utc_key(query.after.submitted_at.isoformat()), str(query.after.task_id)])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT * FROM tasks {condition}"
            " ORDER BY wq_utc(submitted_at) DESC, task_id DESC LIMIT ?",
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
    """The values ``insert_once_per_key`` inserts for ``task``."""
    return (
        str(task.task_id),
        task.task_type,
        json.dumps(task.params),
        state.value,
        task.attempt,
        task.submitted_at.isoformat(),
        key,
        task.priority,
        utc_text(eta) if eta is not None else None,
        str(schedule_id) if schedule_id is not None else None,
    )


def insert_once_per_key(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[UUID]:
    """Insert ``task_row`` rows, skipping a held idempotency key; the id recorded for each."""
    # In the caller's transaction (BEGIN IMMEDIATE): concurrent submitters of one key
    # serialise, and the first holder of a key wins.
    recorded = []
    for row in rows:
        key = row[6]
        if key is not None:
            found = db.execute(
                "SELECT task_id FROM tasks WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if found is not None:
                recorded.append(UUID(found[0]))
                continue
        db.execute(_ADD_TASK, row)
        recorded.append(UUID(str(row[0])))
    return recorded
