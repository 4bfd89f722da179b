"""The SQLite task store: lifecycle, first-result-wins, durability and sharing across processes."""

from __future__ import annotations

import sqlite3
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
from dispatcher.sqlite_schema import SCHEMA_VERSION
from dispatcher.sqlite_store import SqliteTaskStore
from dispatcher.store import TaskState
from dispatcher.stores import ThreadedTaskStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)
T3 = T0 + timedelta(seconds=3)
T4 = T0 + timedelta(seconds=4)
T5 = T0 + timedelta(seconds=5)

# The schema as version 1 of the code created it (before retries added next_attempt_at).
_V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    submitted_at TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    executor TEXT,
    result TEXT,
    error TEXT,
    redelivered INTEGER NOT NULL DEFAULT 0,
    duplicate_results INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state, submitted_at);
PRAGMA user_version = 1;
"""


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


_ERROR = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ConnectionError", message="reset")


def _outcome(
    task_id: UUID,
    outcome: Outcome,
    *,
    attempt: int,
    retry_in_s: float | None = None,
    finished_at: datetime = T3,
    executor: str = "e1",
) -> ResultMessage:
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=outcome,
        result={"words": 2} if outcome is Outcome.SUCCEEDED else None,
        error=None if outcome is Outcome.SUCCEEDED else _ERROR,
        attempt=attempt,
        executor=executor,
        started_at=finished_at - timedelta(seconds=1),
        finished_at=finished_at,
        retry_in_s=retry_in_s,
    )


def _retrying(
    task_id: UUID, *, attempt: int, retry_in_s: float = 4.0, finished_at: datetime = T3
) -> ResultMessage:
    return _outcome(
        task_id, Outcome.RETRYING, attempt=attempt, retry_in_s=retry_in_s, finished_at=finished_at
    )


def _queued(store: SqliteTaskStore) -> TaskMessage:
    task = _task()
    store.add_submitted([task])
    store.mark_queued([task.task_id], T1)
    return task


def _v1_database(path: Path, rows: list[tuple[object, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    try:
        db.executescript(_V1_SCHEMA)
        db.executemany(
            "INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at,"
            " queued_at, started_at, finished_at, executor, result, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.commit()
    finally:
        db.close()


def _columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
    finally:
        db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        return int(version)
    finally:
        db.close()


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


# Retries and dead-lettering


@pytest.mark.parametrize(
    ("state", "final"),
    [
        (TaskState.SUBMITTED, False),
        (TaskState.QUEUED, False),
        (TaskState.RETRYING, False),
        (TaskState.SUCCEEDED, True),
        (TaskState.FAILED, True),
        (TaskState.DEAD, True),
    ],
)
def test_which_states_are_final(state: TaskState, final: bool) -> None:
    assert state.is_final is final


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (Outcome.SUCCEEDED, TaskState.SUCCEEDED),
        (Outcome.FAILED, TaskState.FAILED),
        (Outcome.RETRYING, TaskState.RETRYING),
        (Outcome.DEAD, TaskState.DEAD),
    ],
)
def test_every_outcome_maps_to_its_state(
    store: SqliteTaskStore, outcome: Outcome, state: TaskState
) -> None:
    task = _queued(store)
    retry_in_s = 2.0 if outcome is Outcome.RETRYING else None

    assert store.record_result(_outcome(task.task_id, outcome, attempt=1, retry_in_s=retry_in_s))

    assert store.get(task.task_id).state is state


def test_retrying_result_records_the_attempt_and_when_the_next_one_is_due(
    store: SqliteTaskStore,
) -> None:
    task = _queued(store)

    assert store.record_result(_retrying(task.task_id, attempt=1, retry_in_s=4.5)) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.RETRYING
    assert record.attempt == 1
    assert record.error == _ERROR
    assert record.finished_at == T3
    assert record.next_attempt_at == T3 + timedelta(seconds=4.5)
    assert record.queued_at == T1
    assert record.duplicate_results == 0


def test_retrying_result_moves_a_submitted_task(store: SqliteTaskStore) -> None:
    # The result can overtake the publisher confirm.
    task = _task()
    store.add_submitted([task])

    assert store.record_result(_retrying(task.task_id, attempt=1)) is True

    assert store.get(task.task_id).state is TaskState.RETRYING


def test_mark_queued_never_moves_a_retrying_task_back(store: SqliteTaskStore) -> None:
    task = _task()
    store.add_submitted([task])
    store.record_result(_retrying(task.task_id, attempt=1))

    store.mark_queued([task.task_id], T1)

    assert store.get(task.task_id).state is TaskState.RETRYING


def test_each_later_retry_moves_the_task_on(store: SqliteTaskStore) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=1, retry_in_s=1.0, finished_at=T2))

    assert store.record_result(_retrying(task.task_id, attempt=2, retry_in_s=8.0, finished_at=T4))

    record = store.get(task.task_id)
    assert record.state is TaskState.RETRYING
    assert record.attempt == 2
    assert record.next_attempt_at == T4 + timedelta(seconds=8)


def test_late_retrying_report_of_an_earlier_attempt_changes_nothing(
    store: SqliteTaskStore,
) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=2, retry_in_s=8.0, finished_at=T4))
    before = store.get(task.task_id)

    assert store.record_result(_retrying(task.task_id, attempt=1, finished_at=T2)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 1
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_success_after_a_retry_is_final_and_clears_the_next_attempt(
    store: SqliteTaskStore,
) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=1, finished_at=T2))

    assert store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED, attempt=2, finished_at=T5))

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 2
    assert record.result == {"words": 2}
    assert record.error is None
    assert record.finished_at == T5
    assert record.next_attempt_at is None


def test_retries_exhausted_make_the_task_dead(store: SqliteTaskStore) -> None:
    task = _queued(store)
    for attempt in (1, 2, 3):
        store.record_result(_retrying(task.task_id, attempt=attempt))

    assert store.record_result(_outcome(task.task_id, Outcome.DEAD, attempt=4, finished_at=T5))

    record = store.get(task.task_id)
    assert record.state is TaskState.DEAD
    assert record.state.is_final
    assert record.attempt == 4
    assert record.error == _ERROR
    assert record.next_attempt_at is None


@pytest.mark.parametrize("final", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD])
def test_late_retrying_report_never_reopens_a_final_task(
    store: SqliteTaskStore, final: Outcome
) -> None:
    # A fast retry can finish before the result of the attempt that scheduled it arrives.
    task = _queued(store)
    store.record_result(_outcome(task.task_id, final, attempt=2, finished_at=T5))
    before = store.get(task.task_id)

    assert store.record_result(_retrying(task.task_id, attempt=1, finished_at=T2)) is False
    assert store.record_result(_retrying(task.task_id, attempt=3, finished_at=T5)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 2
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_first_final_outcome_wins_over_a_later_dead_result(store: SqliteTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED, attempt=1, executor="first"))

    assert store.record_result(_outcome(task.task_id, Outcome.DEAD, attempt=1)) is False

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.executor == "first"
    assert record.duplicate_results == 1


def test_dead_task_keeps_its_outcome(store: SqliteTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, Outcome.DEAD, attempt=1))

    assert store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED, attempt=1)) is False

    assert store.get(task.task_id).state is TaskState.DEAD


def test_retrying_result_for_an_unknown_task_inserts_a_record(store: SqliteTaskStore) -> None:
    task_id = uuid4()

    assert store.record_result(_retrying(task_id, attempt=3, retry_in_s=2.0)) is True

    record = store.get(task_id)
    assert record.state is TaskState.RETRYING
    assert record.attempt == 3
    assert record.params == {}
    assert record.next_attempt_at == T3 + timedelta(seconds=2)


def test_first_final_outcome_wins_even_from_an_earlier_attempt(store: SqliteTaskStore) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=2, finished_at=T4))

    assert store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED, attempt=1, finished_at=T5))

    assert store.get(task.task_id).state is TaskState.SUCCEEDED


# Schema versions


def test_new_store_is_at_the_current_schema_version(
    store: SqliteTaskStore, store_path: Path
) -> None:
    assert _user_version(store_path) == SCHEMA_VERSION
    assert "next_attempt_at" in _columns(store_path)


def test_version_one_store_is_migrated_and_keeps_its_rows(
    open_store: Callable[[], SqliteTaskStore], store_path: Path
) -> None:
    done, waiting = uuid4(), uuid4()
    _v1_database(
        store_path,
        [
            (str(done), "word_count", '{"text": "a b"}', "succeeded", 1, T0.isoformat(),
             T1.isoformat(), T2.isoformat(), T3.isoformat(), "e1", '{"words": 2}', None),
            (str(waiting), "word_count", "{}", "queued", 1, T0.isoformat(),
             T1.isoformat(), None, None, None, None, None),
        ],
    )  # fmt: skip
    assert "next_attempt_at" not in _columns(store_path)

    store = open_store()

    assert _user_version(store_path) == SCHEMA_VERSION
    assert "next_attempt_at" in _columns(store_path)
    finished = store.get(done)
    assert finished.state is TaskState.SUCCEEDED
    assert finished.params == {"text": "a b"}
    assert finished.result == {"words": 2}
    assert finished.finished_at == T3
    assert finished.next_attempt_at is None
    assert (finished.priority, finished.eta, finished.cancel_requested_at) == (0, None, None)
    assert store.get(waiting).state is TaskState.QUEUED
    assert store.record_result(_retrying(waiting, attempt=1, retry_in_s=3.0)) is True
    assert store.get(waiting).next_attempt_at == T3 + timedelta(seconds=3)


def test_migrated_store_opens_again_without_migrating_twice(
    open_store: Callable[[], SqliteTaskStore], store_path: Path
) -> None:
    task_id = uuid4()
    _v1_database(
        store_path,
        [(str(task_id), "word_count", "{}", "submitted", 1, T0.isoformat(),
          None, None, None, None, None, None)],
    )  # fmt: skip
    open_store().close()

    reopened = open_store()

    assert reopened.get(task_id).state is TaskState.SUBMITTED
    assert _columns(store_path).count("next_attempt_at") == 1


def test_store_from_newer_code_is_refused(store_path: Path) -> None:
    store_path.parent.mkdir(parents=True)
    db = sqlite3.connect(store_path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(StoreError, match="newer"):
        SqliteTaskStore(store_path)


def test_half_applied_migration_does_not_brick_the_store(
    open_store: Callable[[], SqliteTaskStore], store_path: Path
) -> None:
    _v1_database(store_path, [])
    db = sqlite3.connect(store_path)
    db.execute("ALTER TABLE tasks ADD COLUMN next_attempt_at TEXT")  # the other opener's step
    db.close()

    store = open_store()

    assert _user_version(store_path) == SCHEMA_VERSION
    assert store.get_many([uuid4()]) == []


def test_idempotency_key_is_recorded_once_across_two_stores_on_one_file(
    store_path: Path,
) -> None:
    first, second = SqliteTaskStore(store_path), SqliteTaskStore(store_path)
    a = TaskMessage(task_id=uuid4(), task_type="x", submitted_at=datetime.now(UTC))
    b = TaskMessage(task_id=uuid4(), task_type="x", submitted_at=datetime.now(UTC))

    assert first.add_submitted([a], ["key-1"]) == [a.task_id]
    assert second.add_submitted([b], ["key-1"]) == [a.task_id]

    assert second.get_many([b.task_id]) == []
    first.close()
    second.close()


def test_version_two_store_gains_idempotency_keys(store_path: Path) -> None:
    _v1_database(store_path, [])
    with sqlite3.connect(store_path) as db:
        db.execute("ALTER TABLE tasks ADD COLUMN next_attempt_at TEXT")
        db.execute("PRAGMA user_version = 2")
    store = SqliteTaskStore(store_path)
    task = TaskMessage(task_id=uuid4(), task_type="x", submitted_at=datetime.now(UTC))

    assert store.add_submitted([task], ["k"]) == [task.task_id]
    assert store.get(task.task_id).idempotency_key == "k"
    store.close()
