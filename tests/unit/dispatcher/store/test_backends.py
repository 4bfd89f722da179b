"""Choosing a store by its location, and keeping a PostgreSQL URL's password out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from common import ConfigError, load_settings
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store, url_scheme
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite.connection import SqliteDialect

URL = "postgresql://wq:hunter2@db.example:5432/wq"


@pytest.mark.parametrize(
    ("location", "postgres"),
    [
        ("postgresql://wq@db.example/wq", True),
        ("postgres://wq@db.example/wq", True),
        ("POSTGRESQL://wq@db.example/wq", False),  # libpq would not take it either
        ("postgresql:///wq", True),  # a Unix socket
        ("/var/lib/wq/tasks.sqlite3", False),
        ("tasks.sqlite3", False),
        (":memory:", False),
        ("postgresql.sqlite3", False),
    ],
)
def test_a_postgresql_url_is_told_from_a_file(location: str, postgres: bool) -> None:
    assert (url_scheme(location) is not None) is postgres


@pytest.mark.parametrize("spec", ["tasks.sqlite3", SecretStr("tasks.sqlite3")])
def test_anything_but_a_postgresql_url_opens_an_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str | SecretStr
) -> None:
    monkeypatch.chdir(tmp_path)

    store = open_store(spec)
    store.close()

    assert isinstance(store, SqlTaskStore)
    assert isinstance(store._db, SqliteDialect)
    assert (tmp_path / "tasks.sqlite3").exists()


def test_open_store_takes_a_path_and_memory() -> None:
    for spec in (Path(":memory:"), ":memory:"):
        store = open_store(spec)
        assert isinstance(store, SqlTaskStore)
        assert isinstance(store._db, SqliteDialect)
        assert store.get_many([]) == []
        store.close()


def test_default_store_is_the_xdg_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    settings = DispatcherSettings()

    assert settings.store == tmp_path / "wq" / "tasks.sqlite3"
    assert settings.redacted_store() == str(tmp_path / "wq" / "tasks.sqlite3")


def test_a_store_path_from_the_environment_is_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_DISPATCHER_STORE", "/srv/wq/tasks.sqlite3")

    assert DispatcherSettings().store == Path("/srv/wq/tasks.sqlite3")


def test_a_postgresql_url_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_DISPATCHER_STORE", URL)

    settings = DispatcherSettings()

    assert isinstance(settings.store, SecretStr)
    assert settings.store.get_secret_value() == URL
    assert settings.redacted_store() == "postgresql://wq:***@db.example:5432/wq"
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    "location", ["mysql://wq:hunter2@db/wq", "sqlite://tasks.db", "postgresql://wq:hunter2@[::1/x"]
)
def test_another_kind_of_url_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, location: str
) -> None:
    monkeypatch.setenv("WQ_DISPATCHER_STORE", location)

    with pytest.raises(ConfigError, match="WQ_DISPATCHER_STORE") as caught:
        load_settings(DispatcherSettings)

    assert "hunter2" not in str(caught.value)
