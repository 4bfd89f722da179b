"""What the dispatcher can tell about the broker: connection state and queue depths (aio-pika)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiormq
from aio_pika.abc import AbstractRobustConnection

from common import BrokerError, Topology
from common.amqp import CONNECTION_ERRORS
from common.retry import MAX_BUCKET_S, MIN_BUCKET_S


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """A queue's ready messages and consumers, as a passive declare reports them."""

    name: str
    messages: int
    consumers: int


class BrokerMonitor(Protocol):
    """Read-only view of the broker, for health checks and the queues endpoint."""

    def is_connected(self) -> bool:
        """Whether every connection is open (not between a loss and its reconnect)."""

    async def queue_depths(self) -> list[QueueDepth]:
        """Depths of the deployment's queues that exist; ``BrokerError`` when unreachable."""


class AmqpBrokerMonitor:
    """Watches the dispatcher's connections; reads queue depths over the first one."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._connections: list[AbstractRobustConnection] = []

    def watch(self, connection: AbstractRobustConnection) -> None:
        """Include ``connection`` in ``is_connected``; the first one also reads depths."""
        self._connections.append(connection)

    def is_connected(self) -> bool:
        return bool(self._connections) and all(
            c.connected.is_set() and not c.is_closed for c in self._connections
        )

    def queue_names(self) -> list[str]:
        """The fixed queues, then every retry bucket's queue (declared on first use)."""
        names = [name for name, _ in self._topology.queue_declarations()]
        bucket = MIN_BUCKET_S
        while bucket <= MAX_BUCKET_S:
            names.append(self._topology.retry_queue(bucket))
            bucket *= 2
        return names

    async def queue_depths(self) -> list[QueueDepth]:
        if not self.is_connected():
            raise BrokerError("not connected to RabbitMQ")
        depths = []
        for name in self.queue_names():
            depth = await self._passive_declare(name)
            if depth is not None:
                depths.append(depth)
        return depths

    async def _passive_declare(self, name: str) -> QueueDepth | None:
        # A passive declare of a missing queue closes its channel (404), so each queue gets
        # a channel of its own. https://www.rabbitmq.com/docs/queues#passive-declaration
        try:
            channel = await self._connections[0].channel()
        except CONNECTION_ERRORS as exc:
            raise BrokerError(f"cannot open a channel: {type(exc).__name__}") from exc
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        except CONNECTION_ERRORS as exc:
            raise BrokerError(f"cannot read queue {name}: {type(exc).__name__}") from exc
        finally:
            if not channel.is_closed:
                await channel.close()
        declared = queue.declaration_result
        return QueueDepth(name, declared.message_count or 0, declared.consumer_count or 0)
