"""The async task store: any ``SyncTaskStore`` on a thread of its own, with group commits."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from common import StartNotice, TaskMessage
from dispatcher.store.group_commit import GroupWrite, settle_soon
from dispatcher.store.protocol import SyncTaskStore, TaskStore
from dispatcher.store.rows import keys_for

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _forward(
    method: Callable[Concatenate[SyncTaskStore, _P], _T],
) -> Callable[Concatenate[ThreadedTaskStore, _P], Coroutine[Any, Any, _T]]:
    """An async method of ``ThreadedTaskStore`` that runs ``method`` on the store's thread."""
    name = method.__name__

    async def call(self: ThreadedTaskStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        bound: Callable[_P, _T] = getattr(self.sync, name)
        return await self._call(partial(bound, *args, **kwargs))

    call.__name__ = name
    call.__qualname__ = f"ThreadedTaskStore.{name}"
    call.__doc__ = getattr(TaskStore, name).__doc__
    return call


class StoreThread:
    """One thread that runs the store's calls, one at a time, in the order they were made.

    A ``ThreadPoolExecutor`` of one worker would do the same, with a ``concurrent.futures``
    future, a condition variable and a wrapping asyncio future per call; the store makes
    several calls per task, so this keeps to one queue entry and one loop wake-up each.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # A daemon: a process that exits without closing its store must not hang on it.
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        """Queue ``work``, which settles its own outcome, behind every call made before."""
        self._calls.put(work)

    def call(self, fn: Callable[[], _T]) -> asyncio.Future[_T]:
        """Queue ``fn``; the future gets what it returns or raises, on the calling loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:  # the caller gets it, as if it had called fn itself
                settle_soon(loop, future, exc)
            else:
                settle_soon(loop, future, result)

        self._calls.put(run)
        return future

    def shutdown(self) -> None:
        """Run every call queued so far, then stop the thread."""
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (work := self._calls.get()) is not None:
            work()


class ThreadedTaskStore:
    """The async ``TaskStore`` over a ``SyncTaskStore``, on one dedicated thread.

    One thread: the event loop never waits on the disk or the database, and calls reach the
    store in the order they were made, except that ``add_submitted``, ``mark_queued`` and
    ``record_start`` join a write of their kind already waiting for the thread (a group
    commit): a write may run earlier than calls made before it, never later than calls made
    after it.
    Every other method but ``close`` is its ``SyncTaskStore`` namesake run there;
    ``_forward`` keeps each one's signature, so mypy checks this class against
    ``TaskStore`` as if each were written out.
    """

    def __init__(self, store: SyncTaskStore) -> None:
        self.sync = store
        self._thread = StoreThread("wq-store")
        # Group commits: the two writes of every submit, shared by the submits that queue up.
        self._adds = GroupWrite(self._thread, self._add_submitted)
        self._marks = GroupWrite(self._thread, self._mark_queued)
        # Every task start sends a notice: one transaction for all those waiting.
        self._starts = GroupWrite(self._thread, self.sync.record_starts)

    async def _call(self, fn: Callable[[], _T]) -> _T:
        return await self._thread.call(fn)

    async def close(self) -> None:
        """Close the store, then stop its thread."""
        await self._call(self.sync.close)
        self._thread.shutdown()

    async def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted, before they are published; returns each one's id.

        Submits that wait for the store's thread together are written in one transaction.
        A task whose idempotency key is already recorded, by this call or an earlier one,
        is not added: its id in the result is the existing task's.
        """
        return await self._adds.add(
            list(zip(tasks, keys_for(tasks, idempotency_keys), strict=True))
        )

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> Awaitable[None]:
        """Record that the broker confirmed these tasks; never moves a task backwards.

        Queued on the store's thread before this returns, so any call made afterwards sees
        it. Marks made while an earlier one waits for the thread join it: one transaction
        (one fsync on SQLite) for all, stamped with the latest ``at`` among them.
        """
        return _written(self._marks.add([(task_id, at) for task_id in task_ids]))

    async def record_start(self, notice: StartNotice) -> int | None:
        """Count a start of an open attempt; its runs so far, or None if it was not counted."""
        (runs,) = await self._starts.add([notice])
        return runs

    def _add_submitted(self, items: list[tuple[TaskMessage, str | None]]) -> list[UUID]:
        return self.sync.add_submitted([task for task, _ in items], [key for _, key in items])

    def _mark_queued(self, items: list[tuple[UUID, datetime]]) -> list[None]:
        self.sync.mark_queued([task_id for task_id, _ in items], max(at for _, at in items))
        return [None] * len(items)

    unconfirmed = _forward(SyncTaskStore.unconfirmed)
    record_result = _forward(SyncTaskStore.record_result)
    record_results = _forward(SyncTaskStore.record_results)
    record_replay = _forward(SyncTaskStore.record_replay)
    retry_tasks = _forward(SyncTaskStore.retry_tasks)
    reschedule = _forward(SyncTaskStore.reschedule)
    get = _forward(SyncTaskStore.get)
    get_many = _forward(SyncTaskStore.get_many)
    attempts = _forward(SyncTaskStore.attempts)
    prune_tasks = _forward(SyncTaskStore.prune_tasks)
    count_prunable = _forward(SyncTaskStore.count_prunable)
    prune_executors = _forward(SyncTaskStore.prune_executors)
    list_tasks = _forward(SyncTaskStore.list_tasks)
    count_tasks = _forward(SyncTaskStore.count_tasks)
    activity = _forward(SyncTaskStore.activity)
    count_submitted = _forward(SyncTaskStore.count_submitted)
    ping = _forward(SyncTaskStore.ping)
    request_cancel = _forward(SyncTaskStore.request_cancel)
    record_progress = _forward(SyncTaskStore.record_progress)
    record_heartbeat = _forward(SyncTaskStore.record_heartbeat)
    list_executors = _forward(SyncTaskStore.list_executors)
    publish_task_types = _forward(SyncTaskStore.publish_task_types)
    list_task_types = _forward(SyncTaskStore.list_task_types)
    add_scheduled = _forward(SyncTaskStore.add_scheduled)
    claim_due = _forward(SyncTaskStore.claim_due)
    add_schedule = _forward(SyncTaskStore.add_schedule)
    list_schedules = _forward(SyncTaskStore.list_schedules)
    get_schedule = _forward(SyncTaskStore.get_schedule)
    set_schedule_paused = _forward(SyncTaskStore.set_schedule_paused)
    delete_schedule = _forward(SyncTaskStore.delete_schedule)
    update_schedule = _forward(SyncTaskStore.update_schedule)
    due_schedules = _forward(SyncTaskStore.due_schedules)
    fire_schedule = _forward(SyncTaskStore.fire_schedule)


async def _written(write: Awaitable[list[None]]) -> None:
    await write


if TYPE_CHECKING:

    def _is_a_task_store(store: ThreadedTaskStore) -> TaskStore:
        return store  # mypy fails here if a method is missing or its signature drifts
