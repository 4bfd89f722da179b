"""``Dispatcher.wait``: woken by the outcomes this process records, polling for the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID, uuid4

import pytest

from common import Outcome
from dispatcher import waiters
from dispatcher.service import Dispatcher
from dispatcher.store.records import TaskRecord, TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.unit.dispatcher.fakes import NOW, FakePublisher, succeeded


@pytest.fixture
def dispatcher(publisher: FakePublisher, store: ThreadedTaskStore) -> Dispatcher:
    return Dispatcher(publisher=publisher, store=store, clock=lambda: NOW)


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make re-reading the store so rare that only a wake-up can end a wait in time."""
    monkeypatch.setattr(waiters, "_WAIT_POLL_S", 60.0)


# Without a wake-up these waits would last their 30 s timeout (the store is re-read once a
# minute): a bound well under that fails them, and leaves a busy machine's commits (an fsync
# each) time to finish. 0.2 s was once too short in CI.
WOKEN_WITHIN_S = 5.0


async def test_wait_returns_at_once_for_a_finished_task(dispatcher: Dispatcher) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})
    await dispatcher.record_result(succeeded(task_id))

    record = await dispatcher.wait(task_id, timeout=2)

    assert record.state is TaskState.SUCCEEDED


class ObservedStore(ThreadedTaskStore):
    """The same store, letting the test act right after a ``get_many`` read."""

    def __init__(self, inner: ThreadedTaskStore) -> None:
        super().__init__(inner.sync)
        self.after_read: Callable[[], Awaitable[object]] | None = None
        self.read = asyncio.Event()

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        records = await super().get_many(task_ids)
        self.read.set()
        if self.after_read is not None:
            action, self.after_read = self.after_read, None
            await action()
        return records


@pytest.fixture
def observed(store: ThreadedTaskStore) -> ObservedStore:
    return ObservedStore(store)


@pytest.fixture
def observing(publisher: FakePublisher, observed: ObservedStore) -> Dispatcher:
    """A dispatcher over the observed store."""
    return Dispatcher(publisher=publisher, store=observed, clock=lambda: NOW)


@pytest.fixture
async def task_id(observing: Dispatcher) -> UUID:
    """A task submitted through ``observing``, with no outcome yet."""
    return await observing.submit("word_count", {"text": "a"})


async def _waiting(
    dispatcher: Dispatcher, observed: ObservedStore, task_id: UUID
) -> asyncio.Task[TaskRecord]:
    """A wait for ``task_id`` in the background, once it has seen the task unfinished."""
    waiter = asyncio.create_task(dispatcher.wait(task_id, timeout=30))
    await observed.read.wait()
    return waiter


@pytest.mark.usefixtures("no_polling")
async def test_wait_wakes_up_for_a_result_recorded_while_it_is_blocked(
    observing: Dispatcher, observed: ObservedStore, task_id: UUID
) -> None:
    waiter = await _waiting(observing, observed, task_id)

    await observing.record_result(succeeded(task_id))

    async with asyncio.timeout(2):
        record = await waiter
    assert (record.state, record.result) == (TaskState.SUCCEEDED, 2)


@pytest.mark.usefixtures("no_polling")
async def test_wait_does_not_miss_a_result_recorded_during_its_read(
    observing: Dispatcher, observed: ObservedStore, task_id: UUID
) -> None:
    observed.after_read = lambda: observing.record_result(succeeded(task_id))

    async with asyncio.timeout(WOKEN_WITHIN_S):
        assert (await observing.wait(task_id, timeout=30)).state is TaskState.SUCCEEDED


@pytest.mark.usefixtures("no_polling")
async def test_wait_takes_the_record_this_process_wrote_without_reading_it_again(
    observing: Dispatcher, observed: ObservedStore, task_id: UUID, store: ThreadedTaskStore
) -> None:
    reads = 0

    async def count_read() -> None:
        nonlocal reads
        reads += 1

    observed.after_read = count_read
    waiter = await _waiting(observing, observed, task_id)
    await observing.record_result(succeeded(task_id))

    async with asyncio.timeout(2):
        record = await waiter
    assert record == await store.get(task_id)
    assert reads == 1  # the initial check only


@pytest.mark.usefixtures("no_polling")
async def test_a_retrying_result_wakes_a_wait_without_ending_it(
    observing: Dispatcher, observed: ObservedStore, task_id: UUID
) -> None:
    waiter = await _waiting(observing, observed, task_id)
    observed.read.clear()
    retrying = succeeded(task_id).model_copy(
        update={"outcome": Outcome.RETRYING, "result": None, "retry_in_s": 1.0}
    )

    await observing.record_result(retrying)
    await observed.read.wait()  # woken, it read the store again
    assert not waiter.done()
    await observing.record_result(succeeded(task_id).model_copy(update={"attempt": 2}))

    async with asyncio.timeout(2):
        assert (await waiter).state is TaskState.SUCCEEDED


@pytest.mark.usefixtures("no_polling")
async def test_every_waiter_on_a_task_is_woken(
    observing: Dispatcher, observed: ObservedStore, task_id: UUID
) -> None:
    patient = await _waiting(observing, observed, task_id)
    with pytest.raises(TimeoutError):
        await observing.wait(task_id, timeout=0.01)

    await observing.record_result(succeeded(task_id))

    async with asyncio.timeout(WOKEN_WITHIN_S):
        assert (await patient).state is TaskState.SUCCEEDED


async def test_wait_raises_timeout_error_without_an_outcome(dispatcher: Dispatcher) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})

    with pytest.raises(TimeoutError):
        await dispatcher.wait(task_id, timeout=0.05)

    assert (await dispatcher.get(task_id)).state is TaskState.QUEUED


@pytest.mark.usefixtures("no_polling")
async def test_wait_for_an_unknown_id_returns_when_its_result_arrives(
    observing: Dispatcher, observed: ObservedStore
) -> None:
    # A task published by another producer is unknown until its result lands.
    task_id = uuid4()
    waiter = await _waiting(observing, observed, task_id)

    await observing.record_result(succeeded(task_id))

    async with asyncio.timeout(2):
        assert (await waiter).task_id == task_id
