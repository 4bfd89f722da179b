"""Every task store keeps the same promises: each test runs on SQLite and on the real PostgreSQL.

The PostgreSQL variant gets a schema of its own, dropped afterwards; tests that race use two
store instances on one database, as two dispatcher replicas would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import psycopg
import pytest

from common import (
    ErrorKind,
    ExecutorEvent,
    Heartbeat,
    Outcome,
    ProgressMessage,
    ResultMessage,
    RunningTask,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskErrorInfo,
    TaskMessage,
    TaskNotFound,
    TaskTypeInfo,
)
from dispatcher.store.backends import open_store
from dispatcher.store.postgres import schema as postgres_schema
from dispatcher.store.postgres.connection import PostgresDialect
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.query import TaskPosition, TaskQuery
from dispatcher.store.records import ExecutorState, ScheduleRecord, TaskState
from dispatcher.store.sql.store import SqlTaskStore
from dispatcher.store.sqlite import schema as sqlite_schema
from dispatcher.store.sqlite.connection import SqliteDialect
from dispatcher.store.threaded import ThreadedTaskStore
from tests.integration.postgres import IsolatedSchema

_T = TypeVar("_T")

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1, T2, T3, T4, T5 = (T0 + timedelta(seconds=n) for n in range(1, 6))
_ERROR = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ConnectionError", message="reset")


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


@pytest.fixture(params=["sqlite", "postgresql"])
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


def _task(*, submitted_at: datetime = T0, params: dict[str, Any] | None = None) -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(),
        task_type="word_count",
        params={"text": "a b", "top": 2} if params is None else params,
        submitted_at=submitted_at,
    )


def _outcome(
    task_id: UUID,
    outcome: Outcome = Outcome.SUCCEEDED,
    *,
    attempt: int = 1,
    retry_in_s: float | None = None,
    finished_at: datetime = T3,
    executor: str = "e1",
    result: Any = None,
    redelivered: bool = False,
) -> ResultMessage:
    succeeded = outcome is Outcome.SUCCEEDED
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=outcome,
        result=(result if result is not None else {"words": 2}) if succeeded else None,
        error=None if succeeded else _ERROR,
        attempt=attempt,
        executor=executor,
        redelivered=redelivered,
        started_at=finished_at - timedelta(seconds=1),
        finished_at=finished_at,
        retry_in_s=retry_in_s,
    )


def _retrying(
    task_id: UUID, *, attempt: int, retry_in_s: float = 4.0, at: datetime = T3
) -> ResultMessage:
    return _outcome(
        task_id, Outcome.RETRYING, attempt=attempt, retry_in_s=retry_in_s, finished_at=at
    )


def _queued(store: SyncTaskStore) -> TaskMessage:
    task = _task()
    store.add_submitted([task])
    store.mark_queued([task.task_id], T1)
    return task


def _race(*calls: Callable[[], _T]) -> list[_T]:
    """Run ``calls`` on their own threads, released together by a barrier; their results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[n] = calls[n]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


# Submitting and queueing


def test_submitted_task_is_recorded_with_its_params(store: SyncTaskStore) -> None:
    task = _task()

    assert store.add_submitted([task]) == [task.task_id]

    record = store.get(task.task_id)
    assert record.state is TaskState.SUBMITTED
    assert record.task_type == "word_count"
    assert record.params == {"text": "a b", "top": 2}
    assert record.attempt == 1
    assert record.submitted_at == T0
    assert (record.queued_at, record.finished_at, record.result, record.error) == (None,) * 4
    assert record.idempotency_key is None
    assert record.duplicate_results == 0


def test_adding_no_tasks_records_nothing(store: SyncTaskStore) -> None:
    assert store.add_submitted([]) == []
    assert store.add_submitted([], []) == []


def test_mark_queued_moves_submitted_tasks_to_queued(store: SyncTaskStore) -> None:
    tasks = [_task() for _ in range(3)]
    store.add_submitted(tasks)

    store.mark_queued([t.task_id for t in tasks[:2]] + [uuid4()], T1)

    states = {r.task_id: (r.state, r.queued_at) for r in store.get_many([t.task_id for t in tasks])}
    assert states[tasks[0].task_id] == (TaskState.QUEUED, T1)
    assert states[tasks[1].task_id] == (TaskState.QUEUED, T1)
    assert states[tasks[2].task_id] == (TaskState.SUBMITTED, None)
    store.mark_queued([], T2)  # nothing to do, and no error


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.RETRYING])
def test_mark_queued_never_moves_a_task_back(store: SyncTaskStore, outcome: Outcome) -> None:
    # The result can overtake the publisher confirm.
    task = _task()
    store.add_submitted([task])
    retry_in_s = 1.0 if outcome is Outcome.RETRYING else None
    store.record_result(_outcome(task.task_id, outcome, retry_in_s=retry_in_s))

    store.mark_queued([task.task_id], T4)

    record = store.get(task.task_id)
    assert record.state.value == outcome.value
    assert record.queued_at is None


