"""The executor's set of cancelled tasks, and how catching up with the stream gives up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import cast
from uuid import uuid4

import pytest
from structlog.testing import capture_logs

from common import BrokerError, CancelNotice, TaskContext, Topology, encode
from common.codec import CANCEL_TYPE
from common.pika_link import ChannelClosed, Incoming
from executor import cancellations as cancellations_module
from executor.cancellations import Cancellations

LIMIT = 4096


def _notice() -> CancelNotice:
    return CancelNotice(task_id=uuid4(), requested_at=datetime.now(UTC))


class Notice:
    """The part of a stream message the reader uses."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.type = CANCEL_TYPE
        self.message_id = "m-1"
        self.delivery_tag = 1  # not a multiple of the ack batch: no ack is due


async def _read(cancellations: Cancellations, body: bytes) -> None:
    await cancellations._on_message(cast(Incoming, Notice(body)))


def test_a_noted_cancel_tells_the_running_attempt_and_later_ones() -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    notice = _notice()
    running = TaskContext()
    with cancellations.tracking(notice.task_id, 1, running):
        assert not running.cancelled
        cancellations.note(notice)
        assert running.cancelled
    later = TaskContext()
    with cancellations.tracking(notice.task_id, 1, later):
        assert later.cancelled
    assert cancellations.is_cancelled(notice.task_id, 1)
    assert not cancellations.is_cancelled(uuid4(), 1)


async def test_catching_up_gives_up_once_nothing_is_read_for_the_stall_time() -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    with pytest.raises(TimeoutError):
        await cancellations._read_until(asyncio.Event(), stalled_after=0.05)


async def test_catching_up_keeps_waiting_while_the_stream_is_being_read() -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    seen = asyncio.Event()

    async def read_slowly() -> None:
        # Reads keep coming for ten stall periods, then the marker arrives.
        for _ in range(10):
            await asyncio.sleep(0.02)
            cancellations._read += 1
        seen.set()

    reader = asyncio.create_task(read_slowly())
    await cancellations._read_until(seen, stalled_after=0.05)
    await reader
    assert seen.is_set()


async def test_a_notice_read_from_the_stream_is_noted() -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    notice = _notice()
    await _read(cancellations, encode(notice))
    assert cancellations.is_cancelled(notice.task_id, 1)


async def test_an_oversized_notice_is_skipped_unread() -> None:
    notice = _notice()
    body = encode(notice)
    cancellations = Cancellations(executor="e", max_body_bytes=len(body) - 1)
    with capture_logs() as logs:
        await _read(cancellations, body)
    assert not cancellations.is_cancelled(notice.task_id, 1)
    error = f"cancel notice body of {len(body)} bytes is over the limit"
    assert logs == [
        {
            "event": "cancel_notice_rejected",
            "message_id": "m-1",
            "error": error,
            "log_level": "warning",
        }
    ]
    assert cancellations._read == 1  # counted as read: catching up still sees progress


async def test_a_notice_of_exactly_the_limit_is_noted() -> None:
    notice = _notice()
    body = encode(notice)
    cancellations = Cancellations(executor="e", max_body_bytes=len(body))
    await _read(cancellations, body)
    assert cancellations.is_cancelled(notice.task_id, 1)


async def test_notices_nested_5_000_deep_are_skipped_and_the_next_is_still_noted() -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=1_000_000)
    deep = b'{"version": 1, "task_id": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    notice = _notice()

    with capture_logs() as logs:
        for _ in range(5):
            await _read(cancellations, deep)
        await _read(cancellations, encode(notice))

    assert [line["event"] for line in logs] == ["cancel_notice_rejected"] * 5 + [
        "task_cancel_received"
    ]
    assert cancellations.is_cancelled(notice.task_id, 1)


async def test_a_notice_that_trips_a_bug_is_skipped_and_reading_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    first, second = _notice(), _notice()
    noted = cancellations.note

    def note(notice: CancelNotice) -> None:
        if notice.task_id == first.task_id:
            raise OverflowError("a bug")
        noted(notice)

    monkeypatch.setattr(cancellations, "note", note)
    with capture_logs() as logs:
        await _read(cancellations, encode(first))
        await _read(cancellations, encode(second))

    assert [line["event"] for line in logs] == ["cancel_notice_rejected", "task_cancel_received"]
    assert cancellations.is_cancelled(second.task_id, 1)


class _FlakyStreamConnection:
    """A connection whose stream cannot be consumed the first ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    async def channel(self) -> _FlakyStreamConnection:
        return self

    async def set_qos(self, prefetch_count: int) -> None:
        pass

    async def declare_queue(self, name: str, **_: object) -> _FlakyStreamConnection:
        self.attempts += 1
        if self.attempts <= self.failures:
            # What the node answers while another client is still creating the stream.
            raise ChannelClosed(541, "INTERNAL_ERROR")
        return self

    async def consume(self, queue: str, callback: object, **_: object) -> str:
        return "tag"


async def test_a_stream_not_yet_created_is_consumed_again_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancellations_module, "_CONSUME_BACKOFF_S", (0.0, 0.0, 0.0))
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)
    connection = _FlakyStreamConnection(failures=2)
    stop = asyncio.Event()
    stop.set()  # stop at the marker: only the consuming is under test

    with capture_logs() as logs:
        caught_up = await cancellations.follow(
            connection,  # type: ignore[arg-type]
            Topology(),
            publish=_never_publish,
            timeout=1,
            stop=stop,
        )

    assert caught_up is False
    assert connection.attempts == 3
    assert [line["event"] for line in logs].count("cancellations_retrying") == 2


async def test_a_stream_that_never_comes_is_a_broker_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cancellations_module, "_CONSUME_BACKOFF_S", (0.0,))
    cancellations = Cancellations(executor="e", max_body_bytes=LIMIT)

    with pytest.raises(BrokerError, match="cannot read"):
        await cancellations.follow(
            _FlakyStreamConnection(failures=5),  # type: ignore[arg-type]
            Topology(),
            publish=_never_publish,
            timeout=1,
            stop=asyncio.Event(),
        )


async def _never_publish(exchange: str, routing_key: str, body: bytes, properties: object) -> None:
    raise AssertionError("stopped before the marker")


def test_a_cancel_covers_its_attempt_and_earlier_ones_not_a_retry_by_hand() -> None:
    cancellations = Cancellations(executor="e1", max_body_bytes=1_000_000)
    task_id = uuid4()
    cancellations.note(CancelNotice(task_id=task_id, requested_at=datetime.now(UTC), attempt=2))

    assert cancellations.is_cancelled(task_id, 1)
    assert cancellations.is_cancelled(task_id, 2)
    assert not cancellations.is_cancelled(task_id, 3)  # the next attempt, retried by hand
    retried = TaskContext(task_id=task_id, attempt=3)
    with cancellations.tracking(task_id, 3, retried):
        cancellations.note(CancelNotice(task_id=task_id, requested_at=datetime.now(UTC)))
        assert retried.cancelled  # a notice without an attempt cancels every attempt


def test_a_later_cancel_of_a_retried_attempt_reaches_it_while_it_runs() -> None:
    cancellations = Cancellations(executor="e1", max_body_bytes=1_000_000)
    task_id = uuid4()
    cancellations.note(CancelNotice(task_id=task_id, requested_at=datetime.now(UTC), attempt=1))
    running = TaskContext(task_id=task_id, attempt=2)

    with cancellations.tracking(task_id, 2, running):
        assert not running.cancelled
        cancellations.note(CancelNotice(task_id=task_id, requested_at=datetime.now(UTC), attempt=2))
        assert running.cancelled
