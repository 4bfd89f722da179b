"""Reading queue depths with passive declares, for the ``wq_queue_*`` gauges (aio-pika)."""

from __future__ import annotations

from dataclasses import dataclass

import aiormq
from aio_pika.abc import AbstractRobustConnection

from common import Topology
from common.amqp import CONNECTION_ERRORS

_PROBE_ERRORS: tuple[type[Exception], ...] = (
    aiormq.exceptions.ChannelNotFoundEntity,
    *CONNECTION_ERRORS,
)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """Ready messages and consumers of one queue."""

    queue: str
    messages: int
    consumers: int


async def read_queue_depths(
    connection: AbstractRobustConnection, topology: Topology
) -> list[QueueDepth]:
    """Depths of the queues declared at start-up (retry queues, declared on use, are not).

    A passive declare of a missing queue closes its channel, so each queue gets its own
    short-lived channel; a queue that is gone (or a broker that is) is left out.
    """
    depths = []
    for name, _ in topology.queue_declarations():
        try:
            async with connection.channel() as channel:
                declared = await channel.declare_queue(name, passive=True)
        except _PROBE_ERRORS:
            continue
        result = declared.declaration_result
        depths.append(QueueDepth(name, result.message_count or 0, result.consumer_count or 0))
    return depths
