"""The PostgreSQL store's connection: connecting, one lock, reconnects, transactions.

Every concern of ``PostgresTaskStore`` (tasks, results, fleet, schedules) is a subclass of
``PostgresConnection`` and reaches the database only through ``_read`` and ``_write``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row

from common import JsonValue, StoreError
from common.settings import redact_url

_T = TypeVar("_T")
Connection = psycopg.Connection[DictRow]

# Unless the URL says otherwise: fail fast on an unreachable server, and name the client in
# pg_stat_activity.
_CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "wq-dispatcher"}
# No statement of the store runs for seconds; one that waits this long is stuck (a lock held
# by a forgotten session, a server in trouble) and fails as a StoreError instead of hanging
# the dispatcher. A URL's ``options=-c statement_timeout=...`` takes precedence.
_STATEMENT_TIMEOUT = "30s"


class PostgresConnection:
    """One connection to the server, shared by threads through one lock; reconnects."""

    def __init__(self, url: str) -> None:
        self.url = _redacted(url)  # safe to show: the password is masked
        self._conninfo = url
        self._lock = threading.Lock()
        self._closed = False
        self._db = self._connect()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._closed = True
            self._db.close()

    def ping(self) -> None:
        """Query the server (reconnecting if the connection dropped); ``StoreError`` if not."""
        self._read("SELECT 1", ())

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

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[DictRow]:
        return self._run("read", lambda db: db.execute(sql, params).fetchall(), write=False)

    def _write(self, work: Callable[[Connection], _T], *, durable: bool = True) -> _T:
        """Run ``work`` in one transaction; ``durable=False`` commits without waiting for WAL.

        A non-durable commit is for what can be lost to a server crash and recovered (see
        ``SqliteConnection._write``): the server flushes it within a few hundred milliseconds,
        and any later durable commit flushes it first.
        """
        if durable:
            return self._run("write", work, write=True)

        def asynchronously(db: Connection) -> _T:
            db.execute("SET LOCAL synchronous_commit = off")
            return work(db)

        return self._run("write", asynchronously, write=True)

    def _run(self, what: str, work: Callable[[Connection], _T], *, write: bool) -> _T:
        with self._lock:
            if self._db.closed:
                if self._closed:
                    raise StoreError("the task store is closed")
                # The server restarted or the network dropped: the call that noticed failed
                # (its caller retries, e.g. a result is requeued); this one reconnects.
                self._db = self._connect()
            try:
                if not write:
                    return work(self._db)
                with self._db.transaction():
                    return work(self._db)
            except psycopg.Error as exc:
                raise StoreError(f"task store {what} failed: {exc}") from exc


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
