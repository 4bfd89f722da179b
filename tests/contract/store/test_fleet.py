"""The store contract, on every backend: executor heartbeats and published task types."""

from __future__ import annotations

from typing import Any

import pytest

from common import (
    ExecutorEvent,
    TaskTypeInfo,
)
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import ExecutorState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    T0,
    T1,
    T2,
    T3,
    T4,
    T5,
    a_heartbeat,
)

# Executors and task types


def test_heartbeats_upsert_one_row_per_executor(store: SyncTaskStore) -> None:
    store.record_heartbeat(a_heartbeat(at=T1, processed=1))
    store.record_heartbeat(a_heartbeat(at=T2, processed=5, running=2))
    store.record_heartbeat(a_heartbeat("other", at=T1))

    first, second = store.list_executors()

    assert (first.executor_id, second.executor_id) == ("host-1.42", "other")
    assert (first.last_seen_at, first.processed, first.failed) == (T2, 5, 1)
    assert (first.host, first.pid, first.slots, first.started_at) == ("host-1", 42, 4, T0)
    assert first.task_types == ["word_count"]
    assert len(first.current_tasks) == 2
    assert first.current_tasks[0].started_at == T2
    assert (first.cpu_percent, first.rss_bytes, first.stopped_at) == (12.5, 30_000_000, None)


def test_an_older_heartbeat_does_not_overwrite_a_newer_one(store: SyncTaskStore) -> None:
    store.record_heartbeat(a_heartbeat(at=T3, processed=9))
    store.record_heartbeat(a_heartbeat(at=T2, processed=1))

    (executor,) = store.list_executors()

    assert (executor.last_seen_at, executor.processed) == (T3, 9)


def test_a_clean_stop_is_recorded_and_a_restart_clears_it(store: SyncTaskStore) -> None:
    store.record_heartbeat(a_heartbeat(at=T2, event=ExecutorEvent.STOPPED))
    (stopped,) = store.list_executors()
    assert stopped.stopped_at == T2
    assert stopped.with_state(T5, lost_after=60).state is ExecutorState.STOPPED

    store.record_heartbeat(a_heartbeat(at=T3, event=ExecutorEvent.STARTED))
    (restarted,) = store.list_executors()
    assert restarted.stopped_at is None
    assert restarted.with_state(T4, lost_after=60).state is ExecutorState.RUNNING
    assert restarted.with_state(T4, lost_after=0.5).state is ExecutorState.LOST


def test_published_task_types_are_upserted_by_name(store: SyncTaskStore) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}}
    first = TaskTypeInfo(name="word_count", params_schema={}, options={"max_retries": 3})
    other = TaskTypeInfo(name="resize", params_schema={}, description="Resize.")
    store.publish_task_types([first, other], published_by="e1", at=T1)
    changed = TaskTypeInfo(name="word_count", params_schema=schema, description="Count.")
    store.publish_task_types([changed], published_by="e2", at=T2)
    store.publish_task_types([], published_by="e3", at=T3)

    resize, word_count = store.list_task_types()

    assert (resize.name, resize.description, resize.published_by) == ("resize", "Resize.", "e1")
    assert word_count.params_schema == schema
    assert (word_count.description, word_count.options) == ("Count.", {})
    assert (word_count.published_by, word_count.updated_at) == ("e2", T2)


def test_a_live_publishers_task_type_is_not_replaced_by_another_executor(
    store: SyncTaskStore,
) -> None:
    safe = TaskTypeInfo(name="word_count", params_schema={"type": "object"})
    hostile = TaskTypeInfo(name="word_count", params_schema={"pattern": "^(a+)+$"})
    new = TaskTypeInfo(name="resize", params_schema={})
    store.record_heartbeat(a_heartbeat("e1", at=T2))
    assert store.publish_task_types([safe], published_by="e1", at=T2, live_since=T1) == []

    refused = store.publish_task_types([hostile, new], published_by="e2", at=T3, live_since=T1)

    assert refused == ["word_count"]
    resize, word_count = store.list_task_types()
    assert (word_count.params_schema, word_count.published_by) == ({"type": "object"}, "e1")
    assert resize.published_by == "e2"  # a type nobody published yet is taken at once


@pytest.mark.parametrize("gone", ["stopped", "silent"])
def test_a_task_type_is_taken_over_once_its_publisher_has_stopped_or_gone_silent(
    store: SyncTaskStore, gone: str
) -> None:
    old = TaskTypeInfo(name="word_count", params_schema={"type": "object"})
    new = TaskTypeInfo(name="word_count", params_schema={"type": "object", "required": ["t"]})
    event = ExecutorEvent.STOPPED if gone == "stopped" else ExecutorEvent.HEARTBEAT
    store.record_heartbeat(a_heartbeat("e1", at=T1, event=event))
    store.publish_task_types([old], published_by="e1", at=T1, live_since=T0)

    # Stopped at T1, or last seen at T1 while only executors seen from T2 on count as live.
    live_since = T0 if gone == "stopped" else T2
    assert store.publish_task_types([new], published_by="e2", at=T3, live_since=live_since) == []

    (record,) = store.list_task_types()
    assert (record.params_schema, record.published_by) == (new.params_schema, "e2")


def test_the_publisher_itself_may_change_its_task_type(store: SyncTaskStore) -> None:
    store.record_heartbeat(a_heartbeat("e1", at=T2))
    store.publish_task_types(
        [TaskTypeInfo(name="t", params_schema={})], published_by="e1", at=T2, live_since=T1
    )
    changed = TaskTypeInfo(name="t", params_schema={"type": "object"})

    assert store.publish_task_types([changed], published_by="e1", at=T3, live_since=T1) == []
    assert store.list_task_types()[0].params_schema == {"type": "object"}


async def test_threaded_store_records_heartbeats_and_task_types(backend: Backend) -> None:
    store = ThreadedTaskStore(open_store(backend.location))
    try:
        await store.record_heartbeat(a_heartbeat())
        info = TaskTypeInfo(name="echo", params_schema={"type": "object"})
        await store.publish_task_types([info], published_by="e1", at=T1)
        assert [e.executor_id for e in await store.list_executors()] == ["host-1.42"]
        assert [t.name for t in await store.list_task_types()] == ["echo"]
    finally:
        await store.close()
