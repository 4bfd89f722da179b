"""The results consumer's edge: a body it cannot use is dead-lettered at once, never left
unacked (holding a prefetch slot) nor acked by the next batch's ``multiple`` ack."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from common import Outcome, ResultMessage, StoreError
from common.pika_link import Incoming
from dispatcher.amqp import results
from dispatcher.amqp.results import ResultRecorder


class Delivery:
    """The parts of an incoming result the recorder reads, with its settlement kept."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.message_id = "m-1"
        self.settled: list[str] = []
        self.done = asyncio.Event()

    async def ack(self, multiple: bool = False) -> None:
        self._settle("ack")

    async def nack(self, requeue: bool = True) -> None:
        self._settle("nack")

    async def reject(self, requeue: bool = False) -> None:
        self._settle("reject" if not requeue else "requeue")

    def _settle(self, how: str) -> None:
        self.settled.append(how)
        self.done.set()


async def _never(results: Sequence[ResultMessage], **_: Any) -> list[Any]:
    raise AssertionError("nothing here may reach the store")


def _recorder() -> ResultRecorder:
    return ResultRecorder(
        _never,
        max_body_bytes=1_000_000,
        dead_queue="wq.results.dead",
        max_batch=10,
    )


async def _deliver(body: bytes) -> tuple[Delivery, list[str]]:
    delivery = Delivery(body)
    with capture_logs() as logs:
        await _recorder()(cast(Incoming, delivery))
    return delivery, [line["event"] for line in logs]


async def test_a_result_nested_100_000_deep_is_dead_lettered_at_once() -> None:
    body = b'{"version": 1, "result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    delivery, events = await _deliver(body)

    assert delivery.settled == ["reject"]
    assert events == ["result_rejected"]


async def test_a_result_that_trips_a_bug_in_decoding_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def overflowing(body: bytes) -> ResultMessage:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(results, "decode_result", overflowing)

    delivery, events = await _deliver(b'{"version": 1}')

    assert delivery.settled == ["reject"]
    assert events == ["result_rejected"]


def _result_body() -> bytes:
    now = datetime.now(UTC)
    return (
        ResultMessage(
            task_id=uuid4(),
            task_type="t",
            outcome=Outcome.SUCCEEDED,
            executor="e1",
            started_at=now,
            finished_at=now,
        )
        .model_dump_json()
        .encode()
    )


async def test_a_store_that_hangs_makes_the_recorder_stalled_until_it_moves() -> None:
    now = [1000.0]
    entered, release = asyncio.Event(), asyncio.Event()

    async def hanging(batch: Sequence[ResultMessage]) -> list[bool]:
        entered.set()
        await release.wait()
        return [True] * len(batch)

    recorder = ResultRecorder(
        hanging, max_body_bytes=1_000_000, dead_queue="d", max_batch=10, clock=lambda: now[0]
    )
    delivery = Delivery(_result_body())
    now[0] += 100
    assert not recorder.stalled(30.0)  # nothing received: nothing can be stuck

    await recorder(cast(Incoming, delivery))
    await entered.wait()
    now[0] += 29
    assert not recorder.stalled(30.0)
    now[0] += 2
    assert recorder.stalled(30.0)

    release.set()
    await delivery.done.wait()
    assert delivery.settled == ["ack"]
    assert not recorder.stalled(30.0)


async def test_a_broken_store_settles_its_batch_and_is_not_stalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(batch: Sequence[ResultMessage]) -> list[bool]:
        raise StoreError("disk full")

    monkeypatch.setattr(results, "_STORE_RETRY_DELAY_S", 0.0)
    recorder = ResultRecorder(broken, max_body_bytes=1_000_000, dead_queue="d", max_batch=10)
    delivery = Delivery(_result_body())

    await recorder(cast(Incoming, delivery))
    await delivery.done.wait()

    assert delivery.settled == ["nack"]
    assert not recorder.stalled(0.0)
