"""``dispatcher dead list|replay|purge``: the dead-letter queue from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any
from uuid import UUID

from tqdm import tqdm

from common import AmqpSettings
from common import exit_codes as codes
from common.loop import run as run_loop
from common.pika_link import declare_topology, open_link
from dispatcher.amqp import dead_letters
from dispatcher.cli.command import Command, Wiring
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.threaded import ThreadedTaskStore


def _add_parser(commands: Any) -> None:
    dead = commands.add_parser("dead", help="list, replay or purge the dead-letter queue")
    actions = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show dead tasks and why (keeps them)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    replaying = actions.add_parser("replay", help="run dead tasks again, as their next attempt")
    which = replaying.add_mutually_exclusive_group(required=True)
    which.add_argument("task_ids", metavar="TASK_ID", type=UUID, nargs="*", default=[])
    which.add_argument("--all", action="store_true", help="replay every replayable task")
    purging = actions.add_parser("purge", help="delete every dead message")
    purging.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def _run(wiring: Wiring, args: argparse.Namespace) -> int:
    return run_loop(_act(wiring.amqp(), wiring.settings, args))


async def _act(amqp: AmqpSettings, settings: DispatcherSettings, args: argparse.Namespace) -> int:
    if args.dead_command == "purge" and not args.yes:
        print("dispatcher: dead purge deletes every dead message; add --yes", file=sys.stderr)
        return codes.USAGE
    topology = amqp.topology
    async with (
        open_link(amqp, name="dispatcher dead-letters") as link,
        link.scratch_channel(confirms=True) as channel,
    ):
        await declare_topology(channel, topology)  # replays publish to its exchange and queues
        if args.dead_command == "list":
            letters = await dead_letters.list_dead(channel, topology, limit=args.limit)
            for letter in letters:
                print(_describe(letter, as_json=args.json))
            if not letters:  # on stderr: stdout stays empty for scripts and --json
                print(f"no dead-lettered tasks in {topology.task_dead_queue}", file=sys.stderr)
            return codes.OK
        if args.dead_command == "purge":
            print(f"purged {await dead_letters.purge(channel, topology)} dead message(s)")
            return codes.OK
        store = ThreadedTaskStore(open_store(settings.store))
        try:
            # A bar only for a person watching: off a terminal it would be debris in a log.
            watching = args.all and sys.stderr.isatty()
            with tqdm(desc="replayed", unit="task", disable=not watching) as bar:
                report = await dead_letters.replay(
                    channel,
                    topology,
                    store,
                    task_ids=None if args.all else args.task_ids,
                    reply_to=topology.results_queue,
                    app_id=settings.app_id,
                    confirm_timeout=amqp.confirm_timeout,
                    progress=bar.update,
                )
        finally:
            await store.close()
    for task_id in report.replayed:
        print(f"replayed {task_id}")
    if args.all:
        print(f"replayed {len(report.replayed)} task(s)", file=sys.stderr)
    for problem in report.skipped:
        print(f"skipped {problem}", file=sys.stderr)
    missing = set(args.task_ids) - set(report.replayed)
    for task_id in sorted(missing, key=str):
        print(f"dispatcher: {task_id} is not in the dead-letter queue", file=sys.stderr)
    return codes.NOT_FOUND if missing else codes.OK


def _describe(letter: dead_letters.DeadLetter, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(dataclasses.asdict(letter), default=str)
    error = f"{letter.error_kind}: {letter.error}" if letter.error_kind else ""
    return (
        f"{letter.task_id}  {letter.task_type or '?'}  {letter.reason}"
        f"  attempts={letter.attempts or '?'}  {letter.dead_at or ''}  {error}"
    )


DEAD = Command("dead", _add_parser, _run)
