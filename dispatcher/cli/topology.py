"""``dispatcher topology delete``: remove a deployment's queues and exchange from the broker."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from common import AmqpSettings, StoreError, check_queue_name, load_settings
from common import exit_codes as codes
from common.loop import run as run_loop
from common.pika_link import open_link
from dispatcher.amqp.teardown import Teardown, delete_topology, find_topology
from dispatcher.cli.command import Command, Wiring
from dispatcher.store.backends import open_store
from dispatcher.store.threaded import ThreadedTaskStore
from dispatcher.task_types import declared_queues


def _add_parser(commands: Any) -> None:
    topology = commands.add_parser(
        "topology", help="the deployment's queues and exchange on the broker"
    )
    actions = topology.add_subparsers(dest="topology_command", required=True, metavar="ACTION")
    delete = actions.add_parser(
        "delete",
        help="delete every queue and the exchange of a prefix (refused while consumers are "
        "attached); without --yes, only list them",
        description="Delete the queues and the task exchange of the deployment named by "
        "--prefix: its fixed queues, its dead-letter queues, the cancellations stream, and "
        "the named task queues found in the task module (--tasks, WQ_DISPATCHER_TASKS), in "
        "the task store (task types and executors recorded) or given with --queue. Messages "
        "in them are lost. Refused (exit 75) while any of them has consumers.",
    )
    delete.add_argument(
        "--prefix",
        required=True,
        help="the deployment's WQ_AMQP_PREFIX, e.g. wq.demo (named, never defaulted)",
    )
    delete.add_argument(
        "--queue",
        action="append",
        default=[],
        type=_queue_name,
        metavar="NAME",
        help="a named task queue to delete too (repeatable), beyond those found",
    )
    delete.add_argument("--tasks", help="task module whose queues to include (WQ_DISPATCHER_TASKS)")
    delete.add_argument("--yes", action="store_true", help="confirm: delete them")


def _queue_name(text: str) -> str:
    try:
        return check_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _run(wiring: Wiring, args: argparse.Namespace) -> int:
    amqp = load_settings(AmqpSettings, prefix=args.prefix)  # the prefix is checked here
    return run_loop(_delete(wiring, amqp, set(args.queue), confirmed=args.yes))


async def _known_queues(wiring: Wiring) -> set[str]:
    """Named task queues the task module and the task store know of."""
    registry = wiring.registry()
    queues = set(registry.queues()) if registry is not None else set()
    if wiring.store_missing():
        return queues  # without creating an empty SQLite file on the way
    return queues | await _recorded_queues(wiring)


async def _recorded_queues(wiring: Wiring) -> set[str]:
    store = ThreadedTaskStore(open_store(wiring.settings.store))
    try:
        types = await store.list_task_types()
        executors = await store.list_executors()
    except StoreError as exc:
        print(f"dispatcher: the task store was not read ({exc})", file=sys.stderr)
        return set()
    finally:
        await store.close()
    return {*declared_queues(types).values(), *(q for e in executors for q in e.queues)}


async def _delete(wiring: Wiring, amqp: AmqpSettings, named: set[str], *, confirmed: bool) -> int:
    topology = amqp.topology
    named |= await _known_queues(wiring)
    async with open_link(amqp, name="dispatcher topology") as link:
        found = await find_topology(link, topology, named)
        if found.is_empty():
            print(f"nothing to delete: no queue or exchange of prefix {topology.prefix!r}")
            return codes.OK
        if not confirmed:
            _print_plan(found, "would delete")
            if found.in_use:
                print("(refused while consumers are attached)", file=sys.stderr)
            print("dispatcher: nothing deleted; add --yes to delete them", file=sys.stderr)
            return codes.USAGE
        await delete_topology(link, found)
        _print_plan(found, "deleted")
    return codes.OK


def _print_plan(found: Teardown, verb: str) -> None:
    for queue in found.queues:
        consumers = f", {queue.consumers} consumer(s)" if queue.consumers else ""
        print(f"{verb} queue {queue.name} ({queue.messages} message(s){consumers})")
    if found.exchange is not None:
        print(f"{verb} exchange {found.exchange}")


TOPOLOGY = Command("topology", _add_parser, _run)
