"""``dispatcher submit`` and ``dispatcher cancel``: one task in, one task stopped."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any
from uuid import UUID

from common import (
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    PublishRejected,
    TaskNotFound,
    TaskRegistry,
)
from common import exit_codes as codes
from common.loop import run as run_loop
from dispatcher.cli.command import Command, Wiring
from dispatcher.cli.status import outcome_exit_code
from dispatcher.client import open_dispatcher
from dispatcher.requests import CancelOutcome, TaskRequest


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
        metavar="N",
        help="0 (default) to 255, higher runs first; the task queue honours up to "
        "WQ_AMQP_MAX_PRIORITY (10), higher values count as that",
    )
    submit.add_argument(
        "--queue",
        metavar="NAME",
        help="task queue to route it to (default: the one its task type declares, else "
        "'default', the wq.tasks queue)",
    )
    later = submit.add_mutually_exclusive_group()
    later.add_argument(
        "--eta",
        type=_aware_datetime,
        metavar="TIME",
        help="not before this ISO 8601 time with a zone, e.g. 2026-05-01T09:00:00+02:00",
    )
    later.add_argument(
        "--countdown",
        type=float,
        metavar="SECONDS",
        help="not before this many seconds from now (0 to ten years)",
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


def _submit(wiring: Wiring, args: argparse.Namespace) -> int:
    params = _parse_params(args.params)
    # Checked as the HTTP API and the Python API check it, before anything connects:
    # InvalidRequest is exit 2, with the field at fault.
    request = TaskRequest(
        args.task_type,
        params,
        idempotency_key=args.idempotency_key,
        priority=args.priority,
        eta=args.eta,
        countdown=args.countdown,
        queue=args.queue,
    )
    registry = wiring.registry()
    amqp = wiring.amqp()
    return run_loop(_submit_one(wiring, amqp, registry, args, request))


async def _submit_one(
    wiring: Wiring,
    amqp: AmqpSettings,
    registry: TaskRegistry | None,
    args: argparse.Namespace,
    request: TaskRequest,
) -> int:
    settings = wiring.settings
    try:
        # With --wait, record results ourselves only if no dispatcher serve already does.
        consume = None if args.wait else False
        async with open_dispatcher(
            amqp, settings, registry=registry, consume_results=consume
        ) as dispatcher:
            (task_id,) = await dispatcher.submit_many([request])
            if registry is None and not dispatcher.fleet.checks_task_types():
                warn_unchecked(request.task_type)
            if not args.wait:
                print(task_id)
                return codes.OK
            record = await dispatcher.wait(task_id, timeout=args.timeout)
    except PublishRejected as exc:
        print(f"dispatcher: task not queued: {exc}", file=sys.stderr)
        return codes.NOT_PUBLISHED
    except TimeoutError:
        print(
            f"dispatcher: no outcome for task {task_id} within {args.timeout:g}s. Is an executor"
            f" running, and does the dispatcher serve that records results use this store"
            f" ({settings.redacted_store()})?",
            file=sys.stderr,
        )
        return codes.WAIT_TIMEOUT
    print(record.model_dump_json(indent=2))
    return outcome_exit_code(record)


def _cancel(wiring: Wiring, args: argparse.Namespace) -> int:
    amqp = wiring.amqp()
    if wiring.store_missing():
        raise TaskNotFound(args.task_id)  # without creating an empty SQLite file on the way
    return run_loop(_cancel_one(wiring, amqp, args.task_id, as_json=args.json))


async def _cancel_one(wiring: Wiring, amqp: AmqpSettings, task_id: UUID, *, as_json: bool) -> int:
    try:
        async with open_dispatcher(amqp, wiring.settings, consume_results=False) as dispatcher:
            report = await dispatcher.cancel(task_id, via="cli")
    except BrokerUnavailable:
        raise  # nothing was recorded either: main says so
    except BrokerError as exc:
        print(
            f"dispatcher: the cancel of {task_id} is recorded, but executors were not told"
            f" ({exc}); run the command again",
            file=sys.stderr,
        )
        return codes.exit_code_for(exc)
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


def warn_unchecked(task_type: str) -> None:
    """Say on stderr that ``task_type`` was taken without a check (docs/operations.md)."""
    print(
        f"dispatcher: warning: task type {task_type!r} and its params were not checked: no "
        "executor has published its task types to this store yet, and no task module is set "
        "(WQ_DISPATCHER_TASKS or --tasks). An executor without this type dead-letters the task "
        "(unknown_task_type).",
        file=sys.stderr,
    )


def _parse_params(text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except (ValueError, RecursionError) as exc:
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


SUBMIT = Command("submit", _add_submit_parser, _submit)
CANCEL = Command("cancel", _add_cancel_parser, _cancel)
