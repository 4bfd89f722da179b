"""The SQLite dialect: the file, one lock, transactions, durability and how values are stored.

One connection per store, shared by threads through one lock; writers in other processes wait
on the file's write lock. Times are stored as ISO text in UTC (fixed width, so that comparing
the text compares instants), JSON as text and ids in their text form; rows are decoded back by
column name.
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

from common import JsonValue, StoreError
from dispatcher.store.rows import JSON_COLUMNS
from dispatcher.store.sql.dialect import Params, Ran, Row
from dispatcher.store.sql.queries import Queries
from dispatcher.store.sqlite.queries import QUERIES
from dispatcher.store.sqlite.schema import migrate

_T = TypeVar("_T")

_BUSY_TIMEOUT_MS = 10_000

# How columns other than plain numbers, text and JSON are stored, by name (no name is reused
# across tables with another meaning). Booleans are 0 or 1, which the records read as such.
_UUID_COLUMNS = frozenset({"task_id", "schedule_id", "last_task_id"})
_TIME_COLUMNS = frozenset(
    {
        *("submitted_at", "queued_at", "started_at", "finished_at", "next_attempt_at", "eta"),
        *("cancel_requested_at", "progress_at", "last_seen_at", "stopped_at"),
        *("next_fire_at", "last_fire_at", "created_at", "updated_at"),
    }
)


class SqliteDialect:
    """One connection to the store's file (created and migrated if need be), behind one lock."""

    queries: Queries = QUERIES

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            # Rows written by older versions keep the offset they were given in; listing
            # compares instants, so it orders by this UTC key.
            self._connection.create_function("wq_utc", 1, utc_key, deterministic=True)
            _use_wal(self._connection)
            # FULL: a result is acked to the broker right after its commit, so the commit must
            # survive a power loss too; in WAL mode that costs one fsync per commit.
            # https://www.sqlite.org/pragma.html#pragma_synchronous
            self._connection.execute("PRAGMA synchronous = FULL")
            migrate(self._connection)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the task store at {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._connection.close()

    def ping(self) -> None:
        """Read from the database; ``StoreError`` when it cannot."""
        self.read("SELECT 1", {})

    def read(self, sql: str, params: Params) -> list[Row]:
        """The rows one statement returns, decoded."""
        with self._lock:
            try:
                return fetch_values(self._connection.execute(sql, _encoded(params)))
            except sqlite3.Error as exc:
                raise StoreError(f"task store read failed: {exc}") from exc

    def write(self, work: Callable[[_SqliteTransaction], _T], *, durable: bool = True) -> _T:
        """Run ``work`` in one write transaction; ``durable=False`` commits without an fsync.

        A non-durable commit is durable from the next durable commit on, whose fsync of the
        write-ahead log covers the frames before it.
        """
        # BEGIN IMMEDIATE takes the write lock at once: a read inside ``work`` sees what no
        # other process can change before the commit.
        with self._lock:
            try:
                if not durable:
                    self._connection.execute("PRAGMA synchronous = NORMAL")
                try:
                    return self._transaction(work)
                finally:
                    if not durable:
                        self._connection.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                raise StoreError(f"task store write failed: {exc}") from exc

    def reported(self, value: JsonValue) -> JsonValue:
        """``value`` as it is: SQLite text holds any string."""
        return value

    def _transaction(self, work: Callable[[_SqliteTransaction], _T]) -> _T:
        db = self._connection
        db.execute("BEGIN IMMEDIATE")
        try:
            value = work(_SqliteTransaction(db))
            db.execute("COMMIT")
        except BaseException:
            # A COMMIT can fail and leave the transaction open (a deferred constraint): the
            # connection is shared, so the next caller must not find it half-written.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return value


class _SqliteTransaction:
    """Statements inside ``SqliteDialect.write``'s transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def run(self, sql: str, params: Params) -> Ran:
        cursor = self._db.execute(sql, _encoded(params))
        rows = fetch_values(cursor) if cursor.description else []
        return Ran(cursor.rowcount, rows)  # known only once RETURNING rows are fetched

    def run_many(self, sql: str, params: Sequence[Params]) -> None:
        self._db.executemany(sql, [_encoded(p) for p in params])

    def run_each(self, sql: str, params: Sequence[Params]) -> list[list[Row]]:
        return [fetch_values(self._db.execute(sql, _encoded(p))) for p in params]


def fetch_values(cursor: sqlite3.Cursor) -> list[Row]:
    """The rows left in ``cursor`` as plain values (see ``dispatcher.store.rows``)."""
    names = [column[0] for column in cursor.description]
    return [
        {name: _decoded(name, value) for name, value in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _encoded(params: Params) -> dict[str, Any]:
    return {name: _stored(name, value) for name, value in params.items()}


def _stored(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in JSON_COLUMNS:
        return json.dumps(value)
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):  # for json_each: ``IN (SELECT value FROM json_each(?))``
        return json.dumps([_stored("", item) for item in value])
    return value


def _decoded(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _TIME_COLUMNS:
        return datetime.fromisoformat(value) if value else None
    if column in JSON_COLUMNS:
        return json.loads(value)
    if column in _UUID_COLUMNS:
        return UUID(value) if value else None
    return value


def utc_text(moment: datetime) -> str:
    """``moment`` as ISO text in UTC, microseconds always shown.

    Fixed width, so that comparing the text compares instants. A moment that has no UTC
    equivalent in ``datetime``'s range (year 9999 with a negative offset) keeps its offset.
    """
    try:
        return moment.astimezone(UTC).isoformat(timespec="microseconds")
    except OverflowError:
        return moment.isoformat(timespec="microseconds")


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
