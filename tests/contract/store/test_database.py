"""The store contract, on every backend: sharing a database, closing, async use, durability and
schema versions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest

from common import (
    StoreError,
    TaskNotFound,
)
from dispatcher.store.backends import open_store
from dispatcher.store.postgres.connection import PostgresDialect
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import TaskState
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite.connection import SqliteDialect
from dispatcher.store.threaded import ThreadedTaskStore
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    T1,
    T2,
    T5,
    a_heartbeat,
    a_progress,
    a_task,
    an_outcome,
    race,
)

# Sharing, closing and async use


def test_two_stores_on_one_database_see_each_others_writes(backend: Backend) -> None:
    writer, reader = backend.open(), backend.open()
    task = a_task()

    writer.add_submitted([task])
    assert reader.get(task.task_id).state is TaskState.SUBMITTED
    assert reader.record_result(an_outcome(task.task_id)) is True
    assert writer.record_result(an_outcome(task.task_id)) is False

    assert writer.get(task.task_id).duplicate_results == 1


def test_data_survives_closing_and_reopening(backend: Backend) -> None:
    task = a_task()
    first = backend.open()
    first.add_submitted([task], ["kept"])
    first.mark_queued([task.task_id], T1)
    first.close()

    record = backend.open().get(task.task_id)

    assert (record.state, record.queued_at, record.idempotency_key) == (
        TaskState.QUEUED,
        T1,
        "kept",
    )


def test_a_closed_store_raises_store_errors(backend: Backend) -> None:
    store = open_store(backend.location)
    store.close()

    with pytest.raises(StoreError):
        store.get_many([uuid4()])
    with pytest.raises(StoreError):
        store.add_submitted([a_task()])


async def test_threaded_store_gives_the_async_interface(backend: Backend) -> None:
    store = ThreadedTaskStore(open_store(backend.location))
    task = a_task()
    try:
        assert await store.add_submitted([task], ["k"]) == [task.task_id]
        await store.mark_queued([task.task_id], T1)
        assert await store.unconfirmed(T5, 10) == []
        assert await store.record_result(an_outcome(task.task_id)) is True
        assert await store.record_result(an_outcome(task.task_id)) is False
        (record,) = await store.get_many([task.task_id])
        with pytest.raises(TaskNotFound):
            await store.get(uuid4())
        await store.record_replay(task, T5)
        assert (await store.get(task.task_id)).state is TaskState.SUCCEEDED
    finally:
        await store.close()

    assert (record.state, record.duplicate_results) == (TaskState.SUCCEEDED, 1)


# Durability: which commits wait for the disk


def _commit_waits_for_disk(store: SyncTaskStore, *, durable: bool) -> bool:
    """Whether a write transaction of ``store`` run with ``durable`` syncs at commit."""
    assert isinstance(store, SqlTaskStore)
    if isinstance(store._db, SqliteDialect):
        # In WAL mode, FULL (2) syncs the log at every commit; NORMAL (1) only at checkpoints.
        rows = store._db.write(lambda tx: tx.run("PRAGMA synchronous", {}).rows, durable=durable)
        return {1: False, 2: True}[rows[0]["synchronous"]]
    assert isinstance(store._db, PostgresDialect)
    rows = store._db.write(lambda tx: tx.run("SHOW synchronous_commit", {}).rows, durable=durable)
    return {"off": False, "on": True}[rows[0]["synchronous_commit"]]


def test_a_non_durable_write_skips_the_sync_and_later_writes_sync_again(
    store: SyncTaskStore,
) -> None:
    assert _commit_waits_for_disk(store, durable=True) is True
    assert _commit_waits_for_disk(store, durable=False) is False
    assert _commit_waits_for_disk(store, durable=True) is True

    def fail(_: object) -> None:
        raise RuntimeError("work failed")

    with pytest.raises(RuntimeError):
        store._db.write(fail, durable=False)  # type: ignore[attr-defined]
    assert _commit_waits_for_disk(store, durable=True) is True


def test_only_advisory_writes_skip_the_sync(
    store: SyncTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marks, heartbeats and progress can be lost to a crash and recovered; nothing else can."""
    durable: dict[str, bool] = {}
    db = store._db  # type: ignore[attr-defined]
    write = db.write

    def spy(what: str) -> Callable[..., Any]:
        def spying(work: Any, **kwargs: Any) -> Any:
            durable[what] = kwargs.get("durable", True)
            return write(work, **kwargs)

        return spying

    task = a_task()
    monkeypatch.setattr(db, "write", spy("add_submitted"))
    store.add_submitted([task])
    monkeypatch.setattr(db, "write", spy("mark_queued"))
    store.mark_queued([task.task_id], T1)
    monkeypatch.setattr(db, "write", spy("record_heartbeat"))
    store.record_heartbeat(a_heartbeat())
    monkeypatch.setattr(db, "write", spy("record_progress"))
    store.record_progress(a_progress(task.task_id, 50, T2))
    monkeypatch.setattr(db, "write", spy("request_cancel"))
    store.request_cancel(task.task_id, T2)
    monkeypatch.setattr(db, "write", spy("record_results"))
    store.record_result(an_outcome(task.task_id))

    assert durable == {
        "add_submitted": True,
        "mark_queued": False,
        "record_heartbeat": False,
        "record_progress": False,
        "request_cancel": True,
        "record_results": True,
    }


# Schema versions


def test_a_new_store_is_at_the_current_schema_version(backend: Backend) -> None:
    backend.open()

    assert backend.schema_version() == backend.current_version


def test_opening_again_migrates_nothing_and_keeps_the_data(backend: Backend) -> None:
    task = a_task()
    backend.open().add_submitted([task])

    again = backend.open()
    backend.open()

    assert backend.schema_version() == backend.current_version
    assert again.get(task.task_id).state is TaskState.SUBMITTED


def test_stores_opening_a_new_database_at_once_migrate_it_once(backend: Backend) -> None:
    opened = race(*[lambda: open_store(backend.location) for _ in range(4)])
    backend.opened.extend(opened)
    task = a_task()

    opened[0].add_submitted([task])

    assert backend.schema_version() == backend.current_version
    assert all(store.get(task.task_id).task_id == task.task_id for store in opened)


def test_a_store_from_newer_code_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.set_schema_version(backend.current_version + 1)

    with pytest.raises(StoreError, match="newer"):
        open_store(backend.location)
