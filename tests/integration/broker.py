"""Test-side broker access with plain pika: counts, raw publish and get, clean-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from common import Topology


@dataclass(frozen=True)
class QueueCounts:
    """Ready messages and consumers of a queue, as a passive declare reports them."""

    messages: int
    consumers: int


# The named task queues tests use, deleted with the rest of a test's topology: AMQP cannot
# list a deployment's queues, so a test that uses another name must add it here.
TEST_QUEUES = ("reports", "urgent", "nightly")


class Broker:
    """One blocking connection for assertions and raw publishing."""

    def __init__(self, url: str, name: str) -> None:
        parameters = pika.URLParameters(url)
        parameters.client_properties = {"connection_name": f"test {name}"}
        self._connection = pika.BlockingConnection(parameters)

    def counts(self, queue: str) -> QueueCounts:
        """Counts of ``queue``; zeros when it does not exist (yet)."""
        channel = self._connection.channel()
        try:
            frame = channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return QueueCounts(0, 0)
        channel.close()
        return QueueCounts(frame.method.message_count, frame.method.consumer_count)

    def exists(self, name: str, *, exchange: bool = False) -> bool:
        """Whether the queue (or the exchange) called ``name`` exists: a passive declare."""
        channel = self._connection.channel()
        try:
            if exchange:
                channel.exchange_declare(name, passive=True)
            else:
                channel.queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return False
        channel.close()
        return True

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None) -> None:
        """Publish with confirms and mandatory; raises if unroutable or nacked."""
        channel = self._connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, properties=properties, mandatory=True)
        channel.close()

    def get(self, queue: str) -> tuple[Any, bytes] | None:
        """Take one message (acked) from ``queue``: its properties and body."""
        channel = self._connection.channel()
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        channel.close()
        return None if method is None else (properties, body)

    def channel(self) -> Any:
        """A fresh channel on the test connection."""
        return self._connection.channel()

    def delete_topology(self, topology: Topology) -> None:
        """Delete every queue (the named task queues tests use included) and the exchange."""
        channel = self._connection.channel()
        # Deleting a queue that does not exist (a named queue a test did not use) is a no-op.
        named = [topology.task_queue_of(name) for name in TEST_QUEUES]
        for queue in [*topology.every_queue(), *named]:
            channel.queue_delete(queue)
        channel.exchange_delete(topology.task_exchange)
        channel.close()

    def sleep(self, seconds: float) -> None:
        """Wait while keeping the connection serviced (heartbeats, returns)."""
        self._connection.sleep(seconds)

    def close(self) -> None:
        """Close the connection."""
        if self._connection.is_open:
            self._connection.close()