def test_a_failed_batch_is_rolled_back_whole(store: SyncTaskStore) -> None:
    existing, new = _task(), _task()
    store.add_submitted([existing])

    with pytest.raises(StoreError):
        store.add_submitted([new, existing])  # the same task id twice

    assert store.get_many([new.task_id]) == []
    assert store.get(existing.task_id).state is TaskState.SUBMITTED


# Unconfirmed tasks (the outbox)


def test_unconfirmed_lists_old_submitted_tasks_oldest_first(store: SyncTaskStore) -> None:
    old, older, new, queued = (_task(submitted_at=T0 + timedelta(minutes=m)) for m in (2, 1, 9, 0))
    store.add_submitted([old, older, new, queued])
    store.mark_queued([queued.task_id], T5)
    cutoff = T0 + timedelta(minutes=9)  # exclusive: the task submitted at the cutoff is not old

    unconfirmed = store.unconfirmed(cutoff, limit=10)

    assert unconfirmed == [older, old]
    assert store.unconfirmed(cutoff, limit=1) == [older]
    assert store.unconfirmed(T0, limit=10) == []


def test_unconfirmed_carries_what_a_republish_needs(store: SyncTaskStore) -> None:
    task = _task(params={"nested": {"list": [1, 2.5, None, True]}, "text": "é"})
    replayed = task.model_copy(update={"attempt": 3})
    store.add_submitted([task])
    store.record_result(_outcome(task.task_id, Outcome.DEAD))
    store.record_replay(replayed, T5)

    assert store.unconfirmed(T5, limit=10) == [replayed]


# Results


def test_first_result_is_recorded_with_everything_it_carries(store: SyncTaskStore) -> None:
    task = _queued(store)

    result = _outcome(task.task_id, executor="exec-a", redelivered=True)
    assert store.record_result(result) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == {"words": 2}
    assert record.executor == "exec-a"
    assert record.redelivered is True
    assert (record.started_at, record.finished_at) == (T2, T3)
    assert record.queued_at == T1
    assert record.submitted_at == T0
    assert record.next_attempt_at is None
    assert record.duplicate_results == 0


