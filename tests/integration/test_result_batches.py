"""The results consumer records what arrives together in one batch, and loses nothing.

Real broker, real queue; the recording function stands in for the store so that a test can
make one batch fail the way a store or a bug would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from uuid import UUID, uuid4

import pytest

from common import AmqpSettings, Outcome, ResultMessage, StoreError, encode
from common.pika_link import Channel, declare_results_queue, declare_topology, open_link
from dispatcher.amqp.results import ResultRecorder
from tests.integration.broker import Broker
from tests.integration.conftest import wait_until_async

pytestmark = pytest.mark.integration

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _result(task_id: UUID | None = None) -> ResultMessage:
    return ResultMessage(
        task_id=task_id or uuid4(),
        task_type="echo",
        outcome=Outcome.SUCCEEDED,
        executor="test",
        started_at=NOW,
        finished_at=NOW,
    )


class Recorder:
    """Records batches as the store would; ``fail`` decides, per batch, how it goes wrong."""

    def __init__(self) -> None:
        self.batches: list[list[UUID]] = []
        self.poison: set[UUID] = set()
        self.store_failures = 0

    async def __call__(self, results: Sequence[ResultMessage]) -> list[bool]:
        ids = [result.task_id for result in results]
        if self.store_failures:
            self.store_failures -= 1
            raise StoreError("disk full")
        if self.poison & set(ids):
            raise ValueError("a value the store cannot hold")
        self.batches.append(ids)
        return [True] * len(ids)

    @property
    def recorded(self) -> list[UUID]:
        return [task_id for batch in self.batches for task_id in batch]


@pytest.fixture
async def results_channel(amqp_settings: AmqpSettings) -> AsyncIterator[Channel]:
    """A channel that has declared the results queue, to consume it on."""
    async with open_link(amqp_settings, name="test result batches") as link:
        channel = await link.channel()
        await declare_topology(channel, amqp_settings.topology)
        await channel.set_qos(prefetch_count=64)
        await declare_results_queue(channel, amqp_settings.topology)
        yield channel


def _publish(broker: Broker, amqp_settings: AmqpSettings, results: list[ResultMessage]) -> None:
    for result in results:
        broker.publish("", amqp_settings.topology.results_queue, encode(result))


async def _consume(
    channel: Channel, recorder: Recorder, amqp_settings: AmqpSettings
) -> ResultRecorder:
    handler = ResultRecorder(
        recorder,
        max_body_bytes=amqp_settings.max_body_bytes,
        dead_queue=amqp_settings.topology.results_dead_queue,
        max_batch=16,
    )
    await channel.consume(amqp_settings.topology.results_queue, handler, consumer_tag="test")
    return handler


async def queue_empty(broker: Broker, queue: str) -> None:
    # Called once the consuming channel is closed: unacked results would be back in the queue.
    await wait_until_async(
        lambda: broker.counts(queue).messages == 0, timeout=20, what=f"{queue} drained"
    )


async def test_a_backlog_is_recorded_in_batches_in_order_and_acked(
    broker: Broker, amqp_settings: AmqpSettings, results_channel: Channel
) -> None:
    results = [_result() for _ in range(100)]
    _publish(broker, amqp_settings, results)
    recorder = Recorder()

    await _consume(results_channel, recorder, amqp_settings)
    await wait_until_async(lambda: len(recorder.recorded) == 100, timeout=20, what="100 results")
    await results_channel.close()  # every unacked result would return to the queue

    assert recorder.recorded == [result.task_id for result in results]
    assert max(len(batch) for batch in recorder.batches) <= 16
    assert len(recorder.batches) < 100  # a backlog is recorded many at a time
    await queue_empty(broker, amqp_settings.topology.results_queue)


async def test_a_result_the_store_cannot_hold_is_dead_lettered_alone(
    broker: Broker, amqp_settings: AmqpSettings, results_channel: Channel
) -> None:
    results = [_result() for _ in range(20)]
    recorder = Recorder()
    recorder.poison = {results[7].task_id}
    _publish(broker, amqp_settings, results)

    await _consume(results_channel, recorder, amqp_settings)
    await wait_until_async(lambda: len(recorder.recorded) == 19, timeout=20, what="19 results")
    await wait_until_async(
        lambda: broker.counts(amqp_settings.topology.results_dead_queue).messages == 1,
        timeout=20,
        what="the poison result in the dead-letter queue",
    )
    await results_channel.close()

    assert set(recorder.recorded) == {r.task_id for r in results} - recorder.poison
    dead = broker.get(amqp_settings.topology.results_dead_queue)
    assert dead is not None
    assert str(results[7].task_id).encode() in dead[1]
    await queue_empty(broker, amqp_settings.topology.results_queue)


async def test_a_batch_the_store_refuses_comes_back_and_is_recorded(
    broker: Broker, amqp_settings: AmqpSettings, results_channel: Channel
) -> None:
    results = [_result() for _ in range(5)]
    recorder = Recorder()
    recorder.store_failures = 1
    _publish(broker, amqp_settings, results)

    await _consume(results_channel, recorder, amqp_settings)
    await wait_until_async(
        lambda: set(recorder.recorded) == {r.task_id for r in results},
        timeout=20,
        what="every result recorded after the store came back",
    )
    await results_channel.close()

    assert recorder.store_failures == 0
    await queue_empty(broker, amqp_settings.topology.results_queue)
    assert broker.counts(amqp_settings.topology.results_dead_queue).messages == 0


async def test_results_arriving_one_at_a_time_are_each_recorded(
    broker: Broker, amqp_settings: AmqpSettings, results_channel: Channel
) -> None:
    recorder = Recorder()
    await _consume(results_channel, recorder, amqp_settings)

    for result in [_result() for _ in range(3)]:
        _publish(broker, amqp_settings, [result])
        await wait_until_async(
            partial(lambda task_id: task_id in recorder.recorded, result.task_id),
            timeout=20,
            what="a lone result recorded",
        )
    await asyncio.wait_for(results_channel.close(), timeout=10)

    await queue_empty(broker, amqp_settings.topology.results_queue)
