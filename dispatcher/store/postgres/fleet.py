"""The PostgreSQL store's fleet: executor heartbeats and the task types executors publish."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from common import Heartbeat, TaskTypeInfo
from dispatcher.store.postgres.connection import Connection, PostgresConnection, without_nul
from dispatcher.store.records import ExecutorRecord, TaskTypeRecord
from dispatcher.store.rows import (
    executor_record,
    heartbeat_values,
    task_type_record,
    task_type_values,
)

# As in SqliteTaskStore: the newest heartbeat per executor wins, whatever the arrival order.
_RECORD_HEARTBEAT = """
INSERT INTO wq_executors (executor_id, host, pid, slots, task_types, started_at, last_seen_at,
                          stopped_at, current_tasks, processed, failed, cpu_percent, rss_bytes,
                          info)
VALUES (%(executor_id)s, %(host)s, %(pid)s, %(slots)s, %(task_types)s, %(started_at)s,
        %(last_seen_at)s, %(stopped_at)s, %(current_tasks)s, %(processed)s, %(failed)s,
        %(cpu_percent)s, %(rss_bytes)s, %(info)s)
ON CONFLICT (executor_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, slots = excluded.slots,
    task_types = excluded.task_types, started_at = excluded.started_at,
    last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at,
    current_tasks = excluded.current_tasks, processed = excluded.processed,
    failed = excluded.failed, cpu_percent = excluded.cpu_percent,
    rss_bytes = excluded.rss_bytes, info = excluded.info
WHERE excluded.last_seen_at >= wq_executors.last_seen_at
"""

_PUBLISH_TASK_TYPE = """
INSERT INTO wq_task_types (task_type, params_schema, description, options, published_by,
                           updated_at)
VALUES (%(task_type)s, %(params_schema)s, %(description)s, %(options)s, %(published_by)s,
        %(updated_at)s)
ON CONFLICT (task_type) DO UPDATE SET
    params_schema = excluded.params_schema, description = excluded.description,
    options = excluded.options, published_by = excluded.published_by,
    updated_at = excluded.updated_at
"""


class PostgresFleet(PostgresConnection):
    """Which executors are alive, and the task types they serve."""

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Upsert the executor's row unless a newer heartbeat is already recorded."""
        params = _encoded(heartbeat_values(heartbeat))
        # Not durable: the executor's next heartbeat replaces a lost one.
        self._write(lambda db: db.execute(_RECORD_HEARTBEAT, params), durable=False)

    def list_executors(self) -> list[ExecutorRecord]:
        """Every executor recorded, by id."""
        rows = self._read("SELECT * FROM wq_executors ORDER BY executor_id", ())
        return [executor_record(row) for row in rows]

    def publish_task_types(
        self, task_types: Sequence[TaskTypeInfo], *, published_by: str, at: datetime
    ) -> None:
        """Upsert the task types an executor published; the last publisher wins."""
        rows = [
            _encoded(task_type_values(t, published_by=published_by, at=at))
            for t in sorted(task_types, key=lambda t: t.name)  # one lock order across replicas
        ]

        def write(db: Connection) -> None:
            with db.cursor() as cursor:
                cursor.executemany(_PUBLISH_TASK_TYPE, rows)

        if rows:
            self._write(write)

    def list_task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, by name."""
        rows = self._read("SELECT * FROM wq_task_types ORDER BY task_type", ())
        return [task_type_record(row) for row in rows]


def _encoded(values: dict[str, Any]) -> dict[str, Any]:
    return {column: _stored(value) for column, value in values.items()}


def _stored(value: Any) -> Any:
    # Every list or dict in these tables is jsonb; no text, inside jsonb or not, holds NUL.
    if isinstance(value, list | dict):
        return Jsonb(without_nul(value))
    if isinstance(value, str):
        return without_nul(value)
    return value
