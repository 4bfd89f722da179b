"""Waiting for tasks' outcomes: the outcomes this process records wake their waiters at once.

An outcome recorded here is handed to its waiters as written, with no second read; one
recorded by another dispatcher process is found by re-reading the store now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID

from dispatcher.store.protocol import TaskStore
from dispatcher.store.records import TaskRecord

# How often ``wait`` re-reads the store for outcomes recorded by another dispatcher process;
# outcomes recorded by this process wake the waiter at once.
_WAIT_POLL_S = 0.25


@dataclass(slots=True, eq=False)
class _Watch:
    """What the waiters on one task id share: a wake-up, and the outcome this process wrote."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: TaskRecord | None = None
    waiters: int = 0

    def wake(self, record: TaskRecord | None) -> None:
        """A result for the task was handled; ``record`` is what it wrote (None: not read)."""
        if record is not None and record.state.is_final:
            self.outcome = record
        self.event.set()


class Waiters:
    """The tasks someone in this process waits for, and the wake-ups that end their waits."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        # One watch per awaited task id, shared by its waiters, removed with the last of them.
        self._watches: dict[UUID, _Watch] = {}

    def watched(self, task_ids: Iterable[UUID]) -> frozenset[UUID]:
        """Those of ``task_ids`` that someone waits for."""
        return frozenset(task_id for task_id in task_ids if task_id in self._watches)

    def wake(self, task_id: UUID, record: TaskRecord | None) -> None:
        """A result for the task was handled; ``record`` is what it wrote (None: not read)."""
        watch = self._watches.get(task_id)
        if watch is not None:
            watch.wake(record)

    async def wait(self, task_id: UUID, *, timeout: float) -> TaskRecord:
        """Wait until the task has an outcome; ``TimeoutError`` after ``timeout`` seconds."""
        watch = self._watches.setdefault(task_id, _Watch())
        watch.waiters += 1
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(task_id, watch)
        finally:
            watch.waiters -= 1
            if not watch.waiters:
                del self._watches[task_id]

    async def _wait(self, task_id: UUID, watch: _Watch) -> TaskRecord:
        while True:
            # Clear before reading: an outcome recorded during the read sets it again.
            watch.event.clear()
            # A task published by another producer is unknown until its result lands.
            records = await self._store.get_many([task_id])
            if records and records[0].state.is_final:
                return records[0]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WAIT_POLL_S):
                    await watch.event.wait()
            # Recorded by this process: the record it wrote, with no second read.
            if watch.outcome is not None:
                return watch.outcome
