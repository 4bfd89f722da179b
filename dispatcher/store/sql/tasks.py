"""The store's tasks: submitting, confirming, the outbox, reading and listing (SQL, any dialect)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from common import TaskMessage, TaskNotFound
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskRecord, TaskState
from dispatcher.store.rows import keys_for, task_message, task_record
from dispatcher.store.sql.dialect import Dialect, Params, Transaction
from dispatcher.store.sql.queries import Queries


class SqlConcern:
    """One concern of the store, over the dialect it shares with the others."""

    def __init__(self, dialect: Dialect) -> None:
        self._db = dialect
        self._q = dialect.queries


class SqlTasks(SqlConcern):
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
        if not rows:
            return []
        return self._db.write(lambda tx: insert_once_per_key(tx, self._q, rows))

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Move submitted tasks to queued; a task that already has an outcome keeps it."""
        # In id order: replicas marking overlapping batches (both re-published an old task)
        # lock rows in one order, so they wait for each other instead of deadlocking.
        params = [{"task_id": task_id, "queued_at": at} for task_id in sorted(set(task_ids))]
        if params:
            # Not durable: a mark lost to a crash leaves the task to the outbox.
            self._db.write(lambda tx: tx.run_many(self._q.mark_queued, params), durable=False)

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks still ``submitted`` since before ``submitted_before``, oldest first.

        A released delayed task or a fired schedule's task waits its age from its eta.
        """
        rows = self._db.read(self._q.unconfirmed, {"before": submitted_before, "limit": limit})
        return [task_message(row) for row in rows]

    def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""
        records = self.get_many([task_id])
        if not records:
            raise TaskNotFound(task_id)
        return records[0]

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        rows = self._db.read(self._q.get_many, {"ids": list(task_ids)})
        return [task_record(row) for row in rows]

    def count_submitted(self, after: datetime, until: datetime) -> dict[str, int]:
        """How many tasks were submitted in ``(after, until]``, by task type."""
        rows = self._db.read(self._q.count_submitted, {"after": after, "until": until})
        return {str(row["task_type"]): int(row["n"]) for row in rows}

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""
        where, params = self._conditions(query)
        sql = self._q.list_tasks.format(where=f"WHERE {' AND '.join(where)}" if where else "")
        rows = self._db.read(sql, {**params, "limit": query.limit})
        return [task_record(row) for row in rows]

    def count_tasks(self, query: TaskQuery) -> int:
        """How many tasks match ``query``'s filters (its position and limit aside)."""
        where, params = self._conditions(dataclasses.replace(query, after=None))
        sql = self._q.count_tasks.format(where=f"WHERE {' AND '.join(where)}" if where else "")
        (row,) = self._db.read(sql, params)
        return int(row["n"])

    def _conditions(self, query: TaskQuery) -> tuple[list[str], dict[str, Any]]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if len(query.states) == 1:
            where.append(self._q.tasks_in_state)
            params["state"] = query.states[0].value
        elif query.states:
            where.append(self._q.tasks_in_states)
            params["states"] = [state.value for state in query.states]
        if query.task_type is not None:
            where.append(self._q.tasks_of_type)
            params["task_type"] = query.task_type
        if query.queue is not None:
            where.append(self._q.tasks_in_queue)
            params["queue"] = query.queue
        if query.executor is not None:
            where.append(self._q.tasks_on_executor)
            params["executor"] = query.executor
        if query.error_text is not None:
            where.append(self._q.tasks_with_error)
            params["error_like"] = "%" + _escape_like(query.error_text) + "%"
        if query.submitted_after is not None:
            where.append(self._q.tasks_submitted_after)
            params["submitted_after"] = query.submitted_after
        if query.submitted_before is not None:
            where.append(self._q.tasks_submitted_before)
            params["submitted_before"] = query.submitted_before
        if query.after is not None:
            where.append(self._q.tasks_after_position)
            params["after_submitted_at"] = query.after.submitted_at
            params["after_task_id"] = query.after.task_id
        return where, params


def task_row(
    task: TaskMessage,
    key: str | None,
    state: TaskState = TaskState.SUBMITTED,
    eta: datetime | None = None,
    schedule_id: UUID | None = None,
) -> Params:
    """The parameters of ``Queries.add_task`` for ``task``."""
    return {
        "task_id": task.task_id,
        "task_type": task.task_type,
        "params": task.params,
        "state": state.value,
        "attempt": task.attempt,
        "submitted_at": task.submitted_at,
        "idempotency_key": key,
        "priority": task.priority,
        "queue": task.queue,
        "eta": eta,
        "schedule_id": schedule_id,
    }


def insert_once_per_key(tx: Transaction, q: Queries, rows: Sequence[Params]) -> list[UUID]:
    """Insert ``task_row`` rows, skipping a held idempotency key; the id recorded for each."""
    # Inserted in key order: two replicas submitting overlapping keys wait for each other's
    # uncommitted rows in one order, so they cannot deadlock. The stable sort keeps the first
    # of two equal keys in one batch first, so that one is recorded.
    order = sorted(range(len(rows)), key=lambda i: _key_order(rows[i]))
    inserted = tx.run_each(q.add_task, [rows[i] for i in order])
    recorded = {i: rows[i]["task_id"] for i, new in zip(order, inserted, strict=True) if new}
    if len(recorded) < len(rows):
        # The holder of a key we could not insert committed before our statement began
        # (PostgreSQL, READ COMMITTED), or earlier in this transaction: visible here either way.
        held = [i for i in range(len(rows)) if i not in recorded]
        keys = [rows[i]["idempotency_key"] for i in held]
        holders = {
            row["idempotency_key"]: row["task_id"]
            for row in tx.run(q.holders_of_keys, {"keys": keys}).rows
        }
        recorded.update((i, holders[rows[i]["idempotency_key"]]) for i in held)
    return [recorded[i] for i in range(len(rows))]


def _key_order(row: Params) -> tuple[bool, str]:
    key = row["idempotency_key"]
    return (key is None, key or "")


def _escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern whose escape character is a backslash."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
