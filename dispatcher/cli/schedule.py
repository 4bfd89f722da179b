"""``dispatcher schedule add|list|show|pause|resume|delete``: cron schedules from the shell.

These commands need only the task store; ``dispatcher serve`` fires the schedules.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from common import InvalidSchedule, TaskRegistry
from common import exit_codes as codes
from common.loop import run as run_loop
from dispatcher.cli.command import Command, Wiring
from dispatcher.cli.tasks import warn_unchecked
from dispatcher.fleet import Fleet
from dispatcher.metrics import DispatcherMetrics
from dispatcher.schedules import CRON_HELP, ScheduleBook
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import ScheduleRecord
from dispatcher.store.threaded import ThreadedTaskStore


def _add_parser(commands: Any) -> None:
    """Add the ``schedule`` command and its actions to the dispatcher's subparsers."""
    schedule = commands.add_parser(
        "schedule",
        help="add, list, show, update, run, pause, resume or delete cron schedules",
        description="Cron schedules submit a task at each fire time; dispatcher serve fires "
        "them (with several replicas, each fire time submits exactly one task).",
        epilog=CRON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="create a schedule",
        epilog=CRON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument("name", metavar="NAME", help="unique name, e.g. nightly-report")
    add.add_argument("--cron", required=True, metavar="EXPR", help='e.g. "0 3 * * *"')
    add.add_argument("--type", dest="task_type", required=True, metavar="TYPE", help="task type")
    add.add_argument("--params", default="{}", metavar="JSON", help="params (default {})")
    add.add_argument("--tz", default="UTC", metavar="ZONE", help="IANA time zone (default UTC)")
    add.add_argument("--priority", type=int, default=0, help="task priority (default 0)")
    add.add_argument("--paused", action="store_true", help="create it paused")
    add.add_argument("--queue", metavar="NAME", help="task queue (default: the type's own)")
    add.add_argument("--tasks", help="task module to validate against (WQ_DISPATCHER_TASKS)")
    update = actions.add_parser(
        "update",
        help="edit a schedule: each option given replaces its value",
        epilog=CRON_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument("--cron", metavar="EXPR", help="new cron expression")
    update.add_argument("--tz", metavar="ZONE", help="new IANA time zone")
    update.add_argument("--params", metavar="JSON", help="new params")
    update.add_argument("--priority", type=int, help="new task priority")
    update.add_argument("--queue", metavar="NAME", help="new task queue")
    paused = update.add_mutually_exclusive_group()
    paused.add_argument("--pause", dest="paused", action="store_const", const=True)
    paused.add_argument("--resume", dest="paused", action="store_const", const=False)
    update.add_argument("--tasks", help="task module to validate against (WQ_DISPATCHER_TASKS)")
    listing = actions.add_parser("list", help="list every schedule")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    for action, text in (
        ("show", "show one schedule"),
        ("run", "fire it once now (dispatcher serve publishes the task at its next pass)"),
        ("pause", "stop firing until resumed"),
        ("resume", "fire again from the next fire time after now (nothing is made up)"),
        ("delete", "delete a schedule (its tasks are kept)"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name", metavar="NAME")
        if action == "show":
            parser.add_argument("--json", action="store_true", help="print it as JSON")


def _run(wiring: Wiring, args: argparse.Namespace) -> int:
    """Carry out one ``schedule`` action; returns the exit code."""
    return run_loop(_act(wiring.settings, wiring.registry(), args))


async def _act(
    settings: DispatcherSettings, registry: TaskRegistry | None, args: argparse.Namespace
) -> int:
    store = ThreadedTaskStore(open_store(settings.store))
    try:
        clock = partial(datetime.now, UTC)
        # Without a task module, new schedules are checked against the task types executors
        # published, as a submission is.
        fleet = Fleet(store, metrics=DispatcherMetrics(), clock=clock)
        book = ScheduleBook(store, registry, clock, fleet=fleet)
        action = args.schedule_command
        if action == "add":
            params = _params(args.params)
            schedule = await book.create(
                args.name,
                args.cron,
                args.task_type,
                params,
                timezone=args.tz,
                priority=args.priority,
                paused=args.paused,
                queue=args.queue,
            )
            print(_describe(schedule))
            if registry is None and not fleet.checks_task_types():
                warn_unchecked(args.task_type)
        elif action == "update":
            schedule = await book.update(
                args.name,
                cron=args.cron,
                timezone=args.tz,
                params=_params(args.params) if args.params is not None else None,
                priority=args.priority,
                queue=args.queue,
                paused=args.paused,
            )
            print(_describe(schedule))
        elif action == "run":
            print(await book.run_now(args.name))
        elif action == "list":
            for schedule in await book.all():
                print(schedule.model_dump_json() if args.json else _line(schedule))
        elif action == "show":
            schedule = await book.get(args.name)
            print(schedule.model_dump_json(indent=2) if args.json else _describe(schedule))
        elif action == "pause":
            print(_line(await book.pause(args.name)))
        elif action == "resume":
            print(_line(await book.resume(args.name)))
        else:
            await book.delete(args.name)
            print(f"deleted {args.name}")
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidSchedule("params", f"not valid JSON: {exc}") from exc
    finally:
        await store.close()
    return codes.OK


def _params(text: str) -> dict[str, Any]:
    params = json.loads(text)
    if not isinstance(params, dict):
        raise InvalidSchedule("params", "must be a JSON object")
    return params


def _line(schedule: ScheduleRecord) -> str:
    state = "paused" if schedule.paused else f"next {schedule.next_fire_at.isoformat()}"
    return f"{schedule.name}  {schedule.cron!r} {schedule.timezone}  {schedule.task_type}  {state}"


def _describe(schedule: ScheduleRecord) -> str:
    lines = [
        f"schedule  {schedule.name} ({schedule.schedule_id})",
        f"cron      {schedule.cron} in {schedule.timezone}",
        f"task      {schedule.task_type} {json.dumps(schedule.params)} priority "
        f"{schedule.priority} queue {schedule.queue}",
        f"state     {'paused' if schedule.paused else 'active'}",
        f"next      {schedule.next_fire_at.isoformat()}",
    ]
    if schedule.last_fire_at is not None:
        lines.append(f"last      {schedule.last_fire_at.isoformat()} -> {schedule.last_task_id}")
    return "\n".join(lines)


SCHEDULE = Command("schedule", _add_parser, _run)
