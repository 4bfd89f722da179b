"""Fixtures the dispatcher's unit tests share: a real SQLite store and a fake publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dispatcher.store.backends import open_store
from dispatcher.store.threaded import ThreadedTaskStore
from tests.unit.dispatcher.fakes import FakeCancelPublisher, FakePublisher


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ThreadedTaskStore]:
    threaded = ThreadedTaskStore(open_store(tmp_path / "tasks.sqlite3"))
    yield threaded
    await threaded.close()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def cancels() -> FakeCancelPublisher:
    return FakeCancelPublisher()
