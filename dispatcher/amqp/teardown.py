"""Tearing a deployment's topology down: find what exists under a prefix, then delete it.

AMQP cannot list queues, so the candidates are the names the topology declares (its fixed
queues, its exchange) and the named task queues someone says it has; passive declares tell
which of them exist, with their messages and consumers.
https://www.rabbitmq.com/docs/queues#passive-declaration
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from common import BrokerError, Topology, TopologyInUse
from common.amqp import CONNECTION_ERRORS
from common.logging import get_logger
from dispatcher.amqp.queue_depths import QueueDepth, read_queue_depths

log = get_logger(__name__)

# While a robust connection reconnects, opening a channel raises a plain RuntimeError.
_UNAVAILABLE: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, RuntimeError)


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


async def find_topology(
    connection: AbstractRobustConnection, topology: Topology, named_queues: Iterable[str]
) -> Teardown:
    """Which of the deployment's queues and its exchange exist (nothing is created)."""
    queues = await read_queue_depths(connection, candidate_queues(topology, named_queues))
    exchange = topology.task_exchange
    return Teardown(queues, exchange if await _exchange_exists(connection, exchange) else None)


async def delete_topology(connection: AbstractRobustConnection, found: Teardown) -> None:
    """Delete what ``find_topology`` found; ``TopologyInUse`` if consumers are attached.

    Each queue is deleted ``if-unused``, so a consumer that attached since it was looked at
    stops the teardown there instead of losing its messages under it.
    """
    if found.in_use:
        raise TopologyInUse(found.in_use)
    for queue in found.queues:
        async with _channel(connection, f"delete {queue.name}") as channel:
            try:
                await channel.queue_delete(queue.name, if_unused=True)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise TopologyInUse({queue.name: 1}) from exc
        log.info("queue_deleted", queue=queue.name, messages=queue.messages)
    if found.exchange is not None:
        async with _channel(connection, f"delete {found.exchange}") as channel:
            await channel.exchange_delete(found.exchange)
        log.info("exchange_deleted", exchange=found.exchange)


async def _exchange_exists(connection: AbstractRobustConnection, name: str) -> bool:
    # A passive declare of a missing exchange closes its channel (404), as for a queue.
    async with _channel(connection, f"look up {name}") as channel:
        try:
            await channel.declare_exchange(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
    return True


@contextlib.asynccontextmanager
async def _channel(
    connection: AbstractRobustConnection, what: str
) -> AsyncIterator[AbstractChannel]:
    try:
        channel: AbstractChannel = await connection.channel()
    except _UNAVAILABLE as exc:
        raise BrokerError(f"cannot open a channel to {what}: {type(exc).__name__}") from exc
    try:
        yield channel
    except CONNECTION_ERRORS as exc:
        raise BrokerError(f"cannot {what}: {type(exc).__name__}: {exc}") from exc
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*_UNAVAILABLE):
                await channel.close()
