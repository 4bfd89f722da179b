"""Opening a task store: SQLite or PostgreSQL by its location, and the async adapter over it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from pydantic import SecretStr

from dispatcher.postgres_store import PostgresTaskStore
from dispatcher.settings import is_postgres_url
from dispatcher.sqlite_store import SqliteTaskStore
from dispatcher.store import SyncTaskStore, TaskStore

_P = ParamSpec("_P")
_T = TypeVar("_T")


def open_store(spec: str | Path | SecretStr) -> SyncTaskStore:
    """The store at ``spec``: PostgreSQL for a ``postgresql://`` URL, else an SQLite file.

    Raises:
        StoreError: the store cannot be opened or migrated.
    """
    location = spec.get_secret_value() if isinstance(spec, SecretStr) else spec
    if isinstance(location, str) and is_postgres_url(location):
        return PostgresTaskStore(location)
    return SqliteTaskStore(location)


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


@dataclass(slots=True, eq=False)
class _Marks:
    """Tasks to mark queued in one write, and the future of that write."""

    at: datetime
    done: Future[None] = field(default_factory=Future)
    task_ids: list[UUID] = field(default_factory=list)


class ThreadedTaskStore:
    """The async ``TaskStore`` over a ``SyncTaskStore``, on one dedicated thread.

    One thread: the event loop never waits on the disk or the database, and calls reach the
    store in the order they were made. Every method but ``close`` is its ``SyncTaskStore``
    namesake run there; ``_forward`` keeps each one's signature, so mypy checks this class
    against ``TaskStore`` as if each were written out.
    """

    def __init__(self, store: SyncTaskStore) -> None:
        self.sync = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wq-store")
        # The marks that wait for their write to start; later ones join them (group commit).
        self._marks: _Marks | None = None
        self._marks_lock = threading.Lock()

    async def _call(self, fn: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def close(self) -> None:
        """Close the store, then stop its thread."""
        await self._call(self.sync.close)
        self._thread.shutdown(wait=True)

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> asyncio.Future[None]:
        """Record that the broker confirmed these tasks; never moves a task backwards.

        Queued on the store's thread before this returns, so any call made afterwards sees
        it. Marks made while an earlier one waits for the thread join it: one transaction
        (one fsync on SQLite) for all, stamped with the latest ``at`` among them.
        """
        if not task_ids:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        with self._marks_lock:
            marks = self._marks
            if marks is None:
                marks = self._marks = _Marks(at)
                self._thread.submit(self._write_marks, marks)
            marks.task_ids.extend(task_ids)
            marks.at = max(marks.at, at)
        return asyncio.wrap_future(marks.done)

    def _write_marks(self, marks: _Marks) -> None:
        # On the store's thread: from here on, new marks start the next write.
        with self._marks_lock:
            self._marks = None
        if not marks.done.set_running_or_notify_cancel():
            return
        try:
            self.sync.mark_queued(marks.task_ids, marks.at)
        except BaseException as exc:
            marks.done.set_exception(exc)
        else:
            marks.done.set_result(None)

    add_submitted = _forward(SyncTaskStore.add_submitted)
    unconfirmed = _forward(SyncTaskStore.unconfirmed)
    record_result = _forward(SyncTaskStore.record_result)
    record_results = _forward(SyncTaskStore.record_results)
    record_replay = _forward(SyncTaskStore.record_replay)
    get = _forward(SyncTaskStore.get)
    get_many = _forward(SyncTaskStore.get_many)
    list_tasks = _forward(SyncTaskStore.list_tasks)
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
    due_schedules = _forward(SyncTaskStore.due_schedules)
    fire_schedule = _forward(SyncTaskStore.fire_schedule)


if TYPE_CHECKING:

    def _is_a_task_store(store: ThreadedTaskStore) -> TaskStore:
        return store  # mypy fails here if a method is missing or its signature drifts