def test_duplicate_results_change_nothing_but_their_count(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, executor="first"))
    before = store.get(task.task_id)

    assert store.record_result(_outcome(task.task_id, Outcome.FAILED, executor="2nd")) is False
    assert store.record_result(_outcome(task.task_id, executor="third", attempt=2)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 2
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_a_batch_of_results_is_recorded_in_order_with_a_flag_each(store: SyncTaskStore) -> None:
    first, second = _queued(store), _queued(store)
    batch = [
        _outcome(first.task_id, executor="a"),
        _outcome(second.task_id, Outcome.FAILED, executor="b"),
        _outcome(first.task_id, Outcome.FAILED, executor="late duplicate"),
    ]

    written = store.record_results(batch, read_back={first.task_id})

    assert [w.recorded for w in written] == [True, True, False]
    # Read back as written: the late duplicate after it only counted itself.
    first_record = store.get(first.task_id).model_copy(update={"duplicate_results": 0})
    assert [w.record for w in written] == [first_record, None, None]
    assert store.get(first.task_id).state is TaskState.SUCCEEDED
    assert store.get(first.task_id).executor == "a"
    assert store.get(first.task_id).duplicate_results == 1
    assert store.get(second.task_id).state is TaskState.FAILED
    assert store.record_results([]) == []


@pytest.mark.parametrize("outcome", list(Outcome))
def test_result_for_an_unknown_task_inserts_a_record(
    store: SyncTaskStore, outcome: Outcome
) -> None:
    task_id = uuid4()

    assert store.record_result(_outcome(task_id, outcome, attempt=3, retry_in_s=2.0)) is True

    record = store.get(task_id)
    assert record.state.value == outcome.value
    assert record.task_type == "word_count"
    assert record.params == {}
    assert record.attempt == 3
    assert record.submitted_at == T2  # unknown: the attempt's start stands in


def test_retrying_records_the_attempt_and_when_the_next_is_due(store: SyncTaskStore) -> None:
    task = _queued(store)

    assert store.record_result(_retrying(task.task_id, attempt=1, retry_in_s=4.5)) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.RETRYING
    assert record.attempt == 1
    assert record.error == _ERROR
    assert record.next_attempt_at == T3 + timedelta(seconds=4.5)
    assert record.queued_at == T1


def test_each_later_retry_moves_the_task_on(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=1, retry_in_s=1.0, at=T2))

    assert store.record_result(_retrying(task.task_id, attempt=2, retry_in_s=8.0, at=T4))
    assert store.record_result(_retrying(task.task_id, attempt=2, retry_in_s=9.0, at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.RETRYING, 2)
    assert record.next_attempt_at == T5 + timedelta(seconds=9)


def test_retrying_only_moves_forward(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=2, retry_in_s=8.0, at=T4))
    before = store.get(task.task_id)

    assert store.record_result(_retrying(task.task_id, attempt=1, at=T2)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 1
    assert after.model_copy(update={"duplicate_results": 0}) == before


@pytest.mark.parametrize("final", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD])
def test_first_final_outcome_wins(store: SyncTaskStore, final: Outcome) -> None:
    task = _queued(store)
    assert store.record_result(_outcome(task.task_id, final, attempt=2, finished_at=T4))
    before = store.get(task.task_id)

    later = [
        _retrying(task.task_id, attempt=1, at=T2),
        _retrying(task.task_id, attempt=3, at=T5),
        *(_outcome(task.task_id, o, attempt=3, finished_at=T5) for o in Outcome if o != final),
    ]
    assert [store.record_result(result) for result in later] == [False] * len(later)

    after = store.get(task.task_id)
    assert after.state.value == final.value
    assert after.duplicate_results == len(later)
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_first_final_outcome_wins_even_from_an_earlier_attempt(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_retrying(task.task_id, attempt=2, at=T4))

    assert store.record_result(_outcome(task.task_id, attempt=1, finished_at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1)
    assert record.next_attempt_at is None
    assert record.error is None


def test_retries_exhausted_make_the_task_dead(store: SyncTaskStore) -> None:
    task = _queued(store)
    for attempt in (1, 2, 3):
        store.record_result(_retrying(task.task_id, attempt=attempt))

    assert store.record_result(_outcome(task.task_id, Outcome.DEAD, attempt=4, finished_at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt, record.finished_at) == (TaskState.DEAD, 4, T5)
    assert record.state.is_final
    assert record.error == _ERROR
    assert record.next_attempt_at is None


def test_results_recorded_by_two_stores_at_once_count_once(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    tasks = [_task() for _ in range(20)]
    first.add_submitted(tasks)

    for task in tasks:
        recorded = _race(
            partial(first.record_result, _outcome(task.task_id, executor="first")),
            partial(second.record_result, _outcome(task.task_id, executor="second")),
        )
        assert sorted(recorded) == [False, True]
        record = second.get(task.task_id)
        assert record.executor == ("first" if recorded[0] else "second")
        assert record.duplicate_results == 1


# Replays


def test_replay_moves_a_dead_task_back_to_submitted(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, Outcome.DEAD, attempt=4, redelivered=True))

    store.record_replay(task.model_copy(update={"attempt": 5}), T5)

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.SUBMITTED, 5)
    assert (record.queued_at, record.started_at, record.finished_at) == (None,) * 3
    assert (record.executor, record.result, record.error, record.next_attempt_at) == (None,) * 4
    assert record.redelivered is False
    assert record.submitted_at == T0
    assert store.record_result(_outcome(task.task_id, attempt=5)) is True


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RETRYING])
def test_replay_changes_nothing_unless_the_task_is_dead(
    store: SyncTaskStore, outcome: Outcome
) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, outcome, retry_in_s=1.0))
    before = store.get(task.task_id)

    store.record_replay(task.model_copy(update={"attempt": 5}), T5)

    assert store.get(task.task_id) == before


def test_replay_of_an_unknown_task_records_it(store: SyncTaskStore) -> None:
    task = _task().model_copy(update={"attempt": 2})

    store.record_replay(task, T5)

    record = store.get(task.task_id)
    assert (record.state, record.attempt, record.params) == (TaskState.SUBMITTED, 2, task.params)


# Idempotency keys


def test_a_recorded_idempotency_key_returns_the_first_task(store: SyncTaskStore) -> None:
    a, b, c, d = (_task() for _ in range(4))

    assert store.add_submitted([a, b], ["k1", None]) == [a.task_id, b.task_id]
    assert store.add_submitted([c, d], ["k1", "k2"]) == [a.task_id, d.task_id]

    assert store.get_many([c.task_id]) == []
    assert store.get(a.task_id).idempotency_key == "k1"
    assert store.get(d.task_id).idempotency_key == "k2"


def test_one_key_twice_in_one_batch_records_the_first(store: SyncTaskStore) -> None:
    a, b, c = (_task() for _ in range(3))

    assert store.add_submitted([a, b, c], ["z", None, "z"]) == [a.task_id, b.task_id, a.task_id]

    assert store.get_many([c.task_id]) == []


def test_two_stores_racing_for_one_key_record_one_task(backend: Backend) -> None:
    first, second = backend.open(), backend.open()

    for n in range(20):
        key, mine, theirs = f"key-{n}", _task(), _task()
        # Overlapping keys in opposite orders as well: neither store may deadlock.
        recorded = _race(
            partial(first.add_submitted, [mine, _task()], [key, f"a-{n}"]),
            partial(second.add_submitted, [_task(), theirs], [f"a-{n}", key]),
        )
        assert recorded[0][0] == recorded[1][1]
        assert recorded[0][1] == recorded[1][0]
        holders = first.get_many([mine.task_id, theirs.task_id])
        assert len(holders) == 1
        assert holders[0].task_id == recorded[0][0]
        assert holders[0].idempotency_key == key


