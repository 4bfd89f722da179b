"""The async store adapter: calls in order on one thread, and marks written together."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from common import StoreError, TaskMessage
from dispatcher.store.records import TaskState
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite.connection import SqliteDialect
from dispatcher.store.threaded import StoreThread, ThreadedTaskStore

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class GatedStore(SqlTaskStore):
    """SQLite whose ``ping`` holds the store's thread until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(SqliteDialect(path))
        self.gate = threading.Event()
        self.marks: list[tuple[list[UUID], datetime]] = []
        self.fail_marks = False

    def ping(self) -> None:
        self.gate.wait(timeout=10)

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        if self.fail_marks:
            raise StoreError("disk full")
        self.marks.append((list(task_ids), at))
        super().mark_queued(task_ids, at)


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[tuple[GatedStore, ThreadedTaskStore]]:
    sync = GatedStore(tmp_path / "tasks.sqlite3")
    store = ThreadedTaskStore(sync)
    yield sync, store
    sync.gate.set()
    await store.close()


async def _submitted(store: ThreadedTaskStore, n: int) -> list[UUID]:
    tasks = [
        TaskMessage(task_id=uuid4(), task_type="count", params={"n": i}, submitted_at=T0)
        for i in range(n)
    ]
    return await store.add_submitted(tasks)


async def test_marks_made_while_the_thread_is_busy_are_written_together(
    gated: tuple[GatedStore, ThreadedTaskStore],
) -> None:
    sync, store = gated
    ids = await _submitted(store, 3)
    busy = asyncio.ensure_future(store.ping())
    await asyncio.sleep(0)  # its call is on the thread now: what follows queues behind it

    marks = [store.mark_queued([i], T0 + timedelta(seconds=n)) for n, i in enumerate(ids)]
    sync.gate.set()
    await asyncio.gather(busy, *marks)

    assert sync.marks == [(ids, T0 + timedelta(seconds=2))]  # one write, the latest time
    assert {r.state for r in await store.get_many(ids)} == {TaskState.QUEUED}


async def test_a_call_made_after_a_mark_sees_it_without_awaiting_it(
    gated: tuple[GatedStore, ThreadedTaskStore],
) -> None:
    sync, store = gated
    sync.gate.set()
    (task_id,) = await _submitted(store, 1)

    marked = store.mark_queued([task_id], T0)
    record = await store.get(task_id)

    assert record.state is TaskState.QUEUED
    await marked


async def test_a_mark_started_after_the_write_began_goes_in_the_next_one(
    gated: tuple[GatedStore, ThreadedTaskStore],
) -> None:
    sync, store = gated
    sync.gate.set()
    first, second = await _submitted(store, 2)

    await store.mark_queued([first], T0)
    await store.mark_queued([second], T0)
    await store.mark_queued([], T0)  # nothing to write

    assert sync.marks == [([first], T0), ([second], T0)]


async def test_a_failed_mark_write_fails_every_mark_in_it(
    gated: tuple[GatedStore, ThreadedTaskStore],
) -> None:
    sync, store = gated
    ids = await _submitted(store, 2)
    sync.fail_marks = True
    busy = asyncio.ensure_future(store.ping())
    await asyncio.sleep(0)  # its call is on the thread now: what follows queues behind it

    marks = [store.mark_queued([i], T0) for i in ids]
    sync.gate.set()
    await busy

    for mark in marks:
        with pytest.raises(StoreError):
            await mark
    assert {r.state for r in await store.get_many(ids)} == {TaskState.SUBMITTED}


class CountedAdds(GatedStore):
    """``GatedStore`` that also counts its ``add_submitted`` calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.adds: list[int] = []

    def add_submitted(
        self, tasks: Sequence[TaskMessage], idempotency_keys: Sequence[str | None] | None = None
    ) -> list[UUID]:
        self.adds.append(len(tasks))
        return super().add_submitted(tasks, idempotency_keys)


def _tasks(n: int) -> list[TaskMessage]:
    return [TaskMessage(task_id=uuid4(), task_type="count", submitted_at=T0) for _ in range(n)]


async def test_submits_queued_behind_a_busy_thread_share_one_write(tmp_path: Path) -> None:
    sync = CountedAdds(tmp_path / "tasks.sqlite3")
    store = ThreadedTaskStore(sync)
    busy = asyncio.ensure_future(store.ping())
    await asyncio.sleep(0)  # its call is on the thread now: what follows queues behind it
    first, second, third = _tasks(2), _tasks(1), _tasks(1)

    adds = [
        asyncio.ensure_future(store.add_submitted(first)),
        asyncio.ensure_future(store.add_submitted(second, ["k"])),
        asyncio.ensure_future(store.add_submitted(third, ["k"])),
    ]
    await asyncio.sleep(0)  # every add has joined the batch
    sync.gate.set()
    await busy
    ids = await asyncio.gather(*adds)

    assert sync.adds == [4]
    assert ids[0] == [t.task_id for t in first]
    assert ids[1] == ids[2] == [second[0].task_id]  # the key's first holder, as if in turn
    await store.close()


async def test_the_store_thread_hands_back_results_and_errors_in_call_order() -> None:
    thread = StoreThread("wq-store-test")
    ran: list[str] = []

    def fail() -> None:
        ran.append("fail")
        raise StoreError("disk full")

    def answer() -> int:
        ran.append("answer")
        return 42

    failing, answering = thread.call(fail), thread.call(answer)
    with pytest.raises(StoreError, match="disk full"):
        await failing
    assert await answering == 42
    assert ran == ["fail", "answer"]
    thread.shutdown()


async def test_a_caller_that_stops_waiting_leaves_the_thread_working(tmp_path: Path) -> None:
    thread = StoreThread("wq-store-test")
    gate = threading.Event()
    held = thread.call(lambda: gate.wait(timeout=10))
    abandoned = thread.call(lambda: "nobody reads this")
    abandoned.cancel()
    gate.set()
    assert await held is True
    assert await thread.call(lambda: "still serving") == "still serving"
    thread.shutdown()


async def test_shutting_the_store_thread_down_runs_what_was_queued_first() -> None:
    thread = StoreThread("wq-store-test")
    ran: list[int] = []
    for i in range(3):
        thread.submit(lambda i=i: ran.append(i))  # type: ignore[misc]
    thread.shutdown()
    assert ran == [0, 1, 2]
