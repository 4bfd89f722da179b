"""Catching up with a long cancellation stream, on the real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

from common import AmqpSettings, CancelNotice, MessageProperties, cancel_properties, encode
from common.pika_link import Link
from executor.cancellations import Cancellations

NOTICES = 3000


async def test_every_notice_of_a_long_stream_is_known_before_catching_up_ends(
    amqp_settings: AmqpSettings,
) -> None:
    topology = amqp_settings.topology
    writer = Link(amqp_settings, name="test cancel stream")
    await writer.connect()
    reader = Link(amqp_settings, name="test cancel stream reader")
    await reader.connect()
    try:
        channel = await writer.channel(confirms=True)
        await channel.declare_queue(
            topology.cancel_stream,
            durable=True,
            arguments=topology.cancel_stream_arguments(),
        )
        notices = [
            CancelNotice(task_id=uuid4(), requested_at=datetime.now(UTC)) for _ in range(NOTICES)
        ]
        for start in range(0, NOTICES, 500):
            await asyncio.gather(
                *(
                    channel.publish(
                        "",
                        topology.cancel_stream,
                        encode(notice),
                        cancel_properties(notice, app_id="test"),
                        timeout=30,
                    )
                    for notice in notices[start : start + 500]
                )
            )

        async def publish(
            exchange: str, routing_key: str, body: bytes, properties: MessageProperties
        ) -> None:
            await channel.publish(exchange, routing_key, body, properties, timeout=30)

        cancellations = Cancellations(executor="test", max_body_bytes=amqp_settings.max_body_bytes)
        stop = asyncio.Event()
        assert await cancellations.follow(reader, topology, publish=publish, timeout=30, stop=stop)
        assert all(cancellations.is_cancelled(notice.task_id, 1) for notice in notices)
        assert cancellations._read == NOTICES + 1  # and the marker
    finally:
        await reader.close()
        await writer.close()
