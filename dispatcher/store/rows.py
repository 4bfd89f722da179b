"""Store rows as plain Python values: the mapping every SQL dialect shares.

Each dialect encodes and decodes its own column types (SQLite: ISO and JSON text; PostgreSQL:
native types). Between that and the records, a row is the same dict of column name to value in
all of them, so the records are built, and the derived columns computed, once here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from common import ExecutorEvent, Heartbeat, Outcome, ResultMessage, TaskMessage, TaskTypeInfo
from dispatcher.store.records import (
    AttemptRecord,
    ExecutorRecord,
    ScheduleRecord,
    TaskRecord,
    TaskState,
    TaskTypeRecord,
)

STATE_OF_OUTCOME = {
    Outcome.SUCCEEDED: TaskState.SUCCEEDED,
    Outcome.FAILED: TaskState.FAILED,
    Outcome.RETRYING: TaskState.RETRYING,
    Outcome.DEAD: TaskState.DEAD,
    Outcome.CANCELLED: TaskState.CANCELLED,
}

# The columns a republish needs, in the order every dialect selects them.
MESSAGE_COLUMNS = "task_id, task_type, params, attempt, submitted_at, priority, queue"
# The same, for the message of a retrying task's next attempt.
NEXT_ATTEMPT_COLUMNS = (
    "task_id, task_type, params, attempt + 1 AS attempt, submitted_at, priority, queue"
)

# Columns (and the parameters named after them) that hold JSON, in every table: each dialect
# stores them its way (SQLite: text; PostgreSQL: jsonb) and reads them back as values.
JSON_COLUMNS = frozenset(
    {
        *("params", "result", "error", "task_types", "current_tasks", "params_schema"),
        *("options", "info", "queues"),
    }
)


def keys_for(
    tasks: Sequence[TaskMessage], idempotency_keys: Sequence[str | None] | None
) -> list[str | None]:
    """One idempotency key (or None) per task."""
    return list(idempotency_keys) if idempotency_keys is not None else [None] * len(tasks)


def next_attempt_at(result: ResultMessage) -> datetime | None:
    """When the next attempt of a retrying task is due; None for any other outcome."""
    if result.retry_in_s is None:
        return None
    return result.finished_at + timedelta(seconds=result.retry_in_s)


# The columns of the rows below, in the order every dialect's upsert lists them (the key first).
EXECUTOR_COLUMNS = (
    *("executor_id", "host", "pid", "slots", "task_types", "started_at", "last_seen_at"),
    *("stopped_at", "current_tasks", "processed", "failed", "cpu_percent", "rss_bytes", "info"),
    "queues",
)
TASK_TYPE_COLUMNS = (
    *("task_type", "params_schema", "description", "options", "published_by", "updated_at"),
)


def heartbeat_values(heartbeat: Heartbeat) -> dict[str, Any]:
    """The executors row a heartbeat upserts, column by column."""
    return {
        "executor_id": heartbeat.executor,
        "host": heartbeat.host,
        "pid": heartbeat.pid,
        "slots": heartbeat.slots,
        "task_types": [t.name for t in heartbeat.task_types],
        "started_at": heartbeat.started_at,
        "last_seen_at": heartbeat.sent_at,
        "stopped_at": heartbeat.sent_at if heartbeat.event is ExecutorEvent.STOPPED else None,
        "current_tasks": [t.model_dump(mode="json") for t in heartbeat.current_tasks],
        "processed": heartbeat.processed,
        "failed": heartbeat.failed,
        "cpu_percent": heartbeat.cpu_percent,
        "rss_bytes": heartbeat.rss_bytes,
        "info": {"version": heartbeat.version, "event": heartbeat.event.value},
        "queues": list(heartbeat.queues),
    }


def task_type_values(task_type: TaskTypeInfo, *, published_by: str, at: datetime) -> dict[str, Any]:
    """The task_types row a published task type upserts, column by column."""
    return {
        "task_type": task_type.name,
        "params_schema": task_type.params_schema,
        "description": task_type.description,
        "options": task_type.options,
        "published_by": published_by,
        "updated_at": at,
    }


# Reading: the columns of tasks, executors and schedules are named as the record fields are.


def task_message(row: Mapping[str, Any]) -> TaskMessage:
    """The task message of a tasks row (``MESSAGE_COLUMNS`` at least)."""
    return TaskMessage.model_validate(row)


def task_record(row: Mapping[str, Any]) -> TaskRecord:
    """The record of a whole tasks row."""
    return TaskRecord.model_validate(row)


def attempt_record(row: Mapping[str, Any]) -> AttemptRecord:
    """The record of an attempts row."""
    return AttemptRecord.model_validate(row)


def executor_record(row: Mapping[str, Any]) -> ExecutorRecord:
    """The record of an executors row (its ``info`` column is not part of it)."""
    return ExecutorRecord.model_validate(row)


def schedule_record(row: Mapping[str, Any]) -> ScheduleRecord:
    """The record of a schedules row."""
    return ScheduleRecord.model_validate(row)


def task_type_record(row: Mapping[str, Any]) -> TaskTypeRecord:
    """The record of a task_types row, whose key column is ``task_type``."""
    return TaskTypeRecord.model_validate({**row, "name": row["task_type"]})
