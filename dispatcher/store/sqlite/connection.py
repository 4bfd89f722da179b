"""The SQLite store's connection: opening the file, one lock, transactions and text encodings.

Every concern of ``SqliteTaskStore`` (tasks, results, fleet, schedules) is a subclass of
``SqliteConnection`` and reaches the database only through ``_read`` and ``_write``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from common import StoreError
from dispatcher.store.sqlite.schema import migrate

_T = TypeVar("_T")

_BUSY_TIMEOUT_MS = 10_000

# How columns other than plain numbers and text are stored, by name (no name is reused across
# tables with another meaning). Booleans are 0 or 1, which the records read as such.
_UUID_COLUMNS = frozenset({"task_id", "schedule_id", "last_task_id"})
_JSON_COLUMNS = frozenset(
    {"params", "result", "error", "task_types", "current_tasks", "params_schema", "options", "info"}
)
_TIME_COLUMNS = frozenset(
    {
        *("submitted_at", "queued_at", "started_at", "finished_at", "next_attempt_at", "eta"),
        *("cancel_requested_at", "progress_at", "last_seen_at", "stopped_at"),
        *("next_fire_at", "last_fire_at", "created_at", "updated_at"),
    }
)


class SqliteConnection:
    """One connection to the store's file, shared by threads through one lock."""

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
            self._db.create_function("wq_utc", 1, utc_key, deterministic=True)
            _use_wal(self._db)
            # FULL: a result is acked to the broker right after its commit, so the commit must
            # survive a power loss too; in WAL mode that costs one fsync per commit.
            # https://www.sqlite.org/pragma.html#pragma_synchronous
            self._db.execute("PRAGMA synchronous = FULL")
            migrate(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the task store at {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def ping(self) -> None:
        """Read from the database; ``StoreError`` when it cannot."""
        self._read("SELECT 1", ())

    def _write(self, work: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """Run ``work`` in one write transaction; ``durable=False`` commits without an fsync.

        A non-durable commit is for what can be lost to a power cut and recovered: a newer
        heartbeat or progress report replaces it, and a lost ``queued`` mark leaves the task
        ``submitted`` for the outbox (docs/reliability.md). It is durable from the next
        durable commit on, whose fsync of the write-ahead log covers the frames before it.
        """
        # BEGIN IMMEDIATE takes the write lock at once: a read inside ``work`` sees what no
        # other process can change before the commit.
        with self._lock:
            try:
                if not durable:
                    self._db.execute("PRAGMA synchronous = NORMAL")
                try:
                    return self._transaction(work)
                finally:
                    if not durable:
                        self._db.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise StoreError(f"task store write failed: {exc}") from exc

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            value = work(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            # A COMMIT can fail and leave the transaction open (a deferred constraint): the
            # connection is shared, so the next caller must not find it half-written.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return value

    def _read(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return fetch_values(self._db.execute(sql, params))
            except sqlite3.Error as exc:
                raise StoreError(f"task store read failed: {exc}") from exc


def fetch_values(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The rows left in ``cursor`` as plain values (see ``dispatcher.store.rows``)."""
    names = [column[0] for column in cursor.description]
    return [
        {name: _decoded(name, value) for name, value in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _decoded(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIME_COLUMNS:
        return datetime.fromisoformat(value) if value else None
    if column in _JSON_COLUMNS:
        return json.loads(value)
    if column in _UUID_COLUMNS:
        return UUID(value) if value else None
    return value


def utc_text(moment: datetime) -> str:
    """``moment`` as ISO text in UTC, microseconds always shown.

    Fixed width, so that comparing the text compares instants.
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def utc_key(value: str) -> str:
    """An ISO timestamp as fixed-width UTC text, so that text order is time order."""
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


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
