"""Consuming an advisory side queue (heartbeats, progress) on a channel of its own (aio-pika).

A channel per queue: a flood on one cannot slow the results consumer, and its prefetch is its
own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from common import BrokerError
from common.amqp import CONNECTION_ERRORS

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
Stop = Callable[[], Awaitable[None]]


async def consume_side_queue(
    connection: AbstractRobustConnection,
    name: str,
    arguments: Mapping[str, str | int],
    handler: Handler,
    *,
    prefetch: int,
    consumer_tag: str,
) -> Stop:
    """Declare ``name`` with ``arguments`` and consume it with ``handler``; returns how to stop."""
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(name, durable=True, arguments=dict(arguments))
        tag = await queue.consume(handler, consumer_tag=consumer_tag)
    except CONNECTION_ERRORS as exc:
        raise BrokerError(f"cannot consume {name}: {exc}") from exc

    async def stop() -> None:
        await queue.cancel(tag)
        await channel.close()

    return stop