# Reading


def test_get_of_a_missing_id_raises_task_not_found(store: SyncTaskStore) -> None:
    task_id = uuid4()

    with pytest.raises(TaskNotFound) as caught:
        store.get(task_id)

    assert caught.value.task_id == task_id


def test_get_many_returns_only_the_records_that_exist(store: SyncTaskStore) -> None:
    tasks = [_task() for _ in range(1234)]
    store.add_submitted(tasks)
    asked = [t.task_id for t in tasks] + [uuid4() for _ in range(10)]

    records = store.get_many(asked)

    assert {r.task_id for r in records} == {t.task_id for t in tasks}
    assert store.get_many([]) == []


def test_error_info_round_trips(store: SyncTaskStore) -> None:
    task = _queued(store)
    error = TaskErrorInfo(
        kind=ErrorKind.INVALID_PARAMS,
        type="InvalidParams",
        message="top: too big — ünïcode",
        traceback="Traceback (most recent call last):\n  ...\nValueError: x",
        details=[{"loc": ["top"], "msg": "too big", "type": "less_than_equal", "ctx": None}],
    )
    result = _outcome(task.task_id, Outcome.FAILED).model_copy(update={"error": error})

    store.record_result(result)

    record = store.get(task.task_id)
    assert record.error == error
    assert record.result is None


@pytest.mark.parametrize(
    "value",
    [
        {"words": 2, "nested": {"list": [1, -2, 3.25, 1e-7, None, True, False], "s": "日本"}},
        [1, "two", {"three": 3}],
        'plain string with "quotes" and \\ backslash',
        0,
        12345678901234567,
        2.5,
        False,
        "",
        [],
        {},
    ],
    ids=repr,
)
def test_json_results_round_trip(store: SyncTaskStore, value: Any) -> None:
    task = _queued(store)

    store.record_result(_outcome(task.task_id, result=value))

    assert store.get(task.task_id).result == value


def test_a_null_result_reads_back_as_none(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id).model_copy(update={"result": None}))

    assert store.get(task.task_id).result is None


def test_timestamps_keep_their_instant_and_a_time_zone(store: SyncTaskStore) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    submitted = datetime(2026, 7, 1, 23, 59, 59, 999999, tzinfo=india)
    task = _task(submitted_at=submitted)
    store.add_submitted([task])
    store.mark_queued([task.task_id], submitted.astimezone(UTC) + timedelta(microseconds=1))

    record = store.get(task.task_id)

    assert record.submitted_at == submitted
    assert record.submitted_at.tzinfo is not None
    assert record.queued_at == submitted + timedelta(microseconds=1)
    assert record.queued_at is not None
    assert record.queued_at.tzinfo is not None


# Sharing, closing and async use


def test_two_stores_on_one_database_see_each_others_writes(backend: Backend) -> None:
    writer, reader = backend.open(), backend.open()
    task = _task()

    writer.add_submitted([task])
    assert reader.get(task.task_id).state is TaskState.SUBMITTED
    assert reader.record_result(_outcome(task.task_id)) is True
    assert writer.record_result(_outcome(task.task_id)) is False

    assert writer.get(task.task_id).duplicate_results == 1


def test_data_survives_closing_and_reopening(backend: Backend) -> None:
    task = _task()
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
        store.add_submitted([_task()])


async def test_threaded_store_gives_the_async_interface(backend: Backend) -> None:
    store = ThreadedTaskStore(open_store(backend.location))
    task = _task()
    try:
        assert await store.add_submitted([task], ["k"]) == [task.task_id]
        await store.mark_queued([task.task_id], T1)
        assert await store.unconfirmed(T5, 10) == []
        assert await store.record_result(_outcome(task.task_id)) is True
        assert await store.record_result(_outcome(task.task_id)) is False
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

    task = _task()
    monkeypatch.setattr(db, "write", spy("add_submitted"))
    store.add_submitted([task])
    monkeypatch.setattr(db, "write", spy("mark_queued"))
    store.mark_queued([task.task_id], T1)
    monkeypatch.setattr(db, "write", spy("record_heartbeat"))
    store.record_heartbeat(_heartbeat())
    monkeypatch.setattr(db, "write", spy("record_progress"))
    store.record_progress(_progress(task.task_id, 50, T2))
    monkeypatch.setattr(db, "write", spy("request_cancel"))
    store.request_cancel(task.task_id, T2)
    monkeypatch.setattr(db, "write", spy("record_results"))
    store.record_result(_outcome(task.task_id))

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
    task = _task()
    backend.open().add_submitted([task])

    again = backend.open()
    backend.open()

    assert backend.schema_version() == backend.current_version
    assert again.get(task.task_id).state is TaskState.SUBMITTED


