"""Commands that only read the task store: ``status``, ``executors``, ``task-types``.

They need no broker, so they answer while RabbitMQ is down.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from common import TaskNotFound
from common import exit_codes as codes
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import ExecutorRecord, TaskRecord, TaskState


def add_fleet_parsers(commands: Any) -> None:
    """Add the ``executors`` and ``task-types`` commands to the dispatcher's subparsers."""
    executors = commands.add_parser(
        "executors", help="list executors: state, last heartbeat, running tasks, load"
    )
    executors.add_argument("--json", action="store_true", help="print a JSON array")
    task_types = commands.add_parser(
        "task-types", help="list the task types executors published, with params schemas"
    )
    task_types.add_argument("--json", action="store_true", help="print a JSON array")


def add_status_parser(commands: Any) -> None:
    """Add the ``status`` command to the dispatcher's subparsers."""
    status = commands.add_parser("status", help="show a task's state, result or error")
    status.add_argument("task_id", metavar="TASK_ID", type=UUID, help="the id submit printed")
    status.add_argument("--json", action="store_true", help="print the full record as JSON")


def exit_code_for(record: TaskRecord) -> int:
    if record.state is TaskState.SUCCEEDED:
        return codes.OK
    if record.error is not None and record.error.kind.value in (
        "unknown_task_type",
        "invalid_params",
    ):
        return codes.INVALID_TASK
    return codes.TASK_FAILED


def status(settings: DispatcherSettings, task_id: UUID, *, as_json: bool) -> int:
    if isinstance(settings.store, Path) and not settings.store.exists():
        raise TaskNotFound(task_id)  # without creating an empty SQLite file on the way
    store = open_store(settings.store)
    try:
        record = store.get(task_id)
    finally:
        store.close()
    if as_json:
        print(record.model_dump_json(indent=2))
    else:
        print(_describe(record))
    return codes.OK


def _describe(record: TaskRecord) -> str:
    lines = [
        f"task      {record.task_id}",
        f"type      {record.task_type}",
        f"state     {record.state.value}",
        f"attempt   {record.attempt}",
        f"submitted {record.submitted_at.isoformat()}",
    ]
    if record.progress is not None and record.progress_at is not None:
        note = f"  {record.progress_note}" if record.progress_note else ""
        lines.append(f"progress  {record.progress:g}%{note} (at {record.progress_at.isoformat()})")
    if record.cancel_requested_at is not None:
        lines.append(f"cancel    requested {record.cancel_requested_at.isoformat()}")
    if record.finished_at is not None:
        lines.append(f"finished  {record.finished_at.isoformat()} on {record.executor}")
    if record.state is TaskState.SUCCEEDED:
        lines.append(f"result    {json.dumps(record.result)}")
    if record.error is not None:
        lines.append(f"error     {record.error.kind.value}: {record.error.message}")
    return "\n".join(lines)


def fleet(settings: DispatcherSettings, command: str, *, as_json: bool) -> int:
    if isinstance(settings.store, Path) and not settings.store.exists():
        print("[]" if as_json else "none recorded yet")
        return codes.OK
    store = open_store(settings.store)
    try:
        if command == "executors":
            now = datetime.now(UTC)
            lost_after = settings.executor_lost_after
            rows: list[Any] = [
                e.with_state(now, lost_after=lost_after) for e in store.list_executors()
            ]
            lines = [_describe_executor(e, now) for e in rows]
        else:
            rows = store.list_task_types()
            lines = [f"{t.name}  {t.description or ''}  (from {t.published_by})" for t in rows]
    finally:
        store.close()
    if as_json:
        print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
    else:
        print("\n".join(lines) or "none recorded yet")
    return codes.OK


def _describe_executor(executor: ExecutorRecord, now: datetime) -> str:
    seen = (now - executor.last_seen_at).total_seconds()
    cpu = f"{executor.cpu_percent:.0f}%" if executor.cpu_percent is not None else "?"
    rss = f"{executor.rss_bytes / 2**20:.0f}MiB" if executor.rss_bytes is not None else "?"
    return (
        f"{executor.executor_id}  {executor.state.value}  {executor.host}:{executor.pid}"
        f"  running={len(executor.current_tasks)}/{executor.slots}"
        f"  processed={executor.processed} failed={executor.failed}"
        f"  cpu={cpu} rss={rss}  seen {seen:.0f}s ago"
    )
