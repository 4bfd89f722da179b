"""``dispatcher prune``: delete finished tasks older than a cut-off, by hand.

``dispatcher serve`` does the same on its own (``WQ_DISPATCHER_RETENTION``); this is for a
one-off clean-up, another cut-off, or a store no ``serve`` runs on. It needs no broker.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from common import exit_codes as codes
from dispatcher.cli.command import Command, Wiring
from dispatcher.retention import FINAL_STATES, prune
from dispatcher.settings import parse_duration
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState


def _duration(text: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_parser(commands: Any) -> None:
    pruning = commands.add_parser(
        "prune",
        help="delete finished tasks older than a cut-off, with their attempts and keys",
        description="Delete finished tasks (succeeded, failed, dead, cancelled) that finished "
        "more than --older-than ago, with their attempts and idempotency keys (a key used "
        "again afterwards makes a new task). Tasks that have not finished are never deleted.",
    )
    pruning.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="finished more than this long ago: 7d, 12h, 30m, 45s, 2w",
    )
    pruning.add_argument(
        "--state",
        action="append",
        choices=[state.value for state in FINAL_STATES],
        help="only tasks in this state (repeat for several; default: every final state)",
    )
    pruning.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )


def _prune(wiring: Wiring, args: argparse.Namespace) -> int:
    states = [TaskState(s) for s in args.state] if args.state else list(FINAL_STATES)
    before = datetime.now(UTC) - args.older_than
    if wiring.store_missing():
        print("0 task(s) to prune: nothing is recorded yet")
        return codes.OK
    store = open_store(wiring.settings.store)
    try:
        count = store.count_prunable(before, states)
        if args.dry_run or count == 0:
            print(f"{count} task(s) would be pruned" if args.dry_run else "0 task(s) to prune")
            return codes.OK
        # A bar only for a person watching: off a terminal it would be debris in a log.
        with tqdm(total=count, desc="pruned", unit="task", disable=not sys.stderr.isatty()) as bar:
            pruned = prune(store, before, states, progress=bar.update)
    finally:
        store.close()
    print(f"pruned {pruned} task(s)")
    return codes.OK


PRUNE = Command("prune", _add_parser, _prune)
