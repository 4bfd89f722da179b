"""A private RabbitMQ node for benchmark runs, and a probe for queue counts and clean-up.

The node is a ``devbroker.LocalNode``: the installed RabbitMQ binaries with a node name, ports,
data directory, config and Erlang cookie of its own, so the shared broker on 5672 (which the
tests use) is neither loaded nor touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import pika
import pika.exceptions

from devbroker.node import LocalNode, NodeError

_START_TIMEOUT_S = 90.0


class BrokerStartError(RuntimeError):
    """The private node did not come up; the message holds the end of its log."""


@dataclass(frozen=True, slots=True)
class PrivateBroker:
    """A running private node: where to connect and which process is its Erlang VM."""

    url: str
    node: str
    beam_pid: int | None
    version: str


@contextmanager
def private_broker() -> Iterator[PrivateBroker]:
    """Start a private node, yield it, and stop it (and remove its data) whatever happens."""
    node = LocalNode(name_prefix="wqbench")
    try:
        node.start(timeout=_START_TIMEOUT_S)
    except NodeError as exc:
        raise BrokerStartError(f"private RabbitMQ node did not start: {exc}") from exc
    try:
        beam = node.pid_file.read_text().strip() if node.pid_file.exists() else ""
        beam_pid = int(beam) if beam.isdigit() else None  # the Erlang VM, for its CPU time
        yield PrivateBroker(node.url, node.node, beam_pid, _server_version(node.url))
    finally:
        node.stop()


def _server_version(url: str) -> str:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        version = connection._impl.server_properties.get("version", b"?")
    finally:
        connection.close()
    return version.decode() if isinstance(version, bytes) else str(version)


class Probe:
    """Counts consumers and deletes a run's queues, on a short-lived connection each time.

    A connection held across a long run would miss its heartbeats (pika's blocking adapter
    only answers them while it is called) and be closed by the broker.
    """

    def __init__(self, url: str) -> None:
        self._parameters = pika.URLParameters(url)
        self._parameters.client_properties = {"connection_name": "wqbench probe"}

    @contextmanager
    def _connection(self) -> Iterator[pika.BlockingConnection]:
        connection = pika.BlockingConnection(self._parameters)
        try:
            yield connection
        finally:
            with suppress(pika.exceptions.AMQPError):
                connection.close()

    @staticmethod
    def _counts(connection: pika.BlockingConnection, queue: str) -> tuple[int, int]:
        channel = connection.channel()
        try:
            frame = channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        channel.close()
        return int(frame.method.message_count), int(frame.method.consumer_count)

    def counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and consumers of ``queue``; zeros while it does not exist."""
        with self._connection() as connection:
            return self._counts(connection, queue)

    def wait_for_consumers(self, queue: str, count: int, *, timeout: float = 60.0) -> None:
        """Block until ``count`` consumers are attached to ``queue``."""
        deadline = time.monotonic() + timeout
        with self._connection() as connection:
            while self._counts(connection, queue)[1] < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"fewer than {count} consumers on {queue} after {timeout:g}s"
                    )
                time.sleep(0.05)

    def delete(self, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
        """Delete queues and exchanges; missing ones are fine."""
        with self._connection() as connection:
            for kind, names in (("queue", queues), ("exchange", exchanges)):
                for name in names:
                    channel = connection.channel()
                    with suppress(pika.exceptions.ChannelClosedByBroker):
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                    if channel.is_open:
                        channel.close()
