"""``dispatcher``: the command line; parses arguments and hands each command to its module.

Each command group is a module of ``dispatcher.cli`` that owns its parser and its runner
(``Command``); ``COMMANDS`` lists them in the order ``--help`` shows them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from common import LogSettings, WorkQueueError, load_settings
from common import exit_codes as codes
from common.logging import configure
from dispatcher.cli import (
    dead,
    fleet,
    listing,
    prune,
    retry,
    schedule,
    serve,
    status,
    tasks,
    topology,
)
from dispatcher.cli.command import Command, Wiring
from dispatcher.settings import DispatcherSettings

COMMANDS: dict[str, Command] = {
    command.name: command
    for command in (
        serve.SERVE,
        tasks.SUBMIT,
        dead.DEAD,
        fleet.EXECUTORS,
        fleet.TASK_TYPES,
        schedule.SCHEDULE,
        status.STATUS,
        listing.TASKS,
        tasks.CANCEL,
        retry.RETRY,
        prune.PRUNE,
        topology.TOPOLOGY,
    )
}

_EPILOG = """\
environment:
  WQ_AMQP_URL             broker URL (default amqp://guest:guest@localhost:5672/)
  WQ_AMQP_PREFIX          prefix of queue and exchange names (default wq)
  WQ_DISPATCHER_STORE     SQLite task store file (default ~/.local/state/wq/tasks.sqlite3),
                          or postgresql://user@host/db for dispatcher replicas
  WQ_DISPATCHER_TASKS     task module to validate submissions against (optional)
  WQ_DISPATCHER_OUTBOX_AGE  serve re-publishes tasks unconfirmed this long (60 s)
  WQ_DISPATCHER_SCHEDULER_INTERVAL  serve publishes due delayed tasks and fires
                          cron schedules this often (1 s)
  WQ_AMQP_MAX_PRIORITY    priority levels of the classic task queue (10; 0: none)
  WQ_DISPATCHER_READY_FILE  file present while serve consumes, for health probes
  WQ_DISPATCHER_EXECUTOR_LOST_AFTER  seconds without a heartbeat before an executor
                          is listed as lost (60)

  WQ_DISPATCHER_HTTP_HOST, WQ_DISPATCHER_HTTP_PORT  serve's HTTP API (127.0.0.1, 8080)
  WQ_DISPATCHER_HTTP_TOKEN  bearer token the API requires; needed beyond loopback
  WQ_LOG_LEVEL, WQ_LOG_FORMAT  logging (info; auto|json|console)
exit codes: 0 ok, 1 task failed (--wait), 2 bad arguments or configuration,
  65 unknown task type or invalid params, 66 no such task, 69 broker unreachable,
  70 internal error, 75 publish not confirmed (topology delete: consumers attached),
  124 --wait timed out, 130 forced stop
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with help that explains each option."""
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Submit tasks to RabbitMQ, record them and their outcomes, look them up.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        log_settings = load_settings(LogSettings)
        if not command.logs and "level" not in log_settings.model_fields_set:
            # One-shot commands print their answer; info lines would only bury it.
            log_settings = log_settings.model_copy(update={"level": "warning"})
        configure(log_settings)
        overrides = {"tasks": args.tasks} if getattr(args, "tasks", None) else {}
        wiring = Wiring(load_settings(DispatcherSettings, **overrides))
        return command.run(wiring, args)
    except WorkQueueError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.exit_code_for(exc)


def run() -> None:
    """Console-script entry point."""
    codes.exit_with(main)
