"""The aio-pika adapter both services share: connect, declare the topology, publish confirmed.

This is the only module outside the services' own adapters that catches aio-pika and aiormq
errors; it turns them into ``BrokerError`` subclasses.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from common.codec import MessageProperties
from common.errors import BrokerError, BrokerUnavailable, ConfigError, PublishRejected
from common.logging import get_logger
from common.settings import AmqpSettings
from common.topology import TASK_ROUTING_KEY, Topology

log = get_logger(__name__)

# What aio-pika and aiormq raise when a connection or channel is down. A closed channel is a
# ChannelInvalidStateError, which is a RuntimeError, not an AMQPError.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
_PUBLISH_INTERRUPTIONS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncio.CancelledError,
)


async def connect(settings: AmqpSettings, *, name: str) -> AbstractRobustConnection:
    """Open a robust connection named ``name`` (the name shows in the management UI)."""
    url = settings.url.get_secret_value()
    try:
        connection = await aio_pika.connect_robust(
            url,
            timeout=settings.connect_timeout,
            client_properties={"connection_name": name},
            heartbeat=settings.heartbeat,
        )
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        detail = _scrub(str(exc) or type(exc).__name__, settings)
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {settings.redacted_url()}: {detail}"
        ) from exc

    def lost(_: object, exc: BaseException | None = None) -> None:
        if exc is not None:  # None: closed on purpose
            detail = _scrub(str(exc) or type(exc).__name__, settings)
            log.warning("broker_connection_lost", connection=name, error=detail)

    def restored(_: object) -> None:
        log.info("broker_reconnected", connection=name)

    # The robust connection reconnects, re-declares and re-consumes by itself; these lines
    # are how operators see it happen.
    connection.close_callbacks.add(lost)
    connection.reconnect_callbacks.add(restored)
    return connection


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


def topology_mismatch(broker_says: str, topology: Topology) -> str:
    """What to tell an operator whose broker holds queues declared with other arguments."""
    return (
        f"the broker already has a queue or exchange with other arguments than this "
        f"configuration (queue type {topology.queue_type!r}, prefix {topology.prefix!r}, "
        f"max priority {topology.max_priority}): {broker_says}. A task queue declared before "
        f"priorities existed lacks x-max-priority: set WQ_AMQP_MAX_PRIORITY=0 to keep it as "
        f"it is. Arguments cannot change in place. To migrate: stop the producers, "
        f"let the executors drain the queue, delete it (rabbitmqctl delete_queue NAME) and "
        f"restart; or start the new configuration under a new WQ_AMQP_PREFIX next to the old "
        f"one until the old queues are empty. See docs/operations.md, 'Queue arguments changed'."
    )


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


async def publish_confirmed(
    exchange: AbstractExchange,
    routing_key: str,
    message: aio_pika.Message,
    *,
    timeout: float,
) -> None:
    """Publish with ``mandatory`` and wait for the broker's confirm.

    The channel must have publisher confirms and ``on_return_raises`` on. Without
    ``mandatory`` an unroutable message is confirmed and silently dropped
    (https://www.rabbitmq.com/docs/confirms#when-publishes-are-confirmed).
    """
    try:
        await exchange.publish(message, routing_key, mandatory=True, timeout=timeout)
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


def _scrub(text: str, settings: AmqpSettings) -> str:
    # aiormq may echo the URL in its errors; never let the password reach a log line.
    secret = urlsplit(settings.url.get_secret_value()).password
    return text.replace(secret, "***") if secret else text
