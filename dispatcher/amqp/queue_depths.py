"""Reading queue depths with passive declares: the queues endpoint and the gauges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common import BrokerError
from common.pika_link import Link


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """A queue's ready messages and consumers, as a passive declare reports them."""

    name: str
    messages: int
    consumers: int


async def read_queue_depths(link: Link, names: Iterable[str]) -> list[QueueDepth]:
    """Depths of those of ``names`` that exist; ``BrokerError`` when the broker cannot answer.

    A passive declare of a missing queue closes its channel (404), so one scratch channel
    serves until that happens, and the next queue gets a new one.
    """
    if not link.is_ready:
        raise BrokerError("not connected to RabbitMQ (reconnecting)")
    depths: list[QueueDepth] = []
    pending = list(names)
    while pending:
        async with link.scratch_channel() as channel:
            while pending:
                name = pending.pop(0)
                counts = await channel.inspect_queue(name)
                if counts is None:
                    break  # the 404 closed this channel
                depths.append(QueueDepth(name, counts.messages, counts.consumers))
    return depths
