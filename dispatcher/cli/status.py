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
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskRecord, TaskState


def _add_parser(commands: Any) -> None:
    status = commands.add_parser("status", help="show a task's state, result or error")
    status.add_argument("task_id", metavar="TASK_ID", type=UUID, help="the id submit printed")
    status.add_argument("--json", action="store_true", help="print the full record as JSON")


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
    finally:
        store.close()
    if args.json:
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


STATUS = Command("status", _add_parser, _status)
