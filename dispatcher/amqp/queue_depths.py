"""Reading queue depths with passive declares (aio-pika): the queues endpoint and the gauges."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractRobustConnection

from common import BrokerError
from common.amqp import CONNECTION_ERRORS

# While a robust connection reconnects, opening a channel raises a plain RuntimeError
# ("Connection was not opened"): the broker is away, as much as with the connection errors.
_UNAVAILABLE: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, RuntimeError)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """A queue's ready messages and consumers, as a passive declare reports them."""

    name: str
    messages: int
    consumers: int


async def read_queue_depths(
    connection: AbstractRobustConnection, names: Iterable[str]
) -> list[QueueDepth]:
    """Depths of those of ``names`` that exist; ``BrokerError`` when the broker cannot answer."""
    depths = []
    for name in names:
        depth = await _passive_declare(connection, name)
        if depth is not None:
            depths.append(depth)
    return depths


async def _passive_declare(connection: AbstractRobustConnection, name: str) -> QueueDepth | None:
    # A passive declare of a missing queue closes its channel (404), so each queue gets a
    # channel of its own. https://www.rabbitmq.com/docs/queues#passive-declaration
    try:
        channel = await connection.channel()
    except _UNAVAILABLE as exc:
        raise BrokerError(f"cannot open a channel: {type(exc).__name__}: {exc}") from exc
    try:
        queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    except _UNAVAILABLE as exc:
        raise BrokerError(f"cannot read queue {name}: {type(exc).__name__}") from exc
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*_UNAVAILABLE):  # the connection went with the answer
                await channel.close()
    declared = queue.declaration_result
    return QueueDepth(name, declared.message_count or 0, declared.consumer_count or 0)