def test_stores_opening_a_new_database_at_once_migrate_it_once(backend: Backend) -> None:
    opened = _race(*[lambda: open_store(backend.location) for _ in range(4)])
    backend.opened.extend(opened)
    task = _task()

    opened[0].add_submitted([task])

    assert backend.schema_version() == backend.current_version
    assert all(store.get(task.task_id).task_id == task.task_id for store in opened)


def test_a_store_from_newer_code_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.set_schema_version(backend.current_version + 1)

    with pytest.raises(StoreError, match="newer"):
        open_store(backend.location)


# Executors and task types


def _heartbeat(
    executor: str = "host-1.42",
    *,
    at: datetime = T1,
    event: ExecutorEvent = ExecutorEvent.HEARTBEAT,
    processed: int = 0,
    running: int = 0,
) -> Heartbeat:
    return Heartbeat(
        event=event,
        executor=executor,
        host="host-1",
        pid=42,
        slots=4,
        started_at=T0,
        sent_at=at,
        task_types=[TaskTypeInfo(name="word_count", params_schema={"type": "object"})],
        current_tasks=[
            RunningTask(task_id=uuid4(), task_type="word_count", started_at=at)
            for _ in range(running)
        ],
        processed=processed,
        failed=1,
        cpu_percent=12.5,
        rss_bytes=30_000_000,
    )


def test_heartbeats_upsert_one_row_per_executor(store: SyncTaskStore) -> None:
    store.record_heartbeat(_heartbeat(at=T1, processed=1))
    store.record_heartbeat(_heartbeat(at=T2, processed=5, running=2))
    store.record_heartbeat(_heartbeat("other", at=T1))

    first, second = store.list_executors()

    assert (first.executor_id, second.executor_id) == ("host-1.42", "other")
    assert (first.last_seen_at, first.processed, first.failed) == (T2, 5, 1)
    assert (first.host, first.pid, first.slots, first.started_at) == ("host-1", 42, 4, T0)
    assert first.task_types == ["word_count"]
    assert len(first.current_tasks) == 2
    assert first.current_tasks[0].started_at == T2
    assert (first.cpu_percent, first.rss_bytes, first.stopped_at) == (12.5, 30_000_000, None)


def test_an_older_heartbeat_does_not_overwrite_a_newer_one(store: SyncTaskStore) -> None:
    store.record_heartbeat(_heartbeat(at=T3, processed=9))
    store.record_heartbeat(_heartbeat(at=T2, processed=1))

    (executor,) = store.list_executors()

    assert (executor.last_seen_at, executor.processed) == (T3, 9)


def test_a_clean_stop_is_recorded_and_a_restart_clears_it(store: SyncTaskStore) -> None:
    store.record_heartbeat(_heartbeat(at=T2, event=ExecutorEvent.STOPPED))
    (stopped,) = store.list_executors()
    assert stopped.stopped_at == T2
    assert stopped.with_state(T5, lost_after=60).state is ExecutorState.STOPPED

    store.record_heartbeat(_heartbeat(at=T3, event=ExecutorEvent.STARTED))
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


async def test_threaded_store_records_heartbeats_and_task_types(backend: Backend) -> None:
    store = ThreadedTaskStore(open_store(backend.location))
    try:
        await store.record_heartbeat(_heartbeat())
        info = TaskTypeInfo(name="echo", params_schema={"type": "object"})
        await store.publish_task_types([info], published_by="e1", at=T1)
        assert [e.executor_id for e in await store.list_executors()] == ["host-1.42"]
        assert [t.name for t in await store.list_task_types()] == ["echo"]
    finally:
        await store.close()


# Listing


def _submitted_at(
    store: SyncTaskStore, *times: datetime, task_type: str = "word_count"
) -> list[UUID]:
    tasks = [_task(submitted_at=at).model_copy(update={"task_type": task_type}) for at in times]
    store.add_submitted(tasks)
    return [t.task_id for t in tasks]


def test_listing_is_newest_first_and_ties_break_by_id(store: SyncTaskStore) -> None:
    older = _submitted_at(store, T1)
    tied = _submitted_at(store, T2, T2, T2)
    newer = _submitted_at(store, T3)

    listed = [r.task_id for r in store.list_tasks(TaskQuery())]

    assert listed == newer + sorted(tied, key=str, reverse=True) + older


def test_listing_orders_instants_whatever_their_time_zone(store: SyncTaskStore) -> None:
    # 03:04:06 UTC, then 03:04:07 UTC written as 08:34:07+05:30, then 03:04:08 UTC.
    india = timezone(timedelta(hours=5, minutes=30))
    first = _submitted_at(store, T1)
    second = _submitted_at(store, T2.astimezone(india))
    third = _submitted_at(store, T3)

    listed = [r.task_id for r in store.list_tasks(TaskQuery())]
    after = store.list_tasks(TaskQuery(submitted_after=T1.astimezone(india)))

    assert listed == third + second + first
    assert [r.task_id for r in after] == third + second


