"""Store writes that wait for the store's thread together, written as one transaction.

A call joins the batch that has not started yet, or starts one and queues it on the thread.
When the thread gets to the batch it writes everything that joined meanwhile in one call of
the sync store, so writes queued behind a commit (an fsync on SQLite) share the next one
instead of paying one each. A call's place in the thread's order is fixed when it is made:
joining a batch queued earlier only ever moves a write earlier, never later.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

_I = TypeVar("_I")
_R = TypeVar("_R")


class Thread(Protocol):
    """Where the writes run: one call at a time, in the order they were submitted."""

    def submit(self, work: Callable[[], None]) -> None: ...


@dataclass(slots=True, eq=False)
class _Caller(Generic[_R]):
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[_R]]
    start: int
    end: int


@dataclass(slots=True, eq=False)
class _Batch(Generic[_I, _R]):
    items: list[_I] = field(default_factory=list)
    callers: list[_Caller[_R]] = field(default_factory=list)


class GroupWrite(Generic[_I, _R]):
    """One kind of store write, batched across callers: ``write`` maps items to results."""

    def __init__(self, thread: Thread, write: Callable[[list[_I]], list[_R]]) -> None:
        self._thread = thread
        self._write = write
        self._lock = threading.Lock()
        self._waiting: _Batch[_I, _R] | None = None

    def add(self, items: Sequence[_I]) -> asyncio.Future[list[_R]]:
        """Queue ``items`` for writing now; the future gets their results, in order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[_R]] = loop.create_future()
        if not items:
            future.set_result([])
            return future
        with self._lock:
            batch = self._waiting
            if batch is None:
                batch = self._waiting = _Batch()
                self._thread.submit(partial(self._run, batch))
            start = len(batch.items)
            batch.items.extend(items)
            batch.callers.append(_Caller(loop, future, start, len(batch.items)))
        return future

    def _run(self, batch: _Batch[_I, _R]) -> None:
        # On the store's thread: from here on, new calls start the next batch.
        with self._lock:
            self._waiting = None
        try:
            results = self._write(batch.items)
        except BaseException as exc:  # every caller gets it, as if each had written alone
            for caller in batch.callers:
                settle_soon(caller.loop, caller.future, exc)
            return
        for caller in batch.callers:
            settle_soon(caller.loop, caller.future, results[caller.start : caller.end])


def settle_soon(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], outcome: object
) -> None:
    """From another thread: give ``future`` its result, or its exception, on ``loop``."""

    def settle() -> None:
        if future.done():  # cancelled by its caller meanwhile
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: no one waits
        loop.call_soon_threadsafe(settle)
