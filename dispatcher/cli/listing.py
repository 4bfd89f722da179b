"""``dispatcher tasks``: list tasks from the store, filtered, newest first; needs no broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from common import AwareWireTime, check_queue_name
from common import exit_codes as codes
from dispatcher.cli.command import Command, Wiring
from dispatcher.cli.tables import one_line, table
from dispatcher.settings import parse_duration
from dispatcher.store.backends import open_store
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskRecord, TaskState

MAX_LIMIT = 10_000
_WIRE_TIME: TypeAdapter[datetime] = TypeAdapter(AwareWireTime)


def moment(text: str) -> datetime:
    """An ISO 8601 time with a zone, or a duration ago (``1h``: an hour ago)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        # The range every store can hold: no year 1 or 9999 edge reaches the query.
        return _WIRE_TIME.validate_python(datetime.fromisoformat(text))
    except ValueError:  # pydantic's ValidationError is one
        raise argparse.ArgumentTypeError(
            "a duration ago (1h, 7d) or an ISO 8601 time with a zone, between the years 1970 "
            "and 9000 (2026-05-01T09:00+02:00)"
        ) from None


def queue_name(text: str) -> str:
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_LIMIT}")
    return value


def add_task_filters(
    parser: argparse.ArgumentParser,
    states: Sequence[TaskState],
    *,
    executor: bool = True,
    state_help: str = "in this state",
) -> None:
    """The options that select tasks (``task_query`` reads them), for ``tasks`` and ``retry``."""
    parser.add_argument(
        "--state", action="append", choices=[s.value for s in states], help=state_help
    )
    parser.add_argument("--type", dest="task_type", metavar="TYPE", help="of this task type")
    parser.add_argument(
        "--queue", type=queue_name, metavar="NAME", help="routed to this task queue"
    )
    if executor:
        parser.add_argument("--executor", metavar="NAME", help="last attempt ran on this executor")
    parser.add_argument(
        "--since", type=moment, metavar="WHEN", help="submitted after: 1h (ago) or an ISO time"
    )
    parser.add_argument(
        "--until", type=moment, metavar="WHEN", help="submitted before: 1h (ago) or an ISO time"
    )
    parser.add_argument("--error", metavar="TEXT", help="text in the error message (any case)")


def filtered(args: argparse.Namespace) -> bool:
    """Whether any option of ``add_task_filters`` was given."""
    return any(
        getattr(args, name, None) is not None
        for name in ("state", "task_type", "queue", "executor", "since", "until", "error")
    )


def task_query(
    args: argparse.Namespace, *, default_states: Sequence[TaskState] = (), limit: int
) -> TaskQuery:
    """The query the options of ``add_task_filters`` describe."""
    states = tuple(TaskState(s) for s in args.state) if args.state else tuple(default_states)
    return TaskQuery(
        states=states,
        task_type=args.task_type,
        queue=args.queue,
        executor=getattr(args, "executor", None),
        error_text=args.error or None,
        submitted_after=args.since,
        submitted_before=args.until,
        limit=limit,
    )


def _add_parser(commands: Any) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="list tasks, newest first, with filters",
        description="List tasks from the task store, newest first. Filters combine (all must "
        "hold); --state may be repeated.",
    )
    add_task_filters(tasks, list(TaskState))
    tasks.add_argument(
        "--limit", type=_limit, default=50, help=f"at most this many (default 50, 1-{MAX_LIMIT})"
    )
    tasks.add_argument("--json", action="store_true", help="one JSON object per line")


def _list(wiring: Wiring, args: argparse.Namespace) -> int:
    if wiring.store_missing():
        records: list[TaskRecord] = []
    else:
        query = task_query(args, limit=args.limit)
        store = open_store(wiring.settings.store)
        try:
            records = store.list_tasks(query)
        finally:
            store.close()
    if args.json:
        for record in records:
            print(record.model_dump_json())
    elif records:
        print("\n".join(table(_HEADER, [_row(record) for record in records])))
    else:
        print("no tasks match", file=sys.stderr)  # stdout stays empty for scripts
    return codes.OK


_HEADER = ("task", "type", "queue", "state", "attempt", "submitted", "executor", "error")


def _row(record: TaskRecord) -> tuple[str, ...]:
    error = f"{record.error.kind.value}: {record.error.message}" if record.error else ""
    return (
        str(record.task_id),
        record.task_type,
        record.queue,
        record.state.value,
        str(record.attempt),
        record.submitted_at.astimezone(UTC).isoformat(timespec="seconds"),
        one_line(record.executor or "-", 40),
        one_line(error, 60),
    )


TASKS = Command("tasks", _add_parser, _list)