def test_listing_filters_by_states_type_and_time(store: SyncTaskStore) -> None:
    queued = _submitted_at(store, T1, T2, T3, T4)
    store.mark_queued(queued, T5)
    submitted = _submitted_at(store, T2, T3)
    other_type = _submitted_at(store, T3, task_type="echo")

    def ids(**filters: Any) -> set[UUID]:
        return {r.task_id for r in store.list_tasks(TaskQuery(**filters))}

    assert ids(states=(TaskState.QUEUED,)) == set(queued)
    assert ids(states=(TaskState.QUEUED, TaskState.SUBMITTED)) == {*queued, *submitted, *other_type}
    assert ids(states=(TaskState.SUCCEEDED,)) == set()
    assert ids(task_type="echo") == set(other_type)
    # Both bounds are strict.
    assert ids(submitted_after=T2, submitted_before=T4) == {queued[2], submitted[1], *other_type}
    assert ids(task_type="word_count", states=(TaskState.SUBMITTED,), submitted_after=T2) == {
        submitted[1]
    }


def test_pages_cover_every_task_once_while_new_ones_arrive(store: SyncTaskStore) -> None:
    existing = set(_submitted_at(store, *(T0 + timedelta(milliseconds=n % 7) for n in range(23))))
    seen: list[UUID] = []
    after = None
    while True:
        page = store.list_tasks(TaskQuery(after=after, limit=5))
        assert len(page) <= 5
        seen.extend(r.task_id for r in page)
        if len(page) < 5:
            break
        after = TaskPosition.of(page[-1])
        _submitted_at(store, T5)  # newer than every page: never in a later one

    assert len(seen) == len(set(seen))
    assert set(seen) == existing


def test_listing_respects_the_limit(store: SyncTaskStore) -> None:
    _submitted_at(store, T1, T2, T3)

    assert len(store.list_tasks(TaskQuery(limit=2))) == 2
    assert store.list_tasks(TaskQuery(task_type="nothing")) == []


def test_listed_records_equal_the_records_get_returns(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id))

    (listed,) = store.list_tasks(TaskQuery())

    assert listed == store.get(task.task_id)


def test_ping_answers_while_open_and_raises_once_closed(backend: Backend) -> None:
    store = open_store(backend.location)
    store.ping()
    store.close()

    with pytest.raises(StoreError):
        store.ping()


async def test_threaded_store_lists_and_pings(backend: Backend) -> None:
    store = ThreadedTaskStore(open_store(backend.location))
    task = _task()
    try:
        await store.add_submitted([task])
        await store.ping()
        listed = await store.list_tasks(TaskQuery(states=(TaskState.SUBMITTED,)))
    finally:
        await store.close()

    assert [r.task_id for r in listed] == [task.task_id]


# Cancel and progress


def _make_scheduled(backend: Backend, task_id: UUID) -> None:
    """Put a task in state ``scheduled`` behind the store's back (the scheduler's job)."""
    if isinstance(backend.location, Path):
        db = sqlite3.connect(backend.location)
        try:
            db.execute("UPDATE tasks SET state = 'scheduled' WHERE task_id = ?", (str(task_id),))
            db.commit()
        finally:
            db.close()
    else:
        with psycopg.connect(backend.location, autocommit=True) as pg:
            pg.execute("UPDATE wq_tasks SET state = 'scheduled' WHERE task_id = %s", (task_id,))


def _progress(task_id: UUID, percent: float, at: datetime, note: str | None = None) -> Any:
    return ProgressMessage(
        task_id=task_id,
        task_type="word_count",
        executor="e1",
        percent=percent,
        note=note,
        reported_at=at,
    )


def test_a_cancel_request_flags_an_open_task_and_keeps_its_state(store: SyncTaskStore) -> None:
    task = _queued(store)

    assert store.request_cancel(task.task_id, T2) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.QUEUED
    assert record.cancel_requested_at == T2
    assert record.finished_at is None


def test_asking_again_keeps_the_first_cancel_time(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.request_cancel(task.task_id, T2)

    assert store.request_cancel(task.task_id, T4) is True

    assert store.get(task.task_id).cancel_requested_at == T2


def test_a_scheduled_task_is_cancelled_outright(backend: Backend) -> None:
    store = backend.open()
    task = _task()
    store.add_submitted([task])
    _make_scheduled(backend, task.task_id)

    assert store.request_cancel(task.task_id, T2) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.CANCELLED
    assert record.state.is_final
    assert record.cancel_requested_at == T2
    assert record.finished_at == T2


@pytest.mark.parametrize("final", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD])
def test_a_cancel_request_leaves_a_final_task_alone(store: SyncTaskStore, final: Outcome) -> None:
    task = _queued(store)
    store.record_result(_outcome(task.task_id, final))
    before = store.get(task.task_id)

    assert store.request_cancel(task.task_id, T4) is False

    assert store.get(task.task_id) == before


def test_a_cancel_request_for_an_unknown_task_changes_nothing(store: SyncTaskStore) -> None:
    unknown = uuid4()

    assert store.request_cancel(unknown, T2) is False
    assert store.get_many([unknown]) == []


