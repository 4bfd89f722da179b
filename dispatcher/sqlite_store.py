"""The embedded task store: SQLite in WAL mode, one file, safe across processes on one host.

``SqliteTaskStore`` is a synchronous ``SyncTaskStore``; ``dispatcher.stores.ThreadedTaskStore``
gives it the async interface.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from common import (
    ExecutorEvent,
    Heartbeat,
    Outcome,
    ProgressMessage,
    ResultMessage,
    RunningTask,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskErrorInfo,
    TaskMessage,
    TaskNotFound,
    TaskTypeInfo,
)
from dispatcher.store import ExecutorRecord, ScheduleRecord, TaskRecord, TaskState, TaskTypeRecord
from dispatcher.task_query import TaskQuery

_T = TypeVar("_T")

_SCHEMA_VERSION = 4
# Each step is idempotent, so a store left half-migrated by older code still opens.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: lambda db: _add_column(db, "tasks", "next_attempt_at", "TEXT"),
    3: lambda db: _add_idempotency_key(db),
    4: lambda db: _add_scheduling_centre(db),
}
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
    next_attempt_at TEXT,
    executor TEXT,
    result TEXT,
    error TEXT,
    redelivered INTEGER NOT NULL DEFAULT 0,
    duplicate_results INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, submitted_at);
"""
_OPEN_STATES = (TaskState.SUBMITTED.value, TaskState.QUEUED.value, TaskState.RETRYING.value)
_STATE_OF_OUTCOME = {
    Outcome.SUCCEEDED: TaskState.SUCCEEDED,
    Outcome.FAILED: TaskState.FAILED,
    Outcome.RETRYING: TaskState.RETRYING,
    Outcome.DEAD: TaskState.DEAD,
    Outcome.CANCELLED: TaskState.CANCELLED,
}

