"""The store contract's backends: every test runs on SQLite and on the real PostgreSQL.

The PostgreSQL variant gets a schema of its own, dropped afterwards; tests that race use two
store instances on one database, as two dispatcher replicas would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dispatcher.store.backends import open_store
from dispatcher.store.postgres import schema as postgres_schema
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.sqlite import schema as sqlite_schema
from tests.postgres import IsolatedSchema


@dataclass
class Backend:
    """One kind of store under test, plus a way into its database behind the store's back."""

    location: str | Path
    schema_version: Callable[[], int]
    set_schema_version: Callable[[int], None]
    current_version: int
    opened: list[SyncTaskStore] = field(default_factory=list)

    def open(self) -> SyncTaskStore:
        """A new store instance on the test's database, closed at teardown."""
        store = open_store(self.location)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self.opened):
            store.close()


def _sqlite_backend(path: Path) -> Backend:
    def version() -> int:
        db = sqlite3.connect(path)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()

    def set_version(value: int) -> None:
        db = sqlite3.connect(path)
        try:
            db.execute(f"PRAGMA user_version = {value}")
        finally:
            db.close()

    return Backend(
        location=path,
        schema_version=version,
        set_schema_version=set_version,
        current_version=sqlite_schema.SCHEMA_VERSION,
    )


def _postgres_backend(schema: IsolatedSchema) -> Backend:
    def version() -> int:
        with schema.connect() as db:
            row = db.execute("SELECT max(version) FROM wq_schema_version").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    def set_version(value: int) -> None:
        with schema.connect() as db:
            db.execute("INSERT INTO wq_schema_version (version) VALUES (%s)", (value,))

    return Backend(
        location=schema.url,
        schema_version=version,
        set_schema_version=set_version,
        current_version=postgres_schema.SCHEMA_VERSION,
    )


# Only the PostgreSQL half needs a server: `pytest -m "not integration"` still runs SQLite's.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """The store kind of this run; PostgreSQL only is asked for (and must be up) when used."""
    if request.param == "sqlite":
        chosen = _sqlite_backend(tmp_path / "tasks.sqlite3")
    else:
        chosen = _postgres_backend(request.getfixturevalue("postgres_schema"))
    yield chosen
    chosen.close_all()  # before postgres_schema's teardown drops the schema


@pytest.fixture
def store(backend: Backend) -> SyncTaskStore:
    return backend.open()
