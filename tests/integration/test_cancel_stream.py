"""Catching up with a long cancellation stream, on the real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

from common import AmqpSettings, CancelNotice, MessageProperties, cancel_properties, encode
from common.amqp import connect, to_message
from common.pika_link import Link
from executor.cancellations import Cancellations

NOTICES = 3000


async def test_every_notice_of_a_long_stream_is_known_before_catching_up_ends(
    amqp_settings: AmqpSettings,
) -> None:
    topology = amqp_settings.topology
    connection = await connect(amqp_settings, name="test cancel stream")
    reader = Link(amqp_settings, name="test cancel stream reader")
    await reader.connect()
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            topology.cancel_stream,
            durable=True,
            arguments=dict(topology.cancel_stream_arguments()),
        )
        notices = [
            CancelNotice(task_id=uuid4(), requested_at=datetime.now(UTC)) for _ in range(NOTICES)
        ]
        for start in range(0, NOTICES, 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        to_message(encode(notice), cancel_properties(notice, app_id="test")),
                        routing_key=topology.cancel_stream,
                    )
                    for notice in notices[start : start + 500]
                )
            )

        async def publish(
            exchange: str, routing_key: str, body: bytes, properties: MessageProperties
        ) -> None:
            message = to_message(body, properties)
            await channel.default_exchange.publish(message, routing_key=routing_key)

        cancellations = Cancellations(executor="test", max_body_bytes=amqp_settings.max_body_bytes)
        stop = asyncio.Event()
        assert await cancellations.follow(reader, topology, publish=publish, timeout=30, stop=stop)
        assert all(cancellations.is_cancelled(notice.task_id, 1) for notice in notices)
        assert cancellations._read == NOTICES + 1  # and the marker
    finally:
        await reader.close()
        await connection.close()
