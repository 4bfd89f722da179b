"""The SQLite store's schema: ``PRAGMA user_version`` and idempotent migration steps.

To change the schema, raise ``SCHEMA_VERSION`` and add its step to ``_MIGRATIONS``; each step
must be idempotent, so that a store left half-migrated by older code still opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from common import StoreError

SCHEMA_VERSION = 7
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    2: lambda db: _add_column(db, "tasks", "next_attempt_at", "TEXT"),
    3: lambda db: _add_idempotency_key(db),
    4: lambda db: _add_scheduling_centre(db),
    5: lambda db: _add_retries_due(db),
    6: lambda db: _add_attempts(db),
    7: lambda db: _utc_submission_times(db),
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


def migrate(db: sqlite3.Connection) -> None:
    """Bring the schema of ``db`` (in autocommit mode) to ``SCHEMA_VERSION``.

    Raises:
        StoreError: the schema is newer than this code.
    """
    if schema_version(db) == SCHEMA_VERSION:
        return  # nothing to write: a read-only store opens fine
    # One transaction, version re-read inside it: two processes opening a new or old
    # store at once migrate it once, and a crash half-way leaves it as it was.
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)
        if version > SCHEMA_VERSION:
            raise StoreError(f"task store schema {version} is newer than this code knows")
        if version == 0:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
        for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            _MIGRATIONS[step](db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def schema_version(db: sqlite3.Connection) -> int:
    """The version recorded in the file, 0 for a new one."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return int(version)


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


# Schema v5: retries wait in the store, not in broker queues (the dispatcher releases them),
# and the starts of each attempt are counted (only a started delivery counts towards the limit).
_RETRIES_DUE = (
    "CREATE INDEX IF NOT EXISTS tasks_retry_due ON tasks (next_attempt_at) WHERE state = 'retrying'"
)


def _add_retries_due(db: sqlite3.Connection) -> None:
    db.execute(_RETRIES_DUE)
    _add_column(db, "tasks", "runs", "INTEGER NOT NULL DEFAULT 0")


# v6: one row per attempt of a task; a task's rows sit together under its key.
_ATTEMPTS = """
CREATE TABLE IF NOT EXISTS attempts (
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    executor TEXT,
    started_at TEXT,
    finished_at TEXT,
    outcome TEXT,
    error TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    cause TEXT,
    caused_at TEXT,
    PRIMARY KEY (task_id, attempt)
) WITHOUT ROWID
"""


def _add_attempts(db: sqlite3.Connection) -> None:
    """Schema v6: attempts, and the task queue of each task, schedule and executor."""
    db.execute(_ATTEMPTS)
    _add_column(db, "tasks", "queue", "TEXT NOT NULL DEFAULT 'default'")
    _add_column(db, "tasks", "cancel_requested_via", "TEXT")
    _add_column(db, "schedules", "queue", "TEXT NOT NULL DEFAULT 'default'")
    _add_column(db, "executors", "queues", "TEXT NOT NULL DEFAULT '[]'")
    # The retention sweep deletes finished tasks oldest first.
    db.execute(
        "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at)"
        " WHERE finished_at IS NOT NULL"
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


def _utc_submission_times(db: sqlite3.Connection) -> None:
    """Rewrite submission times written with another offset, or without microseconds, as
    the fixed-width UTC text the store writes now: the listing then orders and pages by the
    column itself, along its index, instead of sorting every row by a function of it."""

    def utc(value: str) -> str:
        instant = datetime.fromisoformat(value)
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC).isoformat(timespec="microseconds")

    db.create_function("wq_utc_text", 1, utc, deterministic=True)
    db.execute(
        "UPDATE tasks SET submitted_at = wq_utc_text(submitted_at)"
        " WHERE length(submitted_at) != 32 OR submitted_at NOT LIKE '%+00:00'"
    )
