"""``dispatcher retry``: run failed, dead or cancelled tasks again, by id or by filter."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any
from uuid import UUID

from tqdm import tqdm

from common import AmqpSettings
from common import exit_codes as codes
from common.loop import run as run_loop
from dispatcher.cli.command import Command, Wiring
from dispatcher.cli.listing import add_task_filters, filtered, task_query
from dispatcher.client import open_dispatcher
from dispatcher.store.backends import open_store
from dispatcher.store.query import TaskPosition
from dispatcher.store.records import TaskState

RETRYABLE = (TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED)
_PAGE = 500
_BATCH = 100


def _add_parser(commands: Any) -> None:
    retry = commands.add_parser(
        "retry",
        help="run failed, dead or cancelled tasks again, as their next attempt",
        description="Run tasks again, each as its next attempt on its own queue: the ids "
        "given, or every task matching the filters (count them first with --dry-run, then "
        "add --yes). Only failed, dead and cancelled tasks are retried; the attempt records "
        "that it was retried by hand. A dead task's copy stays in the dead-letter queue "
        "(dispatcher dead purge); replaying it later does nothing.",
    )
    retry.add_argument("task_ids", metavar="TASK_ID", type=UUID, nargs="*", help="tasks to retry")
    add_task_filters(
        retry,
        RETRYABLE,
        executor=False,
        state_help="in this state (repeat for several; default: failed, dead, cancelled)",
    )
    retry.add_argument("--dry-run", action="store_true", help="count the matches, retry none")
    retry.add_argument("--yes", action="store_true", help="confirm a retry by filter")


def _run(wiring: Wiring, args: argparse.Namespace) -> int:
    if args.task_ids and filtered(args):
        print("dispatcher retry: give task ids or filters, not both", file=sys.stderr)
        return codes.USAGE
    if not args.task_ids and not filtered(args):
        print("dispatcher retry: give task ids, or filters such as --state failed", file=sys.stderr)
        return codes.USAGE
    ids = list(dict.fromkeys(args.task_ids)) or _matching(wiring, args)
    if not args.task_ids:
        if args.dry_run or not ids:
            print(f"{len(ids)} task(s) would be retried")
            return codes.OK
        if not args.yes:
            print(f"{len(ids)} task(s) match; add --yes to retry them", file=sys.stderr)
            return codes.USAGE
    return run_loop(_retry(wiring.amqp(), wiring, ids, bar=not args.task_ids))


def _matching(wiring: Wiring, args: argparse.Namespace) -> list[UUID]:
    """Every retryable task the filters match, newest first, read a page at a time."""
    if wiring.store_missing():
        return []
    query = task_query(args, default_states=RETRYABLE, limit=_PAGE)
    found: list[UUID] = []
    store = open_store(wiring.settings.store)
    try:
        while page := store.list_tasks(query):
            found += [record.task_id for record in page]
            if len(page) < _PAGE:
                break
            query = dataclasses.replace(query, after=TaskPosition.of(page[-1]))
    finally:
        store.close()
    return found


async def _retry(amqp: AmqpSettings, wiring: Wiring, ids: list[UUID], *, bar: bool) -> int:
    retried: list[UUID] = []
    refused: dict[UUID, str] = {}
    watching = bar and sys.stderr.isatty()  # a bar only for a person watching
    async with open_dispatcher(amqp, wiring.settings, consume_results=False) as dispatcher:
        with tqdm(total=len(ids), desc="retried", unit="task", disable=not watching) as shown:
            for start in range(0, len(ids), _BATCH):
                report = await dispatcher.retry(ids[start : start + _BATCH], via="cli")
                retried += report.retried
                refused |= report.refused
                shown.update(len(report.retried) + len(report.refused))
    for task_id in retried:
        print(f"retried {task_id}")
    for task_id, why in refused.items():
        print(f"dispatcher: {task_id} not retried: {why}", file=sys.stderr)
    if bar:
        print(f"retried {len(retried)} task(s)", file=sys.stderr)
    if any(why == "no such task" for why in refused.values()):
        return codes.NOT_FOUND
    return codes.INVALID_TASK if refused else codes.OK


RETRY = Command("retry", _add_parser, _run)
