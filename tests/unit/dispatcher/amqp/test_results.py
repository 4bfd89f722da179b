"""The results consumer's edge: a body it cannot use is dead-lettered at once, never left
unacked (holding a prefetch slot) nor acked by the next batch's ``multiple`` ack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs

from common import ResultMessage
from dispatcher.amqp import results
from dispatcher.amqp.results import ResultRecorder


class Delivery:
    """The parts of an incoming result the recorder reads, with its settlement kept."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.message_id = "m-1"
        self.settled: list[str] = []

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("nack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("reject" if not requeue else "requeue")


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
        await _recorder()(cast(AbstractIncomingMessage, delivery))
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
