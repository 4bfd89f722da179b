"""What the dispatcher can tell about the broker: connections, the results consumer, depths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from common import BrokerError, Topology
from common.pika_link import Link
from dispatcher.amqp.queue_depths import QueueDepth, read_queue_depths
from dispatcher.amqp.results import ResultRecorder


class BrokerMonitor(Protocol):
    """Read-only view of the broker, for health checks and the queues endpoint."""

    def is_connected(self) -> bool:
        """Whether every connection is open (not between a loss and its reconnect)."""

    def results_flowing(self) -> bool:
        """Whether the results consumer keeps up: nothing waits on it unsettled, stuck."""

    async def queue_depths(self, task_queues: Iterable[str] = ()) -> list[QueueDepth]:
        """Depths of the deployment's queues that exist, named task queues among them
        (``task_queues``: their names, as executors consume them); ``BrokerError`` when
        unreachable."""


class AmqpBrokerMonitor:
    """Watches the dispatcher's connections; reads queue depths over the first one."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._connections: list[Link] = []
        self._results: ResultRecorder | None = None
        self._stalled_after = 0.0

    def watch(self, link: Link) -> None:
        """Include ``link`` in ``is_connected``; the first one also reads depths."""
        self._connections.append(link)

    def watch_results(self, recorder: ResultRecorder, *, stalled_after: float) -> None:
        """Include ``recorder`` in ``results_flowing``: stalled past ``stalled_after`` s."""
        self._results, self._stalled_after = recorder, stalled_after

    def is_connected(self) -> bool:
        return bool(self._connections) and all(link.is_ready for link in self._connections)

    def results_flowing(self) -> bool:
        return self._results is None or not self._results.stalled(self._stalled_after)

    def connection(self) -> Link:
        """A connection to the broker the dispatcher holds, for operations of the API."""
        if not self.is_connected():
            raise BrokerError("not connected to RabbitMQ")
        return self._connections[0]

    async def queue_depths(self, task_queues: Iterable[str] = ()) -> list[QueueDepth]:
        """The fixed queues, every retry bucket's queue that exists (declared on use), then
        the named task queues of ``task_queues`` that exist."""
        if not self.is_connected():
            raise BrokerError("not connected to RabbitMQ")
        named = [self._topology.task_queue_of(q) for q in sorted(set(task_queues))]
        names = [*self._topology.every_queue(), *named]
        return await read_queue_depths(self._connections[0], list(dict.fromkeys(names)))
