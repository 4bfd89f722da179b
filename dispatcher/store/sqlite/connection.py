"""The SQLite dialect: the file, one lock, transactions, durability and how values are stored.

One connection per store, shared by threads through one lock; writers in other processes wait
on the file's write lock. Times are stored as ISO text in UTC (fixed width, so that comparing
the text compares instants), JSON as text and ids in their text form; rows are decoded back by
column name.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
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
# Free pages one ``reclaim_space`` gives back: a short step, however much was pruned.
_RECLAIM_PAGES = 1000
# A named parameter in a statement (none of the store's statements has a colon in a literal).
_NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")

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
            # A new file gives the pages that pruning frees back to the file system
            # (``reclaim_space``); on an existing file this takes effect only after a VACUUM,
            # and its free pages are reused by later writes instead.
            self._connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
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
                return fetch_values(_execute(self._connection, sql, params))
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

    def reclaim_space(self) -> None:
        """Give up to a thousand free pages (4 MiB at most) back to the file system."""
        with self._lock:
            try:
                # executescript steps the pragma to its end: execute() frees one page only.
                self._connection.executescript(f"PRAGMA incremental_vacuum({_RECLAIM_PAGES});")
            except sqlite3.Error as exc:
                raise StoreError(f"task store vacuum failed: {exc}") from exc

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
        cursor = _execute(self._db, sql, params)
        rows = fetch_values(cursor) if cursor.description else []
        return Ran(cursor.rowcount, rows)  # known only once RETURNING rows are fetched

    def run_many(self, sql: str, params: Sequence[Params]) -> None:
        numbered, fields = _positional(sql)
        self._db.executemany(numbered, [_encoded(p, fields) for p in params])

    def run_each(self, sql: str, params: Sequence[Params]) -> list[bool]:
        # Every set encoded before the first runs: measurably cheaper here than alternating
        # Python encoding with SQLite's work (docs/benchmarks.md, "The store").
        numbered, fields = _positional(sql)
        encoded = [_encoded(p, fields) for p in params]
        execute = self._db.execute
        return [bool(execute(numbered, values).fetchall()) for values in encoded]


def fetch_values(cursor: sqlite3.Cursor) -> list[Row]:
    """The rows left in ``cursor`` as plain values (see ``dispatcher.store.rows``)."""
    names = [column[0] for column in cursor.description]
    return [
        {name: _decoded(name, value) for name, value in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


@functools.lru_cache(maxsize=256)
def _positional(sql: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """``sql`` with its ``:name`` parameters numbered (``?1``), and each name with its kind.

    Tuples bind faster than mappings, and every write goes through here; the statements are
    a fixed set, so each is rewritten once. A name used twice is one number, encoded once.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"?{names.index(match[1]) + 1}"

    numbered = _NAMED.sub(number, sql)
    return numbered, tuple((name, _kind_of(name)) for name in names)


def _execute(db: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Cursor:
    numbered, fields = _positional(sql)
    return db.execute(numbered, _encoded(params, fields))


# How a parameter is stored: as the column it is named after is, or (any other name, such as
# ``before`` or ``ids``) by the type of its value.
_JSON, _TIME, _ID, _BY_TYPE = range(4)


def _kind_of(name: str) -> int:
    if name in JSON_COLUMNS:
        return _JSON
    if name in _TIME_COLUMNS:
        return _TIME
    return _ID if name in _UUID_COLUMNS else _BY_TYPE


def _encoded(params: Params, fields: tuple[tuple[str, int], ...]) -> list[Any]:
    # On every write's path, so one loop without a call per plain value.
    values: list[Any] = []
    for name, kind in fields:
        value = params[name]
        if value is None:
            pass
        elif kind == _JSON:
            value = json.dumps(value)
        elif kind == _TIME:
            value = utc_text(value)
        elif kind == _ID:
            value = str(value)
        elif (store := _STORED_AS.get(type(value))) is not None:
            value = store(value)
        values.append(value)
    return values


def _by_type(value: Any) -> Any:
    store = _STORED_AS.get(type(value))
    return value if store is None else store(value)


def _json_list(values: list[Any] | tuple[Any, ...]) -> str:
    # A list parameter, read with ``IN (SELECT value FROM json_each(?))``.
    return json.dumps([_by_type(value) for value in values])


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
    if moment.tzinfo is not UTC:
        with contextlib.suppress(OverflowError):
            moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


# How a parameter not named after a column is stored, by the exact type of its value (bool,
# a subclass of int, is bound as it is: 0 or 1).
_STORED_AS: dict[type, Callable[[Any], Any]] = {
    datetime: utc_text,
    UUID: str,
    list: _json_list,
    tuple: _json_list,
}


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
