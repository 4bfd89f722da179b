"""``dispatcher``: the command line; parses arguments and hands each command to its module.

serve (serve.py), schedule (schedule.py), dead (dead.py) and the store
readers status, executors and task-types (status.py) live in their own modules,
each with its part of the parser; submit and cancel stay here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from common import (
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    InvalidParams,
    LogSettings,
    PublishRejected,
    StoreError,
    TaskNotFound,
    TaskRegistry,
    UnknownTaskType,
    load_registry,
    load_settings,
)
from common import exit_codes as codes
from common.logging import configure
from dispatcher.api.auth import check_bind
from dispatcher.cli import dead, schedule, status
from dispatcher.cli.serve import add_serve_parser, run_serve
from dispatcher.client import open_dispatcher
from dispatcher.requests import CancelOutcome
from dispatcher.settings import DispatcherSettings

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
  70 internal error, 75 publish not confirmed, 124 --wait timed out, 130 forced stop
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with help that explains each option."""
    parser = argparse.ArgumentParser(
        prog="dispatcher",
        description="Submit tasks to RabbitMQ, record them and their outcomes, look them up.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_parser(commands)
    _add_submit_parser(commands)
    dead.add_parser(commands)
    status.add_fleet_parsers(commands)
    schedule.add_parser(commands)
    status.add_status_parser(commands)
    _add_cancel_parser(commands)
    return parser


def _add_submit_parser(commands: Any) -> None:
    submit = commands.add_parser("submit", help="submit one task and print its id")
    submit.add_argument("task_type", metavar="TYPE", help="task type, e.g. word_count")
    submit.add_argument(
        "--params", default="{}", metavar="JSON", help="params as a JSON object (default {})"
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="submit at most once per KEY: a repeat prints the first task's id",
    )
    submit.add_argument(
        "--priority",
        type=int,
        default=0,
        choices=range(256),
        metavar="N",
        help="0 (default) to WQ_AMQP_MAX_PRIORITY (10); higher runs first",
    )
    later = submit.add_mutually_exclusive_group()
    later.add_argument(
        "--eta",
        type=_aware_datetime,
        metavar="TIME",
        help="not before this ISO 8601 time with a zone, e.g. 2026-05-01T09:00:00+02:00",
    )
    later.add_argument(
        "--countdown", type=float, metavar="SECONDS", help="not before this many seconds from now"
    )
    submit.add_argument("--wait", action="store_true", help="wait for the outcome and print it")
    submit.add_argument(
        "--timeout", type=float, default=60.0, help="seconds --wait waits (default 60)"
    )
    submit.add_argument("--tasks", help="task module to validate against (WQ_DISPATCHER_TASKS)")


def _add_cancel_parser(commands: Any) -> None:
    cancel = commands.add_parser(
        "cancel", help="cancel a task: skipped if not started, told to stop if running"
    )
    cancel.add_argument("task_id", metavar="TASK_ID", type=UUID, help="the id submit printed")
    cancel.add_argument("--json", action="store_true", help="print the outcome and record as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        log_settings = load_settings(LogSettings)
        if args.command != "serve" and "level" not in log_settings.model_fields_set:
            # One-shot commands print their answer; info lines would only bury it.
            log_settings = log_settings.model_copy(update={"level": "warning"})
        configure(log_settings)
        overrides = {"tasks": args.tasks} if getattr(args, "tasks", None) else {}
        settings = load_settings(DispatcherSettings, **overrides)
        if args.command == "status":
            return status.status(settings, args.task_id, as_json=args.json)
        if args.command in ("executors", "task-types"):
            return status.fleet(settings, args.command, as_json=args.json)
        registry = load_registry(settings.tasks) if settings.tasks else None
        if args.command == "schedule":
            return schedule.run(settings, registry, args)
        amqp = load_settings(AmqpSettings)
        if args.command == "serve":
            if not args.no_http:
                check_bind(settings.http_host, settings.http_token)
            return run_serve(amqp, settings, registry, http=not args.no_http)
        if args.command == "dead":
            return asyncio.run(dead.run(amqp, settings, args))
        if args.command == "cancel":
            return asyncio.run(_cancel(amqp, settings, args.task_id, as_json=args.json))
        params = _parse_params(args.params)
        return asyncio.run(_submit(amqp, settings, registry, args, params))
    except ConfigError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.USAGE
    except StoreError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.NOT_FOUND if isinstance(exc, TaskNotFound) else codes.INTERNAL


def _parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise ConfigError('--params must be a JSON object, e.g. \'{"text": "hello"}\'')
    return params


def _aware_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z or +HH:MM")
    return moment


async def _submit(
    amqp: AmqpSettings,
    settings: DispatcherSettings,
    registry: TaskRegistry | None,
    args: argparse.Namespace,
    params: dict[str, Any],
) -> int:
    try:
        # With --wait, record results ourselves only if no dispatcher serve already does.
        consume = None if args.wait else False
        async with open_dispatcher(
            amqp, settings, registry=registry, consume_results=consume
        ) as dispatcher:
            task_id = await dispatcher.submit(
                args.task_type,
                params,
                idempotency_key=args.idempotency_key,
                priority=args.priority,
                eta=args.eta,
                countdown=args.countdown,
            )
            if not args.wait:
                print(task_id)
                return codes.OK
            record = await dispatcher.wait(task_id, timeout=args.timeout)
    except (UnknownTaskType, InvalidParams) as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.INVALID_TASK
    except BrokerUnavailable as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.BROKER_UNAVAILABLE
    except PublishRejected as exc:
        print(f"dispatcher: task not queued: {exc}", file=sys.stderr)
        return codes.NOT_PUBLISHED
    except BrokerError as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.BROKER_UNAVAILABLE
    except TimeoutError:
        print(
            f"dispatcher: no outcome for task {task_id} within {args.timeout:g}s. Is an executor"
            f" running, and does the dispatcher serve that records results use this store"
            f" ({settings.redacted_store()})?",
            file=sys.stderr,
        )
        return codes.WAIT_TIMEOUT
    print(record.model_dump_json(indent=2))
    return status.exit_code_for(record)


async def _cancel(
    amqp: AmqpSettings, settings: DispatcherSettings, task_id: UUID, *, as_json: bool
) -> int:
    if isinstance(settings.store, Path) and not settings.store.exists():
        raise TaskNotFound(task_id)  # without creating an empty SQLite file on the way
    try:
        async with open_dispatcher(amqp, settings, consume_results=False) as dispatcher:
            report = await dispatcher.cancel(task_id)
    except BrokerUnavailable as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.BROKER_UNAVAILABLE
    except BrokerError as exc:
        print(
            f"dispatcher: the cancel of {task_id} is recorded, but executors were not told"
            f" ({exc}); run the command again",
            file=sys.stderr,
        )
        return codes.NOT_PUBLISHED if isinstance(exc, PublishRejected) else codes.BROKER_UNAVAILABLE
    if as_json:
        record = report.record.model_dump(mode="json")
        print(json.dumps({"outcome": report.outcome.value, "record": record}, indent=2))
    elif report.outcome is CancelOutcome.ALREADY_FINAL:
        print(f"{task_id} already {report.record.state.value}: nothing changed")
    elif report.outcome is CancelOutcome.CANCELLED:
        print(f"{task_id} cancelled (it had not been published)")
    else:
        print(f"{task_id} cancel requested: it will not start, and is told if it is running")
    return codes.OK


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
