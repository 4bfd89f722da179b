"""The store's fleet: executor heartbeats and the task types executors publish (SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from common import Heartbeat, TaskTypeInfo
from dispatcher.store.records import ExecutorRecord, TaskTypeRecord
from dispatcher.store.rows import (
    executor_record,
    heartbeat_values,
    task_type_record,
    task_type_values,
)
from dispatcher.store.sql.tasks import SqlConcern


class SqlFleet(SqlConcern):
    """Which executors are alive, and the task types they serve."""

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Upsert the executor's row unless a newer heartbeat is already recorded.

        Heartbeats may arrive out of order (several dispatchers, a backlog): the newest wins.
        """
        params = self._reported(heartbeat_values(heartbeat))
        # Not durable: the executor's next heartbeat replaces a lost one.
        self._db.write(lambda tx: tx.run(self._q.record_heartbeat, params), durable=False)

    def list_executors(self) -> list[ExecutorRecord]:
        """Every executor recorded, by id."""
        return [executor_record(row) for row in self._db.read(self._q.list_executors, {})]

    def publish_task_types(
        self,
        task_types: Sequence[TaskTypeInfo],
        *,
        published_by: str,
        at: datetime,
        live_since: datetime | None = None,
    ) -> list[str]:
        """Record the task types an executor published; returns the names it was refused.

        A type already published by another executor that is still live (not stopped, seen
        at or after ``live_since``) keeps that executor's record: one executor cannot silently
        replace the schema the others run. With no ``live_since``, the last publisher wins.
        """
        ordered = sorted(task_types, key=lambda t: t.name)  # one lock order across replicas
        rows = [
            self._reported(task_type_values(t, published_by=published_by, at=at))
            | {"live_since": live_since}
            for t in ordered
        ]
        if not rows:
            return []
        written = self._db.write(lambda tx: tx.run_each(self._q.publish_task_type, rows))
        return [t.name for t, wrote in zip(ordered, written, strict=True) if not wrote]

    def list_task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, by name."""
        return [task_type_record(row) for row in self._db.read(self._q.list_task_types, {})]

    def _reported(self, values: dict[str, Any]) -> dict[str, Any]:
        # Everything in these rows but the times came from an executor.
        return {
            column: value if isinstance(value, datetime) else self._db.reported(value)
            for column, value in values.items()
        }
