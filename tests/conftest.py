"""Shared fixtures: a clean environment, settings factories, the broker URL, PostgreSQL."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
import structlog
from pydantic import SecretStr

from common import AmqpSettings, redact_url
from dispatcher.settings import DispatcherSettings
from tests.postgres import DEFAULT_TEST_POSTGRES_URL, START_HINT, IsolatedSchema

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEST_AMQP_URL = "amqp://guest:guest@localhost:5672/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration talks to the real broker."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings in tests come from init kwargs only, never from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("WQ_") and not name.startswith("WQ_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The broker the integration tests use (``WQ_TEST_AMQP_URL``)."""
    return os.environ.get("WQ_TEST_AMQP_URL", DEFAULT_TEST_AMQP_URL)


def unique_prefix() -> str:
    """A fresh name prefix so that tests never share a queue."""
    return f"wq.test.{uuid4().hex[:10]}"


@pytest.fixture
def amqp_settings(amqp_url: str) -> AmqpSettings:
    """Broker settings with a unique prefix (clean-up lives in the integration conftest)."""
    return AmqpSettings(url=SecretStr(amqp_url), prefix=unique_prefix(), confirm_timeout=10)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """The test's own SQLite store file."""
    return tmp_path / "tasks.sqlite3"


@pytest.fixture
def dispatcher_settings(store_path: Path) -> DispatcherSettings:
    """Dispatcher settings with the SQLite store at ``store_path``."""
    return DispatcherSettings(store=store_path)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() changes process-wide state; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in ("pika",)}
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture(scope="session")
def postgres_reachable() -> str:
    """``WQ_TEST_POSTGRES_URL``; fail (never skip) the tests that need it when it is down."""
    url = os.environ.get("WQ_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {redact_url(url)} ({type(exc).__name__}: {exc}).\n"
            + START_HINT,
            pytrace=False,
        )
    return url


@pytest.fixture
def postgres_schema(postgres_reachable: str) -> Iterator[IsolatedSchema]:
    """A fresh schema for this test (its ``url`` selects it), dropped afterwards."""
    schema = IsolatedSchema(postgres_reachable)
    yield schema
    schema.drop()
