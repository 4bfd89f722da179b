"""Tearing a deployment's topology down: find what exists under a prefix, then delete it.

AMQP cannot list queues, so the candidates are the names the topology declares (its fixed
queues, its exchange) and the named task queues someone says it has; passive declares tell
which of them exist, with their messages and consumers.
https://www.rabbitmq.com/docs/queues#passive-declaration
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common import Topology, TopologyInUse
from common.logging import get_logger
from common.pika_link import Link
from dispatcher.amqp.queue_depths import QueueDepth, read_queue_depths

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Teardown:
    """What a deployment has on the broker: its queues that exist, and its exchange if any."""

    queues: list[QueueDepth]
    exchange: str | None

    @property
    def in_use(self) -> dict[str, int]:
        """The consumers of each queue that has any."""
        return {queue.name: queue.consumers for queue in self.queues if queue.consumers}

    def is_empty(self) -> bool:
        """Whether nothing of the deployment exists."""
        return not self.queues and self.exchange is None


def candidate_queues(topology: Topology, named_queues: Iterable[str]) -> list[str]:
    """Every queue ``topology`` declares, then the broker queues of ``named_queues``."""
    names = topology.every_queue()
    for queue in sorted(set(named_queues)):
        broker_queue = topology.task_queue_of(queue)
        if broker_queue not in names:
            names.append(broker_queue)
    return names


async def find_topology(link: Link, topology: Topology, named_queues: Iterable[str]) -> Teardown:
    """Which of the deployment's queues and its exchange exist (nothing is created)."""
    queues = await read_queue_depths(link, candidate_queues(topology, named_queues))
    exchange = topology.task_exchange
    async with link.scratch_channel() as channel:
        exists = await channel.exchange_exists(exchange)
    return Teardown(queues, exchange if exists else None)


async def delete_topology(link: Link, found: Teardown) -> None:
    """Delete what ``find_topology`` found; ``TopologyInUse`` if consumers are attached.

    Each queue is deleted ``if-unused``, so a consumer that attached since it was looked at
    stops the teardown there instead of losing its messages under it. ``BrokerError`` if the
    broker goes away meanwhile.
    """
    if found.in_use:
        raise TopologyInUse(found.in_use)
    for queue in found.queues:
        async with link.scratch_channel() as channel:
            if not await channel.delete_queue(queue.name, if_unused=True):
                raise TopologyInUse({queue.name: 1})
        log.info("queue_deleted", queue=queue.name, messages=queue.messages)
    if found.exchange is not None:
        async with link.scratch_channel() as channel:
            await channel.delete_exchange(found.exchange)
        log.info("exchange_deleted", exchange=found.exchange)
