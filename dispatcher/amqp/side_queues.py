"""Consuming an advisory side queue (heartbeats, progress) on a channel of its own (aio-pika).

A channel per queue: a flood on one cannot slow the results consumer, and its prefetch is its
own. Every message is acked whatever happens to it, since the next one supersedes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from common import BrokerError
from common.amqp import CONNECTION_ERRORS

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
# Logs a message dropped unread for its size, under the event its queue's handler logs for
# a message it cannot decode.
Oversized = Callable[[AbstractIncomingMessage], None]
Stop = Callable[[], Awaitable[None]]


async def consume_side_queue(
    connection: AbstractRobustConnection,
    name: str,
    arguments: Mapping[str, str | int],
    handler: Handler,
    *,
    max_body_bytes: int,
    oversized: Oversized,
    prefetch: int,
    consumer_tag: str,
) -> Stop:
    """Declare ``name`` with ``arguments`` and consume it with ``handler``; returns how to stop.

    A body over ``max_body_bytes`` never reaches ``handler``: ``oversized`` logs it, and it
    is acked.
    """
    on_message = size_limited(handler, max_body_bytes=max_body_bytes, oversized=oversized)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        queue = await channel.declare_queue(name, durable=True, arguments=dict(arguments))
        tag = await queue.consume(on_message, consumer_tag=consumer_tag)
    except CONNECTION_ERRORS as exc:
        raise BrokerError(f"cannot consume {name}: {exc}") from exc

    async def stop() -> None:
        await queue.cancel(tag)
        await channel.close()

    return stop


def size_limited(handler: Handler, *, max_body_bytes: int, oversized: Oversized) -> Handler:
    """``handler`` for bodies up to ``max_body_bytes``; a larger one is logged and acked."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        # Anyone with publish rights can write to the queue: size is checked before the body
        # is parsed, as for every other queue the dispatcher reads.
        if len(message.body) > max_body_bytes:
            oversized(message)
            await message.ack()
            return
        await handler(message)

    return on_message
