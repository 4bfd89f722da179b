"""The aio-pika adapter both services share: connect, declare the topology, publish confirmed.

This is the only module outside the services' own adapters that catches aio-pika and aiormq
errors; it turns them into ``BrokerError`` subclasses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
)
from yarl import URL

from common import shutdown
from common.codec import MessageProperties
from common.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    PublishRejected,
    WorkQueueError,
)
from common.logging import get_logger
from common.settings import AmqpSettings, redact_url
from common.topology import TASK_ROUTING_KEY, Topology, topology_mismatch

log = get_logger(__name__)

# What aio-pika and aiormq raise when a connection or channel is down. A closed channel is a
# ChannelInvalidStateError, which is a RuntimeError, not an AMQPError.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
# What one connection attempt to one address may raise before the next address is tried.
_ATTEMPT_FAILURES: tuple[type[Exception], ...] = (
    *aio_pika.exceptions.CONNECTION_EXCEPTIONS,
    TimeoutError,
)
_PUBLISH_INTERRUPTIONS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncio.CancelledError,
)


# Shutdown steps skip a broker that is away; these are what aio-pika raises when it is.
_SHUTDOWN_STEP_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, WorkQueueError)
while_reachable = partial(shutdown.while_reachable, errors=_SHUTDOWN_STEP_ERRORS)
close_quickly = partial(shutdown.close_quickly, errors=CONNECTION_ERRORS)


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection that tries every broker address in turn, at first and on reconnect.

    aio-pika's ``RobustConnection`` reconnects to the one URL it was given, so a client of a
    cluster would keep knocking on a dead node. Here each connection attempt walks the list,
    starting after the address used last, and fails only when every address failed; the
    robust machinery then waits its ``reconnect_interval`` and tries the whole list again.
    Channels, queues and consumers are restored by ``RobustConnection`` on whichever node
    answered (a client may talk to any cluster node:
    https://www.rabbitmq.com/docs/clustering#clients).
    """

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        super().__init__(URL(urls[0]), **kwargs)
        self._urls = [URL(url) for url in urls]
        self._next = 0

    # The one attempt hook RobustConnection has is name-mangled; test_amqp_failover checks it
    # still exists, so an aio-pika upgrade that renames it fails the unit tests, not production.
    async def _RobustConnection__connect_transport(self) -> None:
        failures: list[Exception] = []
        for _ in self._urls:
            self.url = self._urls[self._next]
            self._next = (self._next + 1) % len(self._urls)
            try:
                await _CONNECT_TRANSPORT(self)
            except _ATTEMPT_FAILURES as exc:
                failures.append(exc)
                continue
            return
        raise failures[-1]


_CONNECT_TRANSPORT = aio_pika.RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]


async def connect(settings: AmqpSettings, *, name: str) -> FailoverConnection:
    """Open a robust connection named ``<prefix> <name>`` (the management UI shows it, so two
    deployments on one broker tell their connections apart).

    With several addresses in ``settings.url`` it fails over between them (FailoverConnection).
    """
    # aio-pika's connection class reads the heartbeat from the URL's query only (its
    # ``connect`` helper puts keyword arguments there), so it goes into every address.
    urls = [
        str(URL(url).update_query(heartbeat=settings.heartbeat)) for url in settings.urls_to_try()
    ]
    connection = FailoverConnection(
        urls, client_properties={"connection_name": f"{settings.prefix} {name}"}
    )
    try:
        await connection.connect(timeout=settings.connect_timeout)
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        detail = settings.scrub(str(exc) or type(exc).__name__)
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {settings.redacted_url()}: {detail}"
        ) from exc

    def lost(_: object, exc: BaseException | None = None) -> None:
        # Closed on purpose: aio-pika reports that as None or as a CancelledError, depending
        # on where the close began; only a close we did not call is a lost connection.
        if exc is not None and not connection.close_called:
            detail = settings.scrub(str(exc) or type(exc).__name__)
            log.warning(
                "broker_connection_lost",
                connection=name,
                broker=_redacted(connection),
                error=detail,
            )

    def restored(_: object) -> None:
        log.info("broker_reconnected", connection=name, broker=_redacted(connection))

    # The robust connection reconnects, re-declares and re-consumes by itself; these lines
    # are how operators see it happen, and which node it landed on.
    connection.close_callbacks.add(lost)
    connection.reconnect_callbacks.add(restored)
    return connection


def _redacted(connection: FailoverConnection) -> str:
    return redact_url(str(connection.url.with_query(None)))


@dataclass(frozen=True, slots=True)
class DeclaredTopology:
    """Handles on the declared objects; robust channels re-declare them after a reconnect."""

    task_exchange: AbstractExchange
    task_queue: AbstractQueue
    results_queue: AbstractQueue


