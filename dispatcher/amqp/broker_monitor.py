"""What the dispatcher can tell about the broker: connection state and queue depths (aio-pika)."""

from __future__ import annotations

from typing import Protocol

from aio_pika.abc import AbstractRobustConnection

from common import BrokerError, Topology
from dispatcher.amqp.queue_depths import QueueDepth, read_queue_depths


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

    async def queue_depths(self) -> list[QueueDepth]:
        """The fixed queues, then every retry bucket's queue that exists (declared on use)."""
        if not self.is_connected():
            raise BrokerError("not connected to RabbitMQ")
        return await read_queue_depths(self._connections[0], self._topology.every_queue())
