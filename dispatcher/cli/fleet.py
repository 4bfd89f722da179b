"""``dispatcher executors`` and ``dispatcher task-types``: the fleet, read from the store alone.

They need no broker, so they answer while RabbitMQ is down.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import exit_codes as codes
from dispatcher.cli.command import Command, Wiring
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import ExecutorRecord, TaskTypeRecord


def _add_executors_parser(commands: Any) -> None:
    executors = commands.add_parser(
        "executors", help="list executors: state, last heartbeat, running tasks, load"
    )
    executors.add_argument("--json", action="store_true", help="print a JSON array")


def _add_task_types_parser(commands: Any) -> None:
    task_types = commands.add_parser(
        "task-types", help="list the task types executors published, with params schemas"
    )
    task_types.add_argument("--json", action="store_true", help="print a JSON array")


def _executors(wiring: Wiring, args: argparse.Namespace) -> int:
    def rows(store: SyncTaskStore) -> list[Any]:
        lost_after = wiring.settings.executor_lost_after
        return [e.with_state(now, lost_after=lost_after) for e in store.list_executors()]

    now = datetime.now(UTC)
    return _show(wiring, args, rows, lambda e: _describe_executor(e, now))


def _task_types(wiring: Wiring, args: argparse.Namespace) -> int:
    def line(t: TaskTypeRecord) -> str:
        return f"{t.name}  {t.description or ''}  (from {t.published_by})"

    return _show(wiring, args, lambda store: list(store.list_task_types()), line)


def _show(
    wiring: Wiring,
    args: argparse.Namespace,
    read: Callable[[SyncTaskStore], list[Any]],
    describe: Callable[[Any], str],
) -> int:
    if wiring.store_missing():
        print("[]" if args.json else "none recorded yet")
        return codes.OK
    store = open_store(wiring.settings.store)
    try:
        rows = read(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps([row.model_dump(mode="json") for row in rows], indent=2))
    else:
        print("\n".join(describe(row) for row in rows) or "none recorded yet")
    return codes.OK


def _describe_executor(executor: ExecutorRecord, now: datetime) -> str:
    seen = (now - executor.last_seen_at).total_seconds()
    cpu = f"{executor.cpu_percent:.0f}%" if executor.cpu_percent is not None else "?"
    rss = f"{executor.rss_bytes / 2**20:.0f}MiB" if executor.rss_bytes is not None else "?"
    queues = ",".join(executor.queues) or "default"
    return (
        f"{executor.executor_id}  {executor.state.value}  {executor.host}:{executor.pid}"
        f"  queues={queues}"
        f"  running={len(executor.current_tasks)}/{executor.slots}"
        f"  processed={executor.processed} failed={executor.failed}"
        f"  cpu={cpu} rss={rss}  seen {seen:.0f}s ago"
    )


EXECUTORS = Command("executors", _add_executors_parser, _executors)
TASK_TYPES = Command("task-types", _add_task_types_parser, _task_types)
