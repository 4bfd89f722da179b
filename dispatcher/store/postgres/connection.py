"""The PostgreSQL dialect: connecting, one lock, reconnects, transactions and stored values.

One connection per store, shared by threads through one lock. Concurrent replicas agree through
row locks rather than one write lock: ``INSERT ... ON CONFLICT`` waits for a competing
transaction on the same row and re-checks its condition against the committed row (READ
COMMITTED), so the first final outcome and the first holder of an idempotency key win however
many replicas race. https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
Values keep their native types (uuid, timestamptz, jsonb, arrays).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from common import JsonValue, StoreError, redact_url
from common.logging import get_logger
from dispatcher.store.postgres.queries import QUERIES
from dispatcher.store.postgres.schema import SCHEMA_VERSION, migrate
from dispatcher.store.rows import JSON_COLUMNS
from dispatcher.store.sql.dialect import Params, Ran, Row
from dispatcher.store.sql.queries import Queries

_T = TypeVar("_T")
Connection = psycopg.Connection[DictRow]

log = get_logger(__name__)

# Unless the URL says otherwise: fail fast on an unreachable server, and name the client in
# pg_stat_activity.
_CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "wq-dispatcher"}
# No statement of the store runs for seconds; one that waits this long is stuck (a lock held
# by a forgotten session, a server in trouble) and fails as a StoreError instead of hanging
# the dispatcher. A URL's ``options=-c statement_timeout=...`` takes precedence.
_STATEMENT_TIMEOUT = "30s"


class PostgresDialect:
    """One connection to the server, shared by threads through one lock; reconnects.

    The tables live in the first schema of the connection's ``search_path``; pick another
    with ``?options=-csearch_path%3Dname`` in the URL. Opening it migrates the schema.
    """

    queries: Queries = QUERIES

    def __init__(self, url: str) -> None:
        self.url = _redacted(url)  # safe to show: the password is masked
        self._conninfo = url
        self._lock = threading.Lock()
        self._closed = False
        self._connection = self._connect()
        try:
            migrated_from = migrate(self._connection)
        except psycopg.Error as exc:
            self._connection.close()
            raise StoreError(f"cannot migrate the task store at {self.url}: {exc}") from exc
        except BaseException:
            self._connection.close()
            raise
        if migrated_from is not None:
            log.info("task_store_migrated", from_version=migrated_from, to_version=SCHEMA_VERSION)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._closed = True
            self._connection.close()

    def ping(self) -> None:
        """Query the server (reconnecting if the connection dropped); ``StoreError`` if not."""
        self.read("SELECT 1", {})

    def read(self, sql: str, params: Params) -> list[Row]:
        """The rows one statement returns."""
        return self._run("read", lambda db: db.execute(sql, _encoded(params)).fetchall())

    def write(self, work: Callable[[_PostgresTransaction], _T], *, durable: bool = True) -> _T:
        """Run ``work`` in one transaction; ``durable=False`` commits without waiting for WAL.

        The server flushes a non-durable commit within a few hundred milliseconds, and any
        later durable commit flushes it first.
        """

        def transaction(db: Connection) -> _T:
            with db.transaction():
                if not durable:
                    db.execute("SET LOCAL synchronous_commit = off")
                return work(_PostgresTransaction(db))

        return self._run("write", transaction)

    def reported(self, value: JsonValue) -> JsonValue:
        """``value`` with NUL replaced: PostgreSQL text and jsonb cannot hold it."""
        return without_nul(value)

    def reclaim_space(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum makes deleted rows' space reusable."""

    def _connect(self) -> Connection:
        try:
            given = conninfo_to_dict(self._conninfo)
            defaults = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
            conninfo = make_conninfo(self._conninfo, **defaults)
            db = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            # "from None": libpq quotes a malformed URL, password included, in its message.
            raise StoreError(
                f"cannot open the task store at {self.url}: {_mask(str(exc), self._conninfo)}"
            ) from None
        try:
            # The row-lock reasoning of the store needs READ COMMITTED whatever the server
            # default; UTC keeps the timestamps read back independent of the server's TimeZone.
            db.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            db.execute("SET TIME ZONE 'UTC'")
            if "statement_timeout" not in str(given.get("options") or ""):
                db.execute(f"SET statement_timeout = '{_STATEMENT_TIMEOUT}'")
        except psycopg.Error as exc:
            db.close()
            raise StoreError(f"cannot open the task store at {self.url}: {exc}") from exc
        return db

    def _run(self, what: str, work: Callable[[Connection], _T]) -> _T:
        with self._lock:
            if self._connection.closed:
                if self._closed:
                    raise StoreError("the task store is closed")
                # The server restarted or the network dropped: the call that noticed failed
                # (its caller retries, e.g. a result is requeued); this one reconnects.
                self._connection = self._connect()
            try:
                return work(self._connection)
            except psycopg.Error as exc:
                raise StoreError(f"task store {what} failed: {exc}") from exc


class _PostgresTransaction:
    """Statements inside ``PostgresDialect.write``'s transaction."""

    def __init__(self, db: Connection) -> None:
        self._db = db

    def run(self, sql: str, params: Params) -> Ran:
        cursor = self._db.execute(sql, _encoded(params))
        return Ran(cursor.rowcount, cursor.fetchall() if cursor.description else [])

    def run_many(self, sql: str, params: Sequence[Params]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(sql, [_encoded(p) for p in params])

    def run_each(self, sql: str, params: Sequence[Params]) -> list[bool]:
        # One pipelined round trip for all, each statement's rows in its own result set: the
        # statement returns the rows it changed (``RETURNING``), and a row back means a change.
        changed: list[bool] = []
        with self._db.cursor() as cursor:
            cursor.executemany(sql, [_encoded(p) for p in params], returning=True)
            for _ in params:
                changed.append(cursor.fetchone() is not None)
                cursor.nextset()
        return changed


def _encoded(params: Params) -> dict[str, Any]:
    return {
        name: Jsonb(value) if name in JSON_COLUMNS and value is not None else value
        for name, value in params.items()
    }


def without_nul(value: JsonValue) -> JsonValue:
    """``value`` with every NUL character in its strings (keys too) replaced by U+FFFD.

    PostgreSQL text and jsonb cannot hold NUL: what executors report is stored with U+FFFD in
    its place rather than refused, since a refused result would be requeued forever.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key.replace("\x00", "\ufffd"): without_nul(item) for key, item in value.items()}
    return value


def _redacted(url: str) -> str:
    try:
        return redact_url(url)
    except ValueError:  # urllib cannot parse it (a bad IPv6 host): show none of it
        return "<unparsable PostgreSQL URL>"


def _mask(text: str, url: str) -> str:
    """``text`` without the URL, nor its password raw or percent-decoded."""
    text = text.replace(url, _redacted(url))
    try:
        password = urlsplit(url).password or ""
    except ValueError:
        password = ""
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text
