"""Consuming executor heartbeats from ``wq.executors`` into the store (aio-pika).

Heartbeats are advisory and repeated every few seconds: one that cannot be decoded or
recorded is logged and dropped, never requeued, since the next one supersedes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from common import Heartbeat, MessageError, StoreError, Topology, decode_heartbeat
from common.amqp import CONNECTION_ERRORS
from common.errors import BrokerError
from common.logging import get_logger

log = get_logger(__name__)

RecordHeartbeat = Callable[[Heartbeat], Awaitable[None]]
_PREFETCH = 16


def heartbeat_handler(
    record: RecordHeartbeat,
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that records a heartbeat, then acks it whatever happened."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            heartbeat = decode_heartbeat(message.body)
            await record(heartbeat)
        except MessageError as exc:
            log.warning("heartbeat_rejected", error=str(exc))
        except StoreError as exc:
            log.warning("heartbeat_not_recorded", error=str(exc))
        else:
            log.debug("heartbeat_recorded", executor=heartbeat.executor, kind=heartbeat.event.value)
        await message.ack()

    return on_message


async def consume_heartbeats(
    connection: AbstractRobustConnection,
    topology: Topology,
    record: RecordHeartbeat,
    *,
    consumer_tag: str,
) -> Callable[[], Awaitable[None]]:
    """Start consuming heartbeats on a channel of its own; returns how to stop."""
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=_PREFETCH)
        queue = await channel.declare_queue(
            topology.executors_queue,
            durable=True,
            arguments=dict(topology.executors_queue_arguments()),
        )
        tag = await queue.consume(heartbeat_handler(record), consumer_tag=consumer_tag)
    except CONNECTION_ERRORS as exc:
        raise BrokerError(f"cannot consume {topology.executors_queue}: {exc}") from exc

    async def stop() -> None:
        await queue.cancel(tag)
        await channel.close()

    return stop
