"""The SQLite task store: lifecycle, first-result-wins, durability and sharing across processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from common import (
    ErrorKind,
    Outcome,
    ResultMessage,
    StoreError,
    TaskErrorInfo,
    TaskMessage,
    TaskNotFound,
)
from dispatcher.sqlite_store import SqliteTaskStore, ThreadedTaskStore
from dispatcher.store import TaskState

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)
T3 = T0 + timedelta(seconds=3)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tasks.sqlite3"


@pytest.fixture
def open_store(store_path: Path) -> Iterator[Callable[[], SqliteTaskStore]]:
    """Opens stores on the test's file and closes them all afterwards."""
    opened: list[SqliteTaskStore] = []

    def factory() -> SqliteTaskStore:
        store = SqliteTaskStore(store_path)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        store.close()


@pytest.fixture
def store(open_store: Callable[[], SqliteTaskStore]) -> SqliteTaskStore:
    return open_store()


def _task(task_type: str = "word_count") -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(), task_type=task_type, params={"text": "a b", "top": 2}, submitted_at=T0
    )


def _result(
    task_id: UUID, *, executor: str = "e1", error: TaskErrorInfo | None = None
) -> ResultMessage:
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=Outcome.FAILED if error else Outcome.SUCCEEDED,
        result=None if error else {"words": 2},
        error=error,
        attempt=1,
        executor=executor,
        redelivered=False,
        started_at=T2,
        finished_at=T3,
    )


def test_submitted_task_is_recorded_with_its_params(store: SqliteTaskStore) -> None:
    task = _task()

    store.add_submitted([task])
    record = store.get(task.task_id)

    assert record.state is TaskState.SUBMITTED
    assert record.task_type == "word_count"
    assert record.params == {"text": "a b", "top": 2}
    assert record.submitted_at == T0
    assert record.queued_at is None
    assert record.attempt == 1


def test_mark_queued_moves_the_task_to_queued(store: SqliteTaskStore) -> None:
    task = _task()
    store.add_submitted([task])

    store.mark_queued([task.task_id], T1)

    record = store.get(task.task_id)
    assert record.state is TaskState.QUEUED
    assert record.queued_at == T1


def test_mark_queued_never_moves_a_finished_task_back(store: SqliteTaskStore) -> None:
    # The result can overtake the publisher confirm.
    task = _task()
    store.add_submitted([task])
    store.record_result(_result(task.task_id))

    store.mark_queued([task.task_id], T1)

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.queued_at is None


def test_first_result_is_recorded(store: SqliteTaskStore) -> None:
    task = _task()
    store.add_submitted([task])
    store.mark_queued([task.task_id], T1)

    assert store.record_result(_result(task.task_id)) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == {"words": 2}
    assert record.executor == "e1"
    assert record.started_at == T2
    assert record.finished_at == T3
    assert record.queued_at == T1
    assert record.duplicate_results == 0


def test_duplicate_result_changes_nothing_but_the_duplicate_count(store: SqliteTaskStore) -> None:
    task = _task()
    store.add_submitted([task])
    store.record_result(_result(task.task_id, executor="first"))
    before = store.get(task.task_id)
    error = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="E", message="late failure")

    assert store.record_result(_result(task.task_id, executor="second", error=error)) is False
    assert store.record_result(_result(task.task_id, executor="third")) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 2
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_result_for_an_unknown_task_inserts_a_record(store: SqliteTaskStore) -> None:
    task_id = uuid4()

    assert store.record_result(_result(task_id)) is True

    record = store.get(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.task_type == "word_count"
    assert record.params == {}
    assert record.result == {"words": 2}


def test_failed_result_keeps_the_error_info(store: SqliteTaskStore) -> None:
    task = _task()
    store.add_submitted([task])
    error = TaskErrorInfo(
        kind=ErrorKind.INVALID_PARAMS,
        type="InvalidParams",
        message="top: too big",
        traceback=None,
        details=[{"loc": ["top"], "msg": "too big", "type": "less_than_equal"}],
    )

    store.record_result(_result(task.task_id, error=error))

    record = store.get(task.task_id)
    assert record.state is TaskState.FAILED
    assert record.error == error
    assert record.result is None


def test_state_follows_the_result_outcome(store: SqliteTaskStore) -> None:
    task_id = uuid4()
    result = _result(task_id).model_copy(update={"outcome": Outcome.FAILED, "result": None})

    store.record_result(result)

    assert store.get(task_id).state is TaskState.FAILED


def test_sqlite_errors_become_store_errors_and_roll_back(store: SqliteTaskStore) -> None:
    existing, new = _task(), _task()
    store.add_submitted([existing])

    with pytest.raises(StoreError, match="write failed"):
        store.add_submitted([new, existing])

    assert store.get_many([new.task_id]) == []


def test_get_of_a_missing_id_raises_task_not_found(store: SqliteTaskStore) -> None:
    task_id = uuid4()

    with pytest.raises(TaskNotFound) as caught:
        store.get(task_id)

    assert caught.value.task_id == task_id


def test_get_many_returns_only_existing_records(store: SqliteTaskStore) -> None:
    tasks = [_task() for _ in range(3)]
    store.add_submitted(tasks)

    records = store.get_many([tasks[0].task_id, uuid4(), tasks[2].task_id])

    assert {r.task_id for r in records} == {tasks[0].task_id, tasks[2].task_id}


def test_get_many_handles_more_ids_than_sqlite_binds_at_once(store: SqliteTaskStore) -> None:
    tasks = [_task() for _ in range(1234)]
    store.add_submitted(tasks)

    records = store.get_many([t.task_id for t in tasks])

    assert {r.task_id for r in records} == {t.task_id for t in tasks}


def test_data_survives_closing_and_reopening_the_file(store_path: Path) -> None:
    task = _task()
    first = SqliteTaskStore(store_path)
    first.add_submitted([task])
    first.mark_queued([task.task_id], T1)
    first.close()

    reopened = SqliteTaskStore(store_path)
    try:
        record = reopened.get(task.task_id)
    finally:
        reopened.close()

    assert record.state is TaskState.QUEUED
    assert record.queued_at == T1


def test_two_stores_on_one_file_see_each_others_writes(
    open_store: Callable[[], SqliteTaskStore],
) -> None:
    writer, reader = open_store(), open_store()
    task = _task()

    writer.add_submitted([task])
    assert reader.get(task.task_id).state is TaskState.SUBMITTED

    assert reader.record_result(_result(task.task_id)) is True
    assert writer.record_result(_result(task.task_id)) is False
    assert writer.get(task.task_id).duplicate_results == 1


def test_in_memory_store_works() -> None:
    store = SqliteTaskStore(":memory:")
    task = _task()
    try:
        store.add_submitted([task])
        store.mark_queued([task.task_id], T1)
        record = store.get(task.task_id)
    finally:
        store.close()

    assert record.state is TaskState.QUEUED


async def test_threaded_store_behaves_like_the_sync_store(store_path: Path) -> None:
    store = ThreadedTaskStore(SqliteTaskStore(store_path))
    task = _task()
    try:
        await store.add_submitted([task])
        await store.mark_queued([task.task_id], T1)
        assert (await store.get(task.task_id)).state is TaskState.QUEUED
        assert await store.record_result(_result(task.task_id)) is True
        assert await store.record_result(_result(task.task_id)) is False
        (record,) = await store.get_many([task.task_id])
        with pytest.raises(TaskNotFound):
            await store.get(uuid4())
    finally:
        await store.close()

    assert record.state is TaskState.SUCCEEDED
    assert record.duplicate_results == 1
