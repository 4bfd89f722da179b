"""Opening a task store: SQLite or PostgreSQL by its location, and the async adapter over it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from pydantic import SecretStr

from common import Heartbeat, ProgressMessage, ResultMessage, TaskMessage, TaskTypeInfo
from dispatcher.postgres_store import PostgresTaskStore
from dispatcher.settings import is_postgres_url
from dispatcher.sqlite_store import SqliteTaskStore
from dispatcher.store import (
    ExecutorRecord,
    ScheduleRecord,
    SyncTaskStore,
    TaskRecord,
    TaskTypeRecord,
)
from dispatcher.task_query import TaskQuery

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


class ThreadedTaskStore:
    """The async ``TaskStore`` over a ``SyncTaskStore``, on one dedicated thread.

    One thread: the event loop never waits on the disk or the database, and calls reach the
    store in the order they were made.
    """

    def __init__(self, store: SyncTaskStore) -> None:
        self.sync = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wq-store")

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        return await self._call(self.sync.add_submitted, tasks, idempotency_keys)

    async def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        await self._call(self.sync.mark_queued, task_ids, at)

    async def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        return await self._call(self.sync.unconfirmed, submitted_before, limit)

    async def record_result(self, result: ResultMessage) -> bool:
        return await self._call(self.sync.record_result, result)

    async def record_replay(self, task: TaskMessage, at: datetime) -> None:
        await self._call(self.sync.record_replay, task, at)

    async def get(self, task_id: UUID) -> TaskRecord:
        return await self._call(self.sync.get, task_id)

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        return await self._call(self.sync.get_many, task_ids)

    async def close(self) -> None:
        await self._call(self.sync.close)
        self._thread.shutdown(wait=True)

    async def record_results(self, results: Sequence[ResultMessage]) -> list[bool]:
        return await self._call(self.sync.record_results, results)

    async def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        await self._call(self.sync.record_heartbeat, heartbeat)

    async def list_executors(self) -> list[ExecutorRecord]:
        return await self._call(self.sync.list_executors)

    async def publish_task_types(
        self, task_types: Sequence[TaskTypeInfo], *, published_by: str, at: datetime
    ) -> None:
        await self._call(
            lambda: self.sync.publish_task_types(task_types, published_by=published_by, at=at)
        )

    async def list_task_types(self) -> list[TaskTypeRecord]:
        return await self._call(self.sync.list_task_types)

    async def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        return await self._call(self.sync.list_tasks, query)

    async def ping(self) -> None:
        await self._call(self.sync.ping)

    async def request_cancel(self, task_id: UUID, at: datetime) -> bool:
        return await self._call(self.sync.request_cancel, task_id, at)

    async def record_progress(self, report: ProgressMessage) -> bool:
        return await self._call(self.sync.record_progress, report)

    async def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        return await self._call(self.sync.add_scheduled, tasks, etas, idempotency_keys)

    async def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        return await self._call(self.sync.claim_due, now, limit)

    async def add_schedule(self, schedule: ScheduleRecord) -> None:
        await self._call(self.sync.add_schedule, schedule)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self._call(self.sync.list_schedules)

    async def get_schedule(self, name: str) -> ScheduleRecord:
        return await self._call(self.sync.get_schedule, name)

    async def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        return await self._call(
            partial(self.sync.set_schedule_paused, paused=paused, next_fire_at=next_fire_at, at=at),
            name,
        )

    async def delete_schedule(self, name: str) -> None:
        await self._call(self.sync.delete_schedule, name)

    async def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        return await self._call(self.sync.due_schedules, now, limit)

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        return await self._call(
            self.sync.fire_schedule, schedule, next_fire_at, task, idempotency_key
        )
