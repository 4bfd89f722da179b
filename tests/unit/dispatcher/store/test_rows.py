"""The rows the store upserts: each builder fills exactly the columns its statement lists."""

from __future__ import annotations

from datetime import UTC, datetime

from common import ExecutorEvent, Heartbeat, TaskTypeInfo
from dispatcher.store.rows import (
    EXECUTOR_COLUMNS,
    TASK_TYPE_COLUMNS,
    heartbeat_values,
    task_type_values,
)

NOW = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def test_a_heartbeat_fills_every_executor_column_in_the_upserts_order() -> None:
    heartbeat = Heartbeat(
        event=ExecutorEvent.HEARTBEAT,
        executor="e",
        host="h",
        pid=1,
        slots=1,
        started_at=NOW,
        sent_at=NOW,
    )

    assert tuple(heartbeat_values(heartbeat)) == EXECUTOR_COLUMNS


def test_a_task_type_fills_every_task_type_column_in_the_upserts_order() -> None:
    task_type = TaskTypeInfo(name="echo", params_schema={"type": "object"})

    assert tuple(task_type_values(task_type, published_by="e", at=NOW)) == TASK_TYPE_COLUMNS