# The first final outcome wins, whichever attempt it comes from: the WHERE clause makes a
# result for a task that already has one (a redelivered task that ran twice) a no-op, and
# keeps a late "retrying" report of an earlier attempt from moving a later attempt back.
_RECORD_RESULT = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                   finished_at, next_attempt_at, executor, result, error, redelivered)
VALUES (?, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at,
    executor = excluded.executor, result = excluded.result, error = excluded.error,
    redelivered = excluded.redelivered
WHERE tasks.state IN (?, ?, ?)
    AND (excluded.state <> 'retrying' OR excluded.attempt >= tasks.attempt)
"""


_RECORD_REPLAY = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, queued_at)
VALUES (?, ?, ?, ?, ?, ?, NULL)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = 0
WHERE tasks.state = ?
"""


# Final tasks are left alone: a cancel cannot change an outcome. A scheduled task has never been
# published, so no executor needs telling: it is cancelled here and now. Every right-hand side
# reads the row as it was before the update.
_REQUEST_CANCEL = """
UPDATE tasks SET
    cancel_requested_at = COALESCE(cancel_requested_at, :at),
    finished_at = CASE WHEN state = 'scheduled' THEN :at ELSE finished_at END,
    state = CASE WHEN state = 'scheduled' THEN 'cancelled' ELSE state END
WHERE task_id = :task_id AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
"""

# Progress never moves backwards in time (reports travel unordered across executors and
# redeliveries), and a report that arrives after the outcome is dropped. Timestamps are
# stored as UTC with microseconds, so comparing the text compares the instants.
_RECORD_PROGRESS = """
UPDATE tasks SET progress = :percent, progress_note = :note, progress_at = :at
WHERE task_id = :task_id AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
    AND (progress_at IS NULL OR progress_at < :at)
"""


# Heartbeats may arrive out of order (several dispatchers, a backlog): the newest one wins.
# Times are stored in UTC so that the text comparison orders them.
_RECORD_HEARTBEAT = """
INSERT INTO executors (executor_id, host, pid, slots, task_types, started_at, last_seen_at,
                       stopped_at, current_tasks, processed, failed, cpu_percent, rss_bytes, info)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (executor_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, slots = excluded.slots,
    task_types = excluded.task_types, started_at = excluded.started_at,
    last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at,
    current_tasks = excluded.current_tasks, processed = excluded.processed,
    failed = excluded.failed, cpu_percent = excluded.cpu_percent,
    rss_bytes = excluded.rss_bytes, info = excluded.info
WHERE excluded.last_seen_at >= executors.last_seen_at
"""

_PUBLISH_TASK_TYPE = """
INSERT INTO task_types (task_type, params_schema, description, options, published_by, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (task_type) DO UPDATE SET
    params_schema = excluded.params_schema, description = excluded.description,
    options = excluded.options, published_by = excluded.published_by,
    updated_at = excluded.updated_at
"""


def _utc(moment: datetime) -> str:
    # Fixed width (microseconds always shown), so that comparing the text compares instants.
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_ADD_TASK = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                   priority, eta, schedule_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _task_row(
    task: TaskMessage,
    key: str | None,
    state: TaskState = TaskState.SUBMITTED,
    eta: datetime | None = None,
    schedule_id: UUID | None = None,
) -> tuple[object, ...]:
    return (
        str(task.task_id),
        task.task_type,
        json.dumps(task.params),
        state.value,
        task.attempt,
        task.submitted_at.isoformat(),
        key,
        task.priority,
        _utc(eta) if eta is not None else None,
        str(schedule_id) if schedule_id is not None else None,
    )


def _result_row(result: ResultMessage) -> tuple[object, ...]:
    state = _STATE_OF_OUTCOME[result.outcome]
    next_attempt_at = (
        result.finished_at + timedelta(seconds=result.retry_in_s)
        if result.retry_in_s is not None
        else None
    )
    return (
        str(result.task_id),
        result.task_type,
        state.value,
        result.attempt,
        result.started_at.isoformat(),
        result.started_at.isoformat(),
        result.finished_at.isoformat(),
        next_attempt_at.isoformat() if next_attempt_at else None,
        result.executor,
        json.dumps(result.result),
        result.error.model_dump_json() if result.error else None,
        int(result.redelivered),
        *_OPEN_STATES,
    )


_BUSY_TIMEOUT_MS = 10_000


def _use_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL mode; persistent, so usually already done.

    The switch needs an exclusive lock, and SQLite returns "database is locked" at once,
    without waiting out busy_timeout, when another process holds the file meanwhile (several
    dispatchers opening a new store together). Wait for it here instead, as long as
    busy_timeout would.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteTaskStore:
    """Synchronous SQLite task store; thread-safe through one lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Timestamps are ISO text with the offset they were given in; listing compares
            # instants, so it orders by this UTC key (fixed width, so text order is time order).
            self._db.create_function("wq_utc", 1, _utc_key, deterministic=True)
            _use_wal(self._db)
            # FULL: a result is acked to the broker right after its commit, so the commit must
            # survive a power loss too; in WAL mode that costs one fsync per commit.
            # https://www.sqlite.org/pragma.html#pragma_synchronous
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the task store at {path}: {exc}") from exc

    def _migrate(self) -> None:
        if self._schema_version() == _SCHEMA_VERSION:
            return  # nothing to write: a read-only store opens fine
        # One transaction, version re-read inside it: two processes opening a new or old
        # store at once migrate it once, and a crash half-way leaves it as it was.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._schema_version()
            if version > _SCHEMA_VERSION:
                raise StoreError(f"task store schema {version} is newer than this code knows")
            if version == 0:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
            for step in range(max(version, 1) + 1, _SCHEMA_VERSION + 1):
                _MIGRATIONS[step](self._db)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _schema_version(self) -> int:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        return int(version)

    def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted; returns the id recorded for each.

        A task whose idempotency key is already recorded is not added: its entry in the
        returned list is the id of the task that holds the key.
        """
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(tasks)
        rows = [_task_row(task, key) for task, key in zip(tasks, keys, strict=True)]
        return self._write(partial(_insert_once_per_key, rows=rows))

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

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks still ``submitted`` since before ``submitted_before``, oldest first."""
        # A released delayed task or a fired schedule's task waits its age from its eta.
        rows = self._read(
            "SELECT task_id, task_type, params, attempt, submitted_at, priority FROM tasks"
            " WHERE state = ? AND submitted_at < ? AND (eta IS NULL OR eta < ?)"
            " ORDER BY submitted_at LIMIT ?",
            (
                TaskState.SUBMITTED.value,
                submitted_before.isoformat(),
                _utc(submitted_before),
                limit,
            ),
        )
        return [_message(row) for row in rows]

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        (recorded,) = self.record_results([result])
        return recorded

    def record_results(self, results: Sequence[ResultMessage]) -> list[bool]:
        """``record_result`` for each, in order, in one transaction (one fsync for all)."""
        rows = [_result_row(result) for result in results]

        def write(db: sqlite3.Connection) -> list[bool]:
            recorded = []
            for row in rows:
                if db.execute(_RECORD_RESULT, row).rowcount:
                    recorded.append(True)
                    continue
                db.execute(
                    "UPDATE tasks SET duplicate_results = duplicate_results + 1 WHERE task_id = ?",
                    (row[0],),
                )
                recorded.append(False)
            return recorded

        return self._write(write)

    def record_replay(self, task: TaskMessage, at: datetime) -> None:
        """A dead task is submitted again as a new attempt (recorded even if it was unknown)."""
        row = (
            str(task.task_id),
            task.task_type,
            json.dumps(task.params),
            TaskState.SUBMITTED.value,
            task.attempt,
            task.submitted_at.isoformat(),
            TaskState.DEAD.value,
        )
        self._write(lambda db: db.execute(_RECORD_REPLAY, row))

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

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Upsert the executor's row unless a newer heartbeat is already recorded."""
        stopped = heartbeat.event is ExecutorEvent.STOPPED
        row = (
            heartbeat.executor,
            heartbeat.host,
            heartbeat.pid,
            heartbeat.slots,
            json.dumps([t.name for t in heartbeat.task_types]),
            _utc(heartbeat.started_at),
            _utc(heartbeat.sent_at),
            _utc(heartbeat.sent_at) if stopped else None,
            json.dumps([t.model_dump(mode="json") for t in heartbeat.current_tasks]),
            heartbeat.processed,
            heartbeat.failed,
            heartbeat.cpu_percent,
            heartbeat.rss_bytes,
            json.dumps({"version": heartbeat.version, "event": heartbeat.event.value}),
        )
        self._write(lambda db: db.execute(_RECORD_HEARTBEAT, row))

    def list_executors(self) -> list[ExecutorRecord]:
        """Every executor recorded, by id."""
        rows = self._read("SELECT * FROM executors ORDER BY executor_id", ())
        return [_executor(row) for row in rows]

    def publish_task_types(
        self, task_types: Sequence[TaskTypeInfo], *, published_by: str, at: datetime
    ) -> None:
        """Upsert the task types an executor published; the last publisher wins."""
        rows = [
            (
                t.name,
                json.dumps(t.params_schema),
                t.description,
                json.dumps(t.options),
                published_by,
                _utc(at),
            )
            for t in task_types
        ]
        self._write(lambda db: db.executemany(_PUBLISH_TASK_TYPE, rows))

    def list_task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, by name."""
        rows = self._read("SELECT * FROM task_types ORDER BY task_type", ())
        return [
            TaskTypeRecord(
                name=row["task_type"],
                params_schema=json.loads(row["params_schema"]),
                description=row["description"],
                options=json.loads(row["options"]),
                published_by=row["published_by"],
                updated_at=datetime.fromisoformat(row["updated_at"]),
            )
            for row in rows
        ]

    def request_cancel(self, task_id: UUID, at: datetime) -> bool:
        """Flag a task as cancel-requested (a scheduled one is cancelled); False if final."""
        params = {"task_id": str(task_id), "at": _utc(at)}
        return self._write(lambda db: db.execute(_REQUEST_CANCEL, params).rowcount > 0)

    def record_progress(self, report: ProgressMessage) -> bool:
        """Record the latest progress of an open task; False if final or older than the last."""
        params = {
            "task_id": str(report.task_id),
            "percent": report.percent,
            "note": report.note,
            "at": _utc(report.reported_at),
        }
        return self._write(lambda db: db.execute(_RECORD_PROGRESS, params).rowcount > 0)

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

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""
        where: list[str] = []
        params: list[object] = []
        if query.states:
            where.append(f"state IN ({','.join('?' * len(query.states))})")
            params.extend(state.value for state in query.states)
        if query.task_type is not None:
            where.append("task_type = ?")
            params.append(query.task_type)
        if query.submitted_after is not None:
            where.append("wq_utc(submitted_at) > ?")
            params.append(_utc_key(query.submitted_after.isoformat()))
        if query.submitted_before is not None:
            where.append("wq_utc(submitted_at) < ?")
            params.append(_utc_key(query.submitted_before.isoformat()))
        if query.after is not None:
            where.append("(wq_utc(submitted_at), task_id) < (?, ?)")
            params.extend(
                [_utc_key(query.after.submitted_at.isoformat()), str(query.after.task_id)]
            )
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT * FROM tasks {condition}"
            " ORDER BY wq_utc(submitted_at) DESC, task_id DESC LIMIT ?",
            [*params, query.limit],
        )
        return [_record(row) for row in rows]

    def ping(self) -> None:
        """Read from the database; ``StoreError`` when it cannot."""
        self._read("SELECT 1", ())

    def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record delayed tasks as scheduled with their etas; keys as in ``add_submitted``."""
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(tasks)
        rows = [
            _task_row(task, key, TaskState.SCHEDULED, eta)
            for task, eta, key in zip(tasks, etas, keys, strict=True)
        ]
        return self._write(partial(_insert_once_per_key, rows=rows))

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move due scheduled tasks to submitted (eta = ``now``) and return them."""

        def write(db: sqlite3.Connection) -> list[TaskMessage]:
            # BEGIN IMMEDIATE holds the write lock from the read on: no other process
            # can claim the same rows in between.
            cursor = db.execute(
                "SELECT task_id, task_type, params, attempt, submitted_at, priority FROM tasks"
                " WHERE state = ? AND eta <= ? ORDER BY eta LIMIT ?",
                (TaskState.SCHEDULED.value, _utc(now), limit),
            )
            cursor.row_factory = sqlite3.Row
            claimed = [_message(row) for row in cursor.fetchall()]
            db.executemany(
                "UPDATE tasks SET state = ?, eta = ? WHERE task_id = ? AND state = ?",
                [
                    (
                        TaskState.SUBMITTED.value,
                        _utc(now),
                        str(t.task_id),
                        TaskState.SCHEDULED.value,
                    )
                    for t in claimed
                ],
            )
            return claimed

        return self._write(write)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new schedule; ``ScheduleExists`` when the name is taken."""
        row = (
            str(schedule.schedule_id),
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.task_type,
            json.dumps(schedule.params),
            schedule.priority,
            int(schedule.paused),
            _utc(schedule.next_fire_at),
            _utc(schedule.created_at),
            _utc(schedule.updated_at),
        )

        def write(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM schedules WHERE name = ?", (schedule.name,)).fetchone():
                raise ScheduleExists(schedule.name)
            db.execute(
                "INSERT INTO schedules (schedule_id, name, cron, timezone, task_type, params,"
                " priority, paused, next_fire_at, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

        self._write(write)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        return [_schedule(row) for row in self._read("SELECT * FROM schedules ORDER BY name", ())]

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        rows = self._read("SELECT * FROM schedules WHERE name = ?", (name,))
        if not rows:
            raise ScheduleNotFound(name)
        return _schedule(rows[0])

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule, optionally moving its next fire time."""
        changes = (
            int(paused),
            _utc(next_fire_at) if next_fire_at is not None else None,
            _utc(at),
            name,
        )
        updated = self._write(
            lambda db: (
                db.execute(
                    "UPDATE schedules SET paused = ?, next_fire_at = coalesce(?, next_fire_at),"
                    " updated_at = ? WHERE name = ?",
                    changes,
                ).rowcount
            )
        )
        if not updated:
            raise ScheduleNotFound(name)
        return self.get_schedule(name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it submitted stay."""
        deleted = self._write(
            lambda db: db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount
        )
        if not deleted:
            raise ScheduleNotFound(name)

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next fire time has come, earliest first."""
        rows = self._read(
            "SELECT * FROM schedules WHERE paused = 0 AND next_fire_at <= ?"
            " ORDER BY next_fire_at LIMIT ?",
            (_utc(now), limit),
        )
        return [_schedule(row) for row in rows]

    def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        """Move the schedule on if it still holds the fire time read, and record its task."""
        fired_at = schedule.next_fire_at
        advance = (
            _utc(next_fire_at),
            _utc(fired_at),
            str(task.task_id),
            _utc(task.submitted_at),
            str(schedule.schedule_id),
            _utc(fired_at),
        )
        row = _task_row(task, idempotency_key, eta=fired_at, schedule_id=schedule.schedule_id)

        def write(db: sqlite3.Connection) -> bool:
            moved = db.execute(
                "UPDATE schedules SET next_fire_at = ?, last_fire_at = ?, last_task_id = ?,"
                " updated_at = ? WHERE schedule_id = ? AND next_fire_at = ? AND paused = 0",
                advance,
            ).rowcount
            if not moved:
                return False
            return _insert_once_per_key(db, [row]) == [task.task_id]

        return self._write(write)


def _add_column(db: sqlite3.Connection, table: str, column: str, declaration: str) -> None:
    columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if column not in columns:
        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _add_idempotency_key(db: sqlite3.Connection) -> None:
    _add_column(db, "tasks", "idempotency_key", "TEXT")
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_idempotency_key ON tasks (idempotency_key)"
        " WHERE idempotency_key IS NOT NULL"
    )


_V4_TASK_COLUMNS = (
    ("priority", "INTEGER NOT NULL DEFAULT 0"),
    ("eta", "TEXT"),
    ("schedule_id", "TEXT"),
    ("cancel_requested_at", "TEXT"),
    ("progress", "REAL"),
    ("progress_note", "TEXT"),
    ("progress_at", "TEXT"),
)
_V4_SCHEMA = """
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (eta) WHERE state = 'scheduled';
CREATE INDEX IF NOT EXISTS tasks_by_submitted ON tasks (submitted_at, task_id);
CREATE INDEX IF NOT EXISTS tasks_by_type ON tasks (task_type, submitted_at);
CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    task_type TEXT NOT NULL,
    params TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    next_fire_at TEXT NOT NULL,
    last_fire_at TEXT,
    last_task_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS schedules_due ON schedules (next_fire_at) WHERE paused = 0;
CREATE TABLE IF NOT EXISTS executors (
    executor_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    slots INTEGER NOT NULL,
    task_types TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    stopped_at TEXT,
    current_tasks TEXT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    cpu_percent REAL,
    rss_bytes INTEGER,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_types (
    task_type TEXT PRIMARY KEY,
    params_schema TEXT NOT NULL,
    description TEXT,
    options TEXT NOT NULL,
    published_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


def _add_scheduling_centre(db: sqlite3.Connection) -> None:
    """Schema v4: priority, eta, cancel and progress columns; schedules, executors, types."""
    for column, declaration in _V4_TASK_COLUMNS:
        _add_column(db, "tasks", column, declaration)
    for statement in filter(str.strip, _V4_SCHEMA.split(";")):
        db.execute(statement)


def _utc_key(value: str) -> str:
    """An ISO timestamp as fixed-width UTC text, so that text order is time order."""
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _insert_once_per_key(db: sqlite3.Connection, rows: list[tuple[object, ...]]) -> list[UUID]:
    # In the caller's transaction (BEGIN IMMEDIATE): concurrent submitters of one key
    # serialise, and the first holder of a key wins.
    recorded = []
    for row in rows:
        key = row[6]
        if key is not None:
            found = db.execute(
                "SELECT task_id FROM tasks WHERE idempotency_key = ?", (key,)
            ).fetchone()
            if found is not None:
                recorded.append(UUID(found[0]))
                continue
        db.execute(_ADD_TASK, row)
        recorded.append(UUID(str(row[0])))
    return recorded


def _message(row: sqlite3.Row) -> TaskMessage:
    return TaskMessage(
        task_id=UUID(row["task_id"]),
        task_type=row["task_type"],
        params=json.loads(row["params"]),
        attempt=row["attempt"],
        submitted_at=datetime.fromisoformat(row["submitted_at"]),
        priority=row["priority"],
    )


def _schedule(row: sqlite3.Row) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=UUID(row["schedule_id"]),
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        task_type=row["task_type"],
        params=json.loads(row["params"]),
        priority=row["priority"],
        paused=bool(row["paused"]),
        next_fire_at=datetime.fromisoformat(row["next_fire_at"]),
        last_fire_at=_when(row["last_fire_at"]),
        last_task_id=UUID(row["last_task_id"]) if row["last_task_id"] else None,
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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
        next_attempt_at=when(row["next_attempt_at"]),
        executor=row["executor"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=TaskErrorInfo.model_validate_json(row["error"]) if row["error"] else None,
        redelivered=bool(row["redelivered"]),
        duplicate_results=row["duplicate_results"],
        idempotency_key=row["idempotency_key"],
        priority=row["priority"],
        eta=when(row["eta"]),
        schedule_id=UUID(row["schedule_id"]) if row["schedule_id"] else None,
        cancel_requested_at=when(row["cancel_requested_at"]),
        progress=row["progress"],
        progress_note=row["progress_note"],
        progress_at=when(row["progress_at"]),
    )


def _executor(row: sqlite3.Row) -> ExecutorRecord:
    return ExecutorRecord(
        executor_id=row["executor_id"],
        host=row["host"],
        pid=row["pid"],
        slots=row["slots"],
        task_types=json.loads(row["task_types"]),
        started_at=datetime.fromisoformat(row["started_at"]),
        last_seen_at=datetime.fromisoformat(row["last_seen_at"]),
        stopped_at=datetime.fromisoformat(row["stopped_at"]) if row["stopped_at"] else None,
        current_tasks=[RunningTask.model_validate(t) for t in json.loads(row["current_tasks"])],
        processed=row["processed"],
        failed=row["failed"],
        cpu_percent=row["cpu_percent"],
        rss_bytes=row["rss_bytes"],
    )