def test_a_cancelled_outcome_is_final_and_the_first_final_outcome_wins(
    store: SyncTaskStore,
) -> None:
    task = _queued(store)
    store.request_cancel(task.task_id, T2)

    assert store.record_result(_outcome(task.task_id, Outcome.CANCELLED)) is True
    assert store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED, finished_at=T5)) is False

    record = store.get(task.task_id)
    assert record.state is TaskState.CANCELLED
    assert record.error == _ERROR
    assert record.duplicate_results == 1


def test_a_task_that_ignored_its_cancel_keeps_its_outcome_and_the_request(
    store: SyncTaskStore,
) -> None:
    task = _queued(store)
    store.request_cancel(task.task_id, T2)

    store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED))

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.cancel_requested_at == T2


def test_progress_is_recorded_with_its_note_and_time(store: SyncTaskStore) -> None:
    task = _queued(store)

    assert store.record_progress(_progress(task.task_id, 42.5, T2, "page 3 of 7")) is True

    record = store.get(task.task_id)
    assert (record.progress, record.progress_note, record.progress_at) == (42.5, "page 3 of 7", T2)


def test_progress_never_moves_backwards_in_time(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_progress(_progress(task.task_id, 60, T3, "later"))

    assert store.record_progress(_progress(task.task_id, 30, T2, "earlier")) is False
    assert store.record_progress(_progress(task.task_id, 60, T3, "same time")) is False
    assert store.record_progress(_progress(task.task_id, 80, T4)) is True

    record = store.get(task.task_id)
    assert (record.progress, record.progress_note, record.progress_at) == (80, None, T4)


def test_progress_times_in_other_zones_compare_as_instants(store: SyncTaskStore) -> None:
    task = _queued(store)
    plus_two = timezone(timedelta(hours=2))
    store.record_progress(_progress(task.task_id, 10, T3))

    # T2 written in UTC+2 reads as a larger wall-clock time, but is the earlier instant.
    assert store.record_progress(_progress(task.task_id, 5, T2.astimezone(plus_two))) is False
    assert store.record_progress(_progress(task.task_id, 20, T4.astimezone(plus_two))) is True

    assert store.get(task.task_id).progress_at == T4


def test_progress_after_the_outcome_is_ignored(store: SyncTaskStore) -> None:
    task = _queued(store)
    store.record_progress(_progress(task.task_id, 50, T2))
    store.record_result(_outcome(task.task_id, Outcome.SUCCEEDED))

    assert store.record_progress(_progress(task.task_id, 90, T5)) is False

    assert store.get(task.task_id).progress == 50


def test_progress_of_an_unknown_task_records_nothing(store: SyncTaskStore) -> None:
    unknown = uuid4()

    assert store.record_progress(_progress(unknown, 50, T2)) is False
    assert store.get_many([unknown]) == []


async def test_threaded_store_cancels_and_records_progress(backend: Backend) -> None:
    threaded = ThreadedTaskStore(backend.open())
    task = _task()
    await threaded.add_submitted([task])

    assert await threaded.request_cancel(task.task_id, T2) is True
    assert await threaded.record_progress(_progress(task.task_id, 5, T3)) is True

    record = await threaded.get(task.task_id)
    assert (record.cancel_requested_at, record.progress) == (T2, 5)


# Priorities, delayed tasks and cron schedules


def _schedule(name: str = "nightly", *, next_fire_at: datetime = T2) -> ScheduleRecord:
    return ScheduleRecord(
        schedule_id=uuid4(),
        name=name,
        cron="*/5 * * * *",
        timezone="Europe/Berlin",
        task_type="word_count",
        params={"text": "a b"},
        priority=3,
        next_fire_at=next_fire_at,
        created_at=T0,
        updated_at=T0,
    )


def test_priority_is_recorded_and_republished(store: SyncTaskStore) -> None:
    task = _task().model_copy(update={"priority": 7})
    store.add_submitted([task])

    assert store.get(task.task_id).priority == 7
    assert store.unconfirmed(T5, 10)[0].priority == 7


def test_a_delayed_task_is_scheduled_with_its_eta_and_not_in_the_outbox(
    store: SyncTaskStore,
) -> None:
    task = _task().model_copy(update={"priority": 2})
    assert store.add_scheduled([task], [T3]) == [task.task_id]

    record = store.get(task.task_id)
    assert record.state is TaskState.SCHEDULED
    assert record.eta == T3
    assert record.priority == 2
    assert store.unconfirmed(T5 + timedelta(days=1), 10) == []


def test_claim_due_moves_only_due_tasks_to_submitted(store: SyncTaskStore) -> None:
    due, later = _task(), _task()
    store.add_scheduled([due, later], [T2, T4])

    assert store.claim_due(T3, 10) == [due]
    assert store.claim_due(T3, 10) == []
    assert store.get(due.task_id).state is TaskState.SUBMITTED
    assert store.get(later.task_id).state is TaskState.SCHEDULED


def test_a_just_claimed_task_waits_its_full_outbox_age(store: SyncTaskStore) -> None:
    # Submitted long ago, due long ago, claimed at T5: the outbox counts from the claim.
    task = _task(submitted_at=T0)
    store.add_scheduled([task], [T1])
    store.claim_due(T5, 10)

    assert store.unconfirmed(T4, 10) == []
    assert store.get(task.task_id).eta == T5
    assert [t.task_id for t in store.unconfirmed(T5 + timedelta(seconds=1), 10)] == [task.task_id]


def test_scheduled_tasks_keep_idempotency_keys(store: SyncTaskStore) -> None:
    first, again = _task(), _task()

    assert store.add_scheduled([first], [T3], ["k"]) == [first.task_id]
    assert store.add_submitted([again], ["k"]) == [first.task_id]


def test_two_stores_claiming_at_once_claim_each_task_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    tasks = [_task() for _ in range(40)]
    a.add_scheduled(tasks, [T1] * len(tasks))

    claimed = _race(*(partial(s.claim_due, T2, 7) for s in (a, b, a, b)))
    while more := a.claim_due(T2, 100):
        claimed.append(more)

    ids = [t.task_id for batch in claimed for t in batch]
    assert sorted(ids) == sorted(t.task_id for t in tasks)


def test_a_schedule_round_trips(store: SyncTaskStore) -> None:
    schedule = _schedule()
    store.add_schedule(schedule)

    assert store.get_schedule("nightly") == schedule
    assert store.list_schedules() == [schedule]


def test_schedule_names_are_unique(store: SyncTaskStore) -> None:
    store.add_schedule(_schedule())

    with pytest.raises(ScheduleExists):
        store.add_schedule(_schedule())


def test_a_missing_schedule_raises_schedule_not_found(store: SyncTaskStore) -> None:
    with pytest.raises(ScheduleNotFound):
        store.get_schedule("nope")
    with pytest.raises(ScheduleNotFound):
        store.delete_schedule("nope")
    with pytest.raises(ScheduleNotFound):
        store.set_schedule_paused("nope", paused=True, next_fire_at=None, at=T1)


def test_pause_resume_and_delete(store: SyncTaskStore) -> None:
    store.add_schedule(_schedule())

    paused = store.set_schedule_paused("nightly", paused=True, next_fire_at=None, at=T1)
    assert (paused.paused, paused.next_fire_at, paused.updated_at) == (True, T2, T1)
    assert store.due_schedules(T5, 10) == []
    resumed = store.set_schedule_paused("nightly", paused=False, next_fire_at=T4, at=T3)
    assert (resumed.paused, resumed.next_fire_at) == (False, T4)
    assert store.due_schedules(T5, 10) == [resumed]
    store.delete_schedule("nightly")
    assert store.list_schedules() == []


def test_firing_advances_the_schedule_and_records_its_task(store: SyncTaskStore) -> None:
    schedule = _schedule()
    store.add_schedule(schedule)
    task = _task(submitted_at=T3).model_copy(update={"priority": 3})

    assert store.fire_schedule(schedule, T4, task, "schedule:x:T2")

    after = store.get_schedule("nightly")
    assert (after.next_fire_at, after.last_fire_at, after.last_task_id) == (T4, T2, task.task_id)
    record = store.get(task.task_id)
    assert record.state is TaskState.SUBMITTED
    assert (record.schedule_id, record.eta, record.priority) == (schedule.schedule_id, T2, 3)
    assert record.idempotency_key == "schedule:x:T2"
    # Its fire time is old, but it was recorded at T3: the outbox waits from then.
    assert store.unconfirmed(T3, 10) == []


def test_a_schedule_read_before_another_fired_it_fires_nothing(store: SyncTaskStore) -> None:
    schedule = _schedule()
    store.add_schedule(schedule)
    store.fire_schedule(schedule, T4, _task(), "k1")
    late = _task()

    assert not store.fire_schedule(schedule, T4, late, "k2")
    assert store.get_many([late.task_id]) == []


def test_a_paused_schedule_does_not_fire(store: SyncTaskStore) -> None:
    schedule = _schedule()
    store.add_schedule(schedule)
    store.set_schedule_paused("nightly", paused=True, next_fire_at=None, at=T1)

    assert not store.fire_schedule(schedule, T4, _task(), "k")


def test_two_stores_firing_one_schedule_at_once_record_one_task(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    schedule = _schedule()
    a.add_schedule(schedule)
    tasks = [_task() for _ in range(4)]
    key = "schedule:race:T2"

    fired = _race(
        *(
            partial(s.fire_schedule, schedule, T4, t, key)
            for s, t in zip((a, b, a, b), tasks, strict=True)
        )
    )

    assert sorted(fired) == [False, False, False, True]
    assert len(a.get_many([t.task_id for t in tasks])) == 1
