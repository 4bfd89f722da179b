"""The executor's set of cancelled tasks, and how catching up with the stream gives up."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from common import CancelNotice, TaskContext
from executor.cancellations import Cancellations


def _notice() -> CancelNotice:
    return CancelNotice(task_id=uuid4(), requested_at=datetime.now(UTC))


def test_a_noted_cancel_tells_the_running_attempt_and_later_ones() -> None:
    cancellations = Cancellations(executor="e")
    notice = _notice()
    running = TaskContext()
    with cancellations.tracking(notice.task_id, running):
        assert not running.cancelled
        cancellations.note(notice)
        assert running.cancelled
    later = TaskContext()
    with cancellations.tracking(notice.task_id, later):
        assert later.cancelled
    assert cancellations.is_cancelled(notice.task_id)
    assert not cancellations.is_cancelled(uuid4())


async def test_catching_up_gives_up_once_nothing_is_read_for_the_stall_time() -> None:
    cancellations = Cancellations(executor="e")
    with pytest.raises(TimeoutError):
        await cancellations._read_until(asyncio.Event(), stalled_after=0.05)


async def test_catching_up_keeps_waiting_while_the_stream_is_being_read() -> None:
    cancellations = Cancellations(executor="e")
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
