"""Retention: finished tasks older than the cut-off go, with their attempts and keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from common import Outcome
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import TaskState
from tests.contract.store.samples import (
    T0,
    T1,
    T3,
    T5,
    a_heartbeat,
    a_queued_task,
    a_start,
    a_task,
    an_outcome,
)

FINAL = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED)


def test_finished_tasks_before_the_cut_off_are_pruned_with_their_attempts(
    store: SyncTaskStore,
) -> None:
    old, recent, running = a_queued_task(store), a_queued_task(store), a_queued_task(store)
    store.record_starts([a_start(old.task_id)])
    store.record_results([an_outcome(old.task_id, finished_at=T3)])
    store.record_results([an_outcome(recent.task_id, finished_at=T5 + timedelta(days=1))])
    store.record_starts([a_start(running.task_id)])
    cut_off = T5

    assert store.count_prunable(cut_off, FINAL) == 1
    assert store.prune_tasks(cut_off, FINAL, limit=100) == 1

    assert {r.task_id for r in store.get_many([old.task_id, recent.task_id, running.task_id])} == {
        recent.task_id,
        running.task_id,
    }
    assert store.attempts(old.task_id) == []
    assert store.count_prunable(cut_off, FINAL) == 0


def test_pruning_goes_a_batch_at_a_time_oldest_first(store: SyncTaskStore) -> None:
    tasks = [a_queued_task(store) for _ in range(5)]
    for n, task in enumerate(tasks):
        store.record_results([an_outcome(task.task_id, finished_at=T1 + timedelta(seconds=n))])

    assert store.prune_tasks(T5 + timedelta(hours=1), FINAL, limit=2) == 2
    left = {r.task_id for r in store.get_many([t.task_id for t in tasks])}
    assert left == {t.task_id for t in tasks[2:]}
    assert store.prune_tasks(T5 + timedelta(hours=1), FINAL, limit=2) == 2
    assert store.prune_tasks(T5 + timedelta(hours=1), FINAL, limit=2) == 1
    assert store.prune_tasks(T5 + timedelta(hours=1), FINAL, limit=2) == 0


def test_only_the_states_asked_for_are_pruned(store: SyncTaskStore) -> None:
    failed, succeeded = a_queued_task(store), a_queued_task(store)
    store.record_results([an_outcome(succeeded.task_id, finished_at=T3)])
    store.record_results([an_outcome(failed.task_id, Outcome.FAILED, finished_at=T3)])

    assert store.prune_tasks(T5, (TaskState.FAILED,), limit=10) == 1
    assert [r.task_id for r in store.get_many([failed.task_id, succeeded.task_id])] == [
        succeeded.task_id
    ]


def test_a_pruned_idempotency_key_may_be_used_again(store: SyncTaskStore) -> None:
    first = a_task()
    (held,) = store.add_submitted([first], ["key-1"])
    store.record_results([an_outcome(first.task_id, finished_at=T3)])
    store.prune_tasks(T5, FINAL, limit=10)

    second = a_task()
    (now_held,) = store.add_submitted([second], ["key-1"])

    assert (held, now_held) == (first.task_id, second.task_id)


def test_silent_executors_are_pruned(store: SyncTaskStore) -> None:
    store.record_heartbeat(a_heartbeat("old", at=T0))
    store.record_heartbeat(a_heartbeat("fresh", at=T5))

    assert store.prune_executors(T3) == 1
    assert [e.executor_id for e in store.list_executors()] == ["fresh"]


def test_the_sqlite_file_stops_growing_under_steady_load_with_pruning(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    store = open_store(path)
    sizes = []
    for round_ in range(12):
        tasks = [a_task(params={"text": "x" * 2000}) for _ in range(200)]
        store.add_submitted(tasks)
        at = T1 + timedelta(minutes=round_)
        store.record_results([an_outcome(t.task_id, finished_at=at) for t in tasks])
        while store.prune_tasks(at + timedelta(seconds=1), FINAL, limit=100):
            pass
        sizes.append(path.stat().st_size + _wal_size(path))
    store.close()

    # Each round writes about 1 MB and prunes it again: the file reaches its working size in
    # the first rounds and then stays there (freed pages are reused or given back).
    assert max(sizes[4:]) <= max(sizes[:4]) * 1.1, sizes


def _wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_new_sqlite_file_gives_pruned_space_back(tmp_path: Path) -> None:
    path = tmp_path / "tasks.sqlite3"
    store = open_store(path)
    tasks = [a_task(params={"text": "x" * 4000}) for _ in range(400)]
    store.add_submitted(tasks)
    store.record_results([an_outcome(t.task_id, finished_at=T1) for t in tasks])
    store.close()
    full = path.stat().st_size

    store = open_store(path)
    while store.prune_tasks(T5, FINAL, limit=100):
        pass
    store.close()

    assert path.stat().st_size < full / 2, (full, path.stat().st_size)
