"""The services' AMQP client (``common.pika_link``) against the real broker.

The fault suite restarts brokers and cuts connections under whole services; these tests pin
the client's answers one by one: a return, a nack, a channel the broker closes alone, a
delivery settled after its channel is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from common import (
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    MessageProperties,
    PublishRejected,
    pika_link,
)
from common.pika_link import Channel, Incoming, Link, QueueCounts
from tests.integration.broker import Broker
from tests.integration.conftest import wait_until_async

PROPERTIES = MessageProperties(
    message_id="m-1", type="probe", correlation_id=None, timestamp=datetime.now(UTC), app_id="test"
)


@pytest.fixture
async def link(amqp_settings: AmqpSettings) -> AsyncIterator[Link]:
    link = Link(amqp_settings, name="test pika link")
    await link.connect()
    yield link
    await link.close()


async def test_a_publish_no_queue_takes_is_returned_as_unroutable(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    channel = await link.channel(confirms=True)
    queue = f"{amqp_settings.prefix}.probe"
    await channel.declare_queue(queue, exclusive=True)

    with pytest.raises(PublishRejected) as raised:
        await channel.publish("", f"{queue}.nowhere", b"{}", PROPERTIES, timeout=10)
    assert raised.value.reason == "unroutable"
    # The same message id routed now is confirmed: the return failed only its own publish.
    await channel.publish("", queue, b"{}", PROPERTIES, timeout=10)


async def test_a_publish_the_queue_refuses_is_a_nack(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    channel = await link.channel(confirms=True)
    queue = f"{amqp_settings.prefix}.full"
    arguments = {"x-max-length": 0, "x-overflow": "reject-publish"}
    await channel.declare_queue(queue, exclusive=True, arguments=arguments)

    with pytest.raises(PublishRejected) as raised:
        await channel.publish("", queue, b"{}", PROPERTIES, timeout=10)
    assert raised.value.reason == "nack"


async def _consume(
    link: Link, queue: str, *, prefetch: int, durable: bool = False
) -> tuple[Channel, asyncio.Queue[Incoming]]:
    """A confirm channel to publish with, and what a consumer of ``queue`` receives."""
    publisher = await link.channel(confirms=True)
    consumer = await link.channel()
    await consumer.declare_queue(queue, durable=durable, exclusive=not durable)
    received: asyncio.Queue[Incoming] = asyncio.Queue()

    async def on_message(message: Incoming) -> None:
        await received.put(message)

    await consumer.set_qos(prefetch_count=prefetch)
    await consumer.consume(queue, on_message, consumer_tag=f"test.{queue}")
    return publisher, received


async def test_a_channel_the_broker_closes_comes_back_with_its_consumer(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    queue = f"{amqp_settings.prefix}.reopened"
    publisher, received = await _consume(link, queue, prefetch=1)
    await publisher.publish("", queue, b'{"n": 1}', PROPERTIES, timeout=10)
    first = await asyncio.wait_for(received.get(), timeout=10)
    await first.ack()
    # A second ack of the same tag is a protocol error: the broker closes the channel.
    await first.ack()
    await publisher.publish("", queue, b'{"n": 2}', PROPERTIES, timeout=10)

    second = await asyncio.wait_for(received.get(), timeout=15)

    # Delivered on the new channel (the broker may have sent it on the old one first, then
    # requeued it when that one closed).
    assert second.body == b'{"n": 2}'
    await second.ack()
    with pytest.raises(BrokerError, match="channel is gone"):
        await first.ack()


async def test_a_delivery_left_unsettled_on_a_closed_channel_is_redelivered(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    queue = f"{amqp_settings.prefix}.requeued"
    publisher, received = await _consume(link, queue, prefetch=2)
    await publisher.publish("", queue, b'{"n": 1}', PROPERTIES, timeout=10)
    await publisher.publish("", queue, b'{"n": 2}', PROPERTIES, timeout=10)
    first = await asyncio.wait_for(received.get(), timeout=10)
    await asyncio.wait_for(received.get(), timeout=10)
    await first.ack()
    await first.ack()  # the channel closes with the second delivery unacked

    again = await asyncio.wait_for(received.get(), timeout=15)

    assert again.body == b'{"n": 2}'
    assert again.redelivered is True
    await again.ack()


async def test_a_consumer_whose_queue_is_deleted_declares_it_again_and_consumes(
    link: Link, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    queue = f"{amqp_settings.prefix}.deleted"
    publisher, received = await _consume(link, queue, prefetch=1, durable=True)
    try:
        broker.channel().queue_delete(queue)
        # The broker cancels the consumer; the channel declares the queue and consumes again.
        await wait_until_async(
            lambda: broker.counts(queue).consumers == 1, timeout=15, what="the consumer back"
        )
        await publisher.publish("", queue, b'{"n": 1}', PROPERTIES, timeout=10)

        message = await asyncio.wait_for(received.get(), timeout=10)

        assert message.body == b'{"n": 1}'
        await message.ack()
    finally:
        broker.channel().queue_delete(queue)


async def test_an_address_whose_name_does_not_resolve_is_skipped_for_the_next(
    amqp_settings: AmqpSettings,
) -> None:
    # pika reports a failed DNS lookup as a plain Exception, not as an AMQP or OS error.
    urls = f"amqp://guest:guest@no-such-host.invalid:5672/,{amqp_settings.url.get_secret_value()}"
    settings = amqp_settings.model_copy(update={"url": SecretStr(urls), "url_order": "listed"})
    link = Link(settings, name="test executor broker failover")

    await link.connect()
    try:
        assert not link.is_closed
        assert "no-such-host" not in link.url
    finally:
        await link.close()


async def test_no_address_answering_is_broker_unavailable(amqp_settings: AmqpSettings) -> None:
    settings = amqp_settings.model_copy(
        update={"url": SecretStr("amqp://guest:guest@no-such-host.invalid:5672/")}
    )

    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await Link(settings, name="test executor broker nowhere").connect()


async def test_a_scratch_channel_reads_counts_and_a_missing_queue_is_none(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    queue = f"{amqp_settings.prefix}.counted"
    publisher = await link.channel(confirms=True)
    await publisher.declare_queue(queue, exclusive=True)
    await publisher.publish("", queue, b"{}", PROPERTIES, timeout=10)

    async with link.scratch_channel() as channel:
        counts = await channel.inspect_queue(queue)
        assert counts == QueueCounts(messages=1, consumers=0)
        assert await channel.inspect_queue(f"{queue}.missing") is None  # the 404 closed it
        with pytest.raises(BrokerError):
            await channel.inspect_queue(queue)
    # Scratch channels are not replayed: the link holds only the publisher's.
    assert link.channels == [publisher]
    async with link.scratch_channel() as channel:
        assert await channel.exchange_exists("amq.direct")
    async with link.scratch_channel() as channel:
        assert not await channel.exchange_exists(f"{queue}.no-such-exchange")


async def test_get_takes_messages_unacked_in_order_then_none(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    queue = f"{amqp_settings.prefix}.got"
    publisher = await link.channel(confirms=True)
    await publisher.declare_queue(queue, exclusive=True)
    for n in range(3):
        await publisher.publish("", queue, f'{{"n": {n}}}'.encode(), PROPERTIES, timeout=10)

    async with link.scratch_channel() as channel:
        taken = [await channel.get(queue) for _ in range(4)]
        assert [m.body if m else None for m in taken] == [
            b'{"n": 0}',
            b'{"n": 1}',
            b'{"n": 2}',
            None,
        ]
        first = taken[0]
        assert first is not None
        assert first.message_id == "m-1"
        await first.ack()
    # Closing the channel gave back the two left unacked.
    async with link.scratch_channel() as channel:
        assert await channel.inspect_queue(queue) == QueueCounts(messages=2, consumers=0)
        assert await channel.purge(queue) == 2
        await channel.delete_queue(queue)
    async with link.scratch_channel() as channel:
        assert await channel.inspect_queue(queue) is None


async def test_a_closed_channel_is_forgotten_by_its_link(link: Link) -> None:
    # A reconnect reopens only the link's channels: a closed one stays closed.
    kept = await link.channel()
    gone = await link.channel()
    await gone.close()

    assert link.channels == [kept]
    assert gone.current is None


async def test_a_channel_closed_while_waiting_to_be_reopened_stays_closed(
    link: Link, amqp_settings: AmqpSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pika_link, "CHANNEL_REOPEN_S", 0.05)
    channel = await link.channel()
    queue = f"{amqp_settings.prefix}.clash"
    await channel.declare_queue(queue, exclusive=True)
    with pytest.raises(BrokerError):  # other arguments: the broker closes the channel (406)
        await channel.declare_queue(queue, exclusive=True, arguments={"x-max-length": 1})

    await channel.close()  # before the reopen the broker's close scheduled
    await asyncio.wait_for(asyncio.gather(*channel._tasks), timeout=10)

    assert channel.current is None


async def test_a_return_fails_only_the_publish_it_names(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    # A task and its cancel notice share a message id: a return names its exchange and
    # routing key too, and fails the publish that went there.
    channel = await link.channel(confirms=True)
    queue = f"{amqp_settings.prefix}.routed"
    await channel.declare_queue(queue, exclusive=True)

    routed, returned = await asyncio.gather(
        channel.publish("", queue, b"{}", PROPERTIES, timeout=10),
        channel.publish("", f"{queue}.nowhere", b"{}", PROPERTIES, timeout=10),
        return_exceptions=True,
    )

    assert routed is None
    assert isinstance(returned, PublishRejected)
    assert returned.reason == "unroutable"


async def test_a_request_the_broker_does_not_answer_is_a_broker_error(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pika_link, "REQUEST_TIMEOUT_S", 0.05)
    async with link.scratch_channel() as channel:
        with pytest.raises(BrokerError, match="no answer"):
            # Nothing answers a request whose answer pika never hands over: as a blocked
            # connection (a resource alarm) answers nothing.
            await channel._call(lambda _channel, _done: None)


async def test_an_if_unused_delete_of_a_consumed_queue_is_refused_and_keeps_it(
    link: Link, amqp_settings: AmqpSettings
) -> None:
    queue = f"{amqp_settings.prefix}.consumed"
    consumer = await link.channel()
    await consumer.declare_queue(queue, exclusive=True)

    async def ignore(_: Incoming) -> None:
        pass

    await consumer.consume(queue, ignore, consumer_tag="test")

    async with link.scratch_channel() as channel:
        assert not await channel.delete_queue(queue, if_unused=True)  # the 406 closed it
    async with link.scratch_channel() as channel:
        assert await channel.inspect_queue(queue) == QueueCounts(messages=0, consumers=1)
        assert await channel.delete_queue(queue)
