"""Opening a task store by its location: the table from URL scheme to SQL dialect.

A location with a scheme in ``URL_SCHEMES`` opens that dialect, imported only then (PostgreSQL's
driver loads only for a PostgreSQL store); anything else is an SQLite file. A new SQL backend is
a dialect folder (``dispatcher.store.sql.dialect`` lists what it implements) and a line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from pydantic import SecretStr

from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.sql.dialect import Dialect
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite.connection import SqliteDialect

# Scheme (as libpq and the like spell it: lower case only) -> "module:class" of its dialect,
# whose constructor takes the whole URL.
URL_SCHEMES = {
    "postgresql": "dispatcher.store.postgres.connection:PostgresDialect",
    "postgres": "dispatcher.store.postgres.connection:PostgresDialect",
}


def url_scheme(location: str) -> str | None:
    """The scheme of a store URL in ``URL_SCHEMES``; None for anything else (a file path)."""
    scheme, separator, _ = location.partition("://")
    return scheme if separator and scheme in URL_SCHEMES else None


def open_store(spec: str | Path | SecretStr) -> SyncTaskStore:
    """The store at ``spec``: the dialect its URL scheme names, else an SQLite file.

    Raises:
        StoreError: the store cannot be opened or migrated.
    """
    location = spec.get_secret_value() if isinstance(spec, SecretStr) else spec
    scheme = url_scheme(location) if isinstance(location, str) else None
    if scheme is None:
        return SqlTaskStore(SqliteDialect(location))
    return SqlTaskStore(_dialect_class(URL_SCHEMES[scheme])(cast(str, location)))


def _dialect_class(path: str) -> Callable[[str], Dialect]:
    module, _, name = path.partition(":")
    return cast(Callable[[str], Dialect], getattr(importlib.import_module(module), name))
