"""What only the SQLite task store does: old schema versions, ``:memory:``, its file and limits.

The promises every store keeps (lifecycle, first result wins, keys, schedules, sharing a
database) are tested on SQLite and PostgreSQL alike in tests/contract/store/.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from common import ErrorKind, Outcome, ResultMessage, StoreError, TaskErrorInfo, TaskMessage
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskState
from dispatcher.store.sql.dialect import Transaction
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite.connection import SqliteDialect
from dispatcher.store.sqlite.schema import SCHEMA_VERSION


def _sqlite(path: Path | str) -> SqlTaskStore:
    return SqlTaskStore(SqliteDialect(path))


T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)
T2 = T0 + timedelta(seconds=2)
T3 = T0 + timedelta(seconds=3)

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
def open_store(store_path: Path) -> Iterator[Callable[[], SqlTaskStore]]:
    """Opens stores on the test's file and closes them all afterwards."""
    opened: list[SqlTaskStore] = []

    def factory() -> SqlTaskStore:
        store = _sqlite(store_path)
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        store.close()


@pytest.fixture
def store(open_store: Callable[[], SqlTaskStore]) -> SqlTaskStore:
    return open_store()


def _task(task_type: str = "word_count") -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(), task_type=task_type, params={"text": "a b", "top": 2}, submitted_at=T0
    )


def _retrying(task_id: UUID, *, attempt: int, retry_in_s: float) -> ResultMessage:
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=Outcome.RETRYING,
        error=TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ConnectionError", message="x"),
        attempt=attempt,
        executor="e1",
        started_at=T2,
        finished_at=T3,
        retry_in_s=retry_in_s,
    )


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


def test_sqlite_errors_become_store_errors_and_roll_back(store: SqlTaskStore) -> None:
    existing, new = _task(), _task()
    store.add_submitted([existing])

    with pytest.raises(StoreError, match="write failed"):
        store.add_submitted([new, existing])

    assert store.get_many([new.task_id]) == []


def test_a_commit_that_fails_is_rolled_back_and_leaves_the_connection_usable(
    store: SqlTaskStore,
) -> None:
    db = store._db
    assert isinstance(db, SqliteDialect)

    def deferred_violation(tx: Transaction) -> None:
        # A deferred foreign key is checked only at COMMIT, which then fails and leaves the
        # transaction open.
        tx.run("INSERT INTO child (parent) VALUES (42)", {})

    db.write(lambda tx: tx.run("CREATE TABLE parent (id INTEGER PRIMARY KEY)", {}))
    db.write(
        lambda tx: tx.run(
            "CREATE TABLE child (parent REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)", {}
        )
    )
    db._connection.execute("PRAGMA foreign_keys = ON")  # outside a transaction, or it is ignored

    for durable in (True, False):
        with pytest.raises(StoreError, match="FOREIGN KEY"):
            db.write(deferred_violation, durable=durable)
        task = _task()
        store.add_submitted([task])
        assert store.get(task.task_id).task_id == task.task_id
        synchronous = db.write(lambda tx: tx.run("PRAGMA synchronous", {}).rows)
        assert synchronous == [{"synchronous": 2}]
    assert db.read("SELECT count(*) AS n FROM child", {}) == [{"n": 0}]


def test_get_many_handles_more_ids_than_sqlite_binds_at_once(store: SqlTaskStore) -> None:
    tasks = [_task() for _ in range(1234)]
    store.add_submitted(tasks)

    records = store.get_many([t.task_id for t in tasks])

    assert {r.task_id for r in records} == {t.task_id for t in tasks}


def test_in_memory_store_works() -> None:
    store = _sqlite(":memory:")
    task = _task()
    try:
        store.add_submitted([task])
        store.mark_queued([task.task_id], T1)
        record = store.get(task.task_id)
    finally:
        store.close()

    assert record.state is TaskState.QUEUED


# States


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


# Schema versions


def test_version_one_store_is_migrated_and_keeps_its_rows(
    open_store: Callable[[], SqlTaskStore], store_path: Path
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
    open_store: Callable[[], SqlTaskStore], store_path: Path
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
        _sqlite(store_path)


def test_half_applied_migration_does_not_brick_the_store(
    open_store: Callable[[], SqlTaskStore], store_path: Path
) -> None:
    _v1_database(store_path, [])
    db = sqlite3.connect(store_path)
    db.execute("ALTER TABLE tasks ADD COLUMN next_attempt_at TEXT")  # the other opener's step
    db.close()

    store = open_store()

    assert _user_version(store_path) == SCHEMA_VERSION
    assert store.get_many([uuid4()]) == []


def test_version_two_store_gains_idempotency_keys(store_path: Path) -> None:
    _v1_database(store_path, [])
    with sqlite3.connect(store_path) as db:
        db.execute("ALTER TABLE tasks ADD COLUMN next_attempt_at TEXT")
        db.execute("PRAGMA user_version = 2")
    store = _sqlite(store_path)
    task = TaskMessage(task_id=uuid4(), task_type="x", submitted_at=datetime.now(UTC))

    assert store.add_submitted([task], ["k"]) == [task.task_id]
    assert store.get(task.task_id).idempotency_key == "k"
    store.close()


def test_older_submission_times_are_rewritten_as_utc_and_list_in_time_order(
    open_store: Callable[[], SqlTaskStore], store_path: Path
) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    # Written by older code: another offset, no microseconds, no offset at all.
    early, middle, late = uuid4(), uuid4(), uuid4()
    _v1_database(
        store_path,
        [
            (str(late), "echo", "{}", "queued", 1, (T0 + timedelta(hours=2)).astimezone(india)
             .isoformat(), None, None, None, None, None, None),
            (str(early), "echo", "{}", "queued", 1, T0.replace(microsecond=0).isoformat(),
             None, None, None, None, None, None),
            (str(middle), "echo", "{}", "queued", 1, (T0 + timedelta(hours=1)).replace(
                tzinfo=None).isoformat(), None, None, None, None, None, None),
        ],
    )  # fmt: skip

    store = open_store()
    db = sqlite3.connect(store_path)
    try:
        stored = [row[0] for row in db.execute("SELECT submitted_at FROM tasks")]
    finally:
        db.close()

    assert all(len(text) == 32 and text.endswith("+00:00") for text in stored), stored
    assert [r.task_id for r in store.list_tasks(TaskQuery())] == [late, middle, early]
    after = store.list_tasks(TaskQuery(submitted_after=T0 + timedelta(minutes=30)))
    assert [r.task_id for r in after] == [late, middle]
    assert store.get(late).submitted_at == T0 + timedelta(hours=2)
