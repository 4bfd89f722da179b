"""``dispatcher status``: one task's record, read from the store alone.

It needs no broker, so it answers while RabbitMQ is down.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from uuid import UUID

from common import TaskNotFound
from common import exit_codes as codes
from dispatcher.cli.command import Command, Wiring
from dispatcher.cli.tables import one_line, table
from dispatcher.store.backends import open_store
from dispatcher.store.records import AttemptRecord, TaskRecord, TaskState


def _add_parser(commands: Any) -> None:
    status = commands.add_parser("status", help="show a task's state, result or error")
    status.add_argument("task_id", metavar="TASK_ID", type=UUID, help="the id submit printed")
    status.add_argument(
        "--json", action="store_true", help="print the full record, with every attempt, as JSON"
    )
    status.add_argument(
        "--traceback", action="store_true", help="print each failed attempt's traceback too"
    )


def outcome_exit_code(record: TaskRecord) -> int:
    """The exit code that tells a script how a finished task ended."""
    if record.state is TaskState.SUCCEEDED:
        return codes.OK
    if record.error is not None and record.error.kind.value in (
        "unknown_task_type",
        "invalid_params",
    ):
        return codes.INVALID_TASK
    return codes.TASK_FAILED


def _status(wiring: Wiring, args: argparse.Namespace) -> int:
    if wiring.store_missing():
        raise TaskNotFound(args.task_id)  # without creating an empty SQLite file on the way
    store = open_store(wiring.settings.store)
    try:
        record = store.get(args.task_id)
        attempts = store.attempts(args.task_id)
    finally:
        store.close()
    if args.json:
        detail = record.model_dump(mode="json")
        detail["attempts"] = [attempt.model_dump(mode="json") for attempt in attempts]
        print(json.dumps(detail, indent=2))
    else:
        print(_describe(record))
        if attempts:
            print(_attempts_table(attempts, tracebacks=args.traceback))
    return codes.OK


def _attempts_table(attempts: list[AttemptRecord], *, tracebacks: bool) -> str:
    """One line per attempt: number, executor, start, duration, outcome, error."""
    rows = []
    for attempt in attempts:
        took = "-"
        if attempt.started_at is not None and attempt.finished_at is not None:
            took = f"{(attempt.finished_at - attempt.started_at).total_seconds():.3f}s"
        error = ""
        if attempt.error is not None:
            error = f"{attempt.error.kind.value}: {attempt.error.message}"
        rows.append(
            (
                str(attempt.attempt),
                one_line(attempt.executor or "-", 60),
                attempt.started_at.isoformat(timespec="seconds") if attempt.started_at else "-",
                took,
                attempt.outcome.value if attempt.outcome else "running",
                one_line(error, 80),
            )
        )
    header = ("#", "executor", "started", "took", "outcome", "error")
    lines = ["", "attempts", *table(header, rows, indent="  ")]
    if tracebacks:
        for attempt in attempts:
            if attempt.error is not None and attempt.error.traceback:
                lines += ["", f"traceback of attempt {attempt.attempt}:", attempt.error.traceback]
    return "\n".join(lines)


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
        via = f" via {record.cancel_requested_via}" if record.cancel_requested_via else ""
        lines.append(f"cancel    requested {record.cancel_requested_at.isoformat()}{via}")
    if record.finished_at is not None:
        lines.append(f"finished  {record.finished_at.isoformat()} on {record.executor}")
    if record.state is TaskState.SUCCEEDED:
        lines.append(f"result    {json.dumps(record.result)}")
    if record.error is not None:
        lines.append(f"error     {record.error.kind.value}: {one_line(record.error.message, 500)}")
    return "\n".join(lines)


STATUS = Command("status", _add_parser, _status)
