"""The embedded task store: SQLite in WAL mode, one file, safe across processes.

``SqliteTaskStore`` is synchronous (the sync client uses it as is); ``ThreadedTaskStore``
gives it the async ``TaskStore`` interface by running every call on one dedicated thread, so
the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from common import Outcome, ResultMessage, StoreError, TaskErrorInfo, TaskMessage, TaskNotFound
from dispatcher.store import TaskRecord, TaskState

_T = TypeVar("_T")

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    submitted_at TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    executor TEXT,
    result TEXT,
    error TEXT,
    redelivered INTEGER NOT NULL DEFAULT 0,
    duplicate_results INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, submitted_at);
"""
_OPEN_STATES = (TaskState.SUBMITTED.value, TaskState.QUEUED.value)

# The first outcome wins: the WHERE clause makes a redelivered task's second result a no-op.
_RECORD_RESULT = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                   finished_at, executor, result, error, redelivered)
VALUES (?, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, executor = excluded.executor,
    result = excluded.result, error = excluded.error, redelivered = excluded.redelivered
WHERE tasks.state IN (?, ?)
"""


class SqliteTaskStore:
    """Synchronous SQLite task store; thread-safe through one lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the
            # last transactions (https://www.sqlite.org/wal.html#performance_considerations).
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the task store at {path}: {exc}") from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:
            raise StoreError(f"task store schema {version} is newer than this code understands")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def add_submitted(self, tasks: Sequence[TaskMessage]) -> None:
        """Record new tasks as submitted."""
        rows = [
            (
                str(t.task_id),
                t.task_type,
                json.dumps(t.params),
                TaskState.SUBMITTED.value,
                t.attempt,
                t.submitted_at.isoformat(),
            )
            for t in tasks
        ]
        self._write(
            lambda db: db.executemany(
                "INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Move submitted tasks to queued; a task that already has an outcome keeps it."""
        rows = [
            (TaskState.QUEUED.value, at.isoformat(), str(i), TaskState.SUBMITTED.value)
            for i in task_ids
        ]
        self._write(
            lambda db: db.executemany(
                "UPDATE tasks SET state = ?, queued_at = ? WHERE task_id = ? AND state = ?", rows
            )
        )

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        state = TaskState.SUCCEEDED if result.outcome is Outcome.SUCCEEDED else TaskState.FAILED
        row = (
            str(result.task_id),
            result.task_type,
            state.value,
            result.attempt,
            result.started_at.isoformat(),
            result.started_at.isoformat(),
            result.finished_at.isoformat(),
            result.executor,
            json.dumps(result.result),
            result.error.model_dump_json() if result.error else None,
            int(result.redelivered),
            *_OPEN_STATES,
        )

        def write(db: sqlite3.Connection) -> bool:
            if db.execute(_RECORD_RESULT, row).rowcount:
                return True
            db.execute(
                "UPDATE tasks SET duplicate_results = duplicate_results + 1 WHERE task_id = ?",
                (str(result.task_id),),
            )
            return False

        return self._write(write)

    def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""
        records = self.get_many([task_id])
        if not records:
            raise TaskNotFound(task_id)
        return records[0]

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        records: list[TaskRecord] = []
        ids = [str(i) for i in task_ids]
        for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT * FROM tasks WHERE task_id IN ({marks})", chunk)
            records.extend(_record(row) for row in rows)
        return records

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    value = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return value
            except sqlite3.Error as exc:
                raise StoreError(f"task store write failed: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, params)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"task store read failed: {exc}") from exc


class ThreadedTaskStore:
    """The async ``TaskStore`` over a ``SqliteTaskStore``, on one dedicated thread."""

    def __init__(self, store: SqliteTaskStore) -> None:
        self.sync = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wq-store")

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def add_submitted(self, tasks: Sequence[TaskMessage]) -> None:
        await self._call(self.sync.add_submitted, tasks)

    async def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        await self._call(self.sync.mark_queued, task_ids, at)

    async def record_result(self, result: ResultMessage) -> bool:
        return await self._call(self.sync.record_result, result)

    async def get(self, task_id: UUID) -> TaskRecord:
        return await self._call(self.sync.get, task_id)

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        return await self._call(self.sync.get_many, task_ids)

    async def close(self) -> None:
        await self._call(self.sync.close)
        self._thread.shutdown(wait=True)


def _record(row: sqlite3.Row) -> TaskRecord:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return TaskRecord(
        task_id=UUID(row["task_id"]),
        task_type=row["task_type"],
        params=json.loads(row["params"]),
        state=TaskState(row["state"]),
        attempt=row["attempt"],
        submitted_at=datetime.fromisoformat(row["submitted_at"]),
        queued_at=when(row["queued_at"]),
        started_at=when(row["started_at"]),
        finished_at=when(row["finished_at"]),
        executor=row["executor"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=TaskErrorInfo.model_validate_json(row["error"]) if row["error"] else None,
        redelivered=bool(row["redelivered"]),
        duplicate_results=row["duplicate_results"],
    )