async def declare_topology(channel: AbstractChannel, topology: Topology) -> DeclaredTopology:
    """Declare every exchange and queue (idempotent).

    Both services declare the whole topology, so whichever starts first makes it usable: a
    task published before any executor ran is routed and kept, never dropped.
    """
    try:
        exchange = await channel.declare_exchange(
            topology.task_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queues = {
            name: await channel.declare_queue(name, durable=True, arguments=dict(arguments))
            for name, arguments in topology.queue_declarations()
        }
        tasks = queues[topology.task_queue]
        await tasks.bind(exchange, TASK_ROUTING_KEY)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigError(topology_mismatch(str(exc), topology)) from exc
    return DeclaredTopology(exchange, tasks, queues[topology.results_queue])


async def declare_task_queue(
    channel: AbstractChannel, topology: Topology, queue: str
) -> AbstractQueue:
    """Declare the task queue called ``queue`` and bind it to the task exchange (idempotent).

    Named queues have the default task queue's arguments, dead-letter to the one
    ``wq.tasks.dead`` (whose ``x-wq-original-queue`` header names the queue) and are declared
    by whoever first needs them: the dispatcher before its first publish to one, an executor
    before it consumes. The task exchange must exist (``declare_topology``).
    """
    try:
        declared = await channel.declare_queue(
            topology.task_queue_of(queue),
            durable=True,
            arguments=dict(topology.task_queue_arguments()),
        )
        await declared.bind(topology.task_exchange, topology.routing_key_of(queue))
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigError(topology_mismatch(str(exc), topology)) from exc
    return declared


async def declare_results_queue(channel: AbstractChannel, topology: Topology) -> AbstractQueue:
    """Declare only the results queue, for a channel that consumes it.

    The robust channel re-declares it on reconnect before restoring the consumer; the rest of
    the topology is declared once, on the publishing channel.
    """
    try:
        return await channel.declare_queue(
            topology.results_queue, durable=True, arguments=dict(topology.results_queue_arguments())
        )
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigError(topology_mismatch(str(exc), topology)) from exc


def to_message(body: bytes, properties: MessageProperties) -> aio_pika.Message:
    """Build an aio-pika message from the client-independent properties."""
    return aio_pika.Message(
        body,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        delivery_mode=aio_pika.DeliveryMode(properties.delivery_mode),
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        type=properties.type,
        timestamp=properties.timestamp,
        app_id=properties.app_id,
        reply_to=properties.reply_to,
        headers=dict(properties.headers),
        priority=properties.priority,
    )


def amqp_properties(properties: MessageProperties) -> aiormq.spec.Basic.Properties:
    """The client-independent properties as aiormq sends them: what ``to_message(...)``'s
    ``properties`` would be (delivery mode and priority always set, headers a table)."""
    return aiormq.spec.Basic.Properties(
        app_id=properties.app_id,
        content_encoding=properties.content_encoding,
        content_type=properties.content_type,
        correlation_id=properties.correlation_id,
        delivery_mode=int(properties.delivery_mode),
        headers=dict(properties.headers),
        message_id=properties.message_id,
        message_type=properties.type,
        priority=properties.priority or 0,
        reply_to=properties.reply_to,
        timestamp=properties.timestamp,
    )


async def publish_confirmed(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: MessageProperties,
    *,
    timeout: float,
) -> None:
    """Publish with ``mandatory`` and wait for the broker's confirm.

    The channel must have publisher confirms and ``on_return_raises`` on. Without
    ``mandatory`` an unroutable message is confirmed and silently dropped
    (https://www.rabbitmq.com/docs/confirms#when-publishes-are-confirmed).
    ``exchange`` is a name (``""``: the default exchange). The publish is the one aio-pika's
    ``Exchange.publish`` makes, on the robust channel's current aiormq channel, without an
    aio-pika ``Message`` built first: on the dispatcher's hot path that object cost about as
    much as the rest of aio-pika's share of the publish.
    """
    try:
        if channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
        underlay = await channel.get_underlay_channel()
        await underlay.basic_publish(
            body,
            exchange=exchange,
            routing_key=routing_key,
            properties=amqp_properties(properties),
            mandatory=True,
            timeout=timeout,
        )
    except aiormq.exceptions.PublishError as exc:
        raise PublishRejected("unroutable", detail=f"no queue for {routing_key!r}") from exc
    except aiormq.exceptions.DeliveryError as exc:
        raise PublishRejected("nack", detail="the broker refused the message") from exc
    except TimeoutError as exc:
        raise PublishRejected("timeout", detail=f"no confirm within {timeout:g}s") from exc
    except _PUBLISH_INTERRUPTIONS as exc:
        if isinstance(exc, asyncio.CancelledError) and _current_task_cancelling():
            raise
        raise BrokerError(f"connection lost while publishing: {type(exc).__name__}") from exc


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
