"""The task store's interfaces and records: one row of lifecycle per task id.

``TaskStore`` is the seam: the service depends on it. Each backend implements the synchronous
``SyncTaskStore`` (SQLite for one dispatcher, PostgreSQL for replicas), and
``dispatcher.stores.ThreadedTaskStore`` turns either into a ``TaskStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from common import JsonValue, ResultMessage, TaskErrorInfo, TaskMessage

if TYPE_CHECKING:
    from dispatcher.task_query import TaskQuery


class TaskState(StrEnum):
    """Where a task is in its life."""

    SUBMITTED = "submitted"  # recorded, publish not yet confirmed
    QUEUED = "queued"  # the broker confirmed the task message
    RETRYING = "retrying"  # an attempt failed; the next one waits in a retry queue
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"  # in the dead-letter queue: poison, retries exhausted or delivery limit

    @property
    def is_final(self) -> bool:
        """Whether the task has an outcome; only a replay moves a dead task on."""
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD)


class TaskRecord(BaseModel):
    """Everything the store knows about one task."""

    model_config = ConfigDict(frozen=True)

    task_id: UUID
    task_type: str
    params: dict[str, JsonValue]
    state: TaskState
    attempt: int
    submitted_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    executor: str | None = None
    result: JsonValue = None
    error: TaskErrorInfo | None = None
    redelivered: bool = False
    duplicate_results: int = 0
    idempotency_key: str | None = None


class TaskStore(Protocol):
    """Durable task records, keyed by task id."""

    async def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted, before they are published; returns each one's id.

        A task whose idempotency key is already recorded is not added: its id in the result
        is the existing task's.
        """

    async def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Record that the broker confirmed these tasks; never moves a task backwards."""

    async def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks recorded as submitted before ``submitted_before`` and never confirmed."""

    async def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome; False when the task already had one (a duplicate changes nothing)."""

    async def record_replay(self, task: TaskMessage, at: datetime) -> None:
        """Record, before it is published, that a dead task runs again as ``task.attempt``."""

    async def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist, in no particular order."""

    async def close(self) -> None:
        """Release the store's resources."""

    async def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""

    async def ping(self) -> None:
        """Reach the store (reconnecting if need be); ``StoreError`` when it cannot."""


class SyncTaskStore(Protocol):
    """``TaskStore`` with blocking calls: what a backend implements, and the sync client uses.

    Implementations are thread-safe, and every method means what its ``TaskStore`` namesake
    documents.
    """

    def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]: ...

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None: ...

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]: ...

    def record_result(self, result: ResultMessage) -> bool: ...

    def record_replay(self, task: TaskMessage, at: datetime) -> None: ...

    def get(self, task_id: UUID) -> TaskRecord: ...

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]: ...

    def close(self) -> None: ...

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]: ...

    def ping(self) -> None: ...
