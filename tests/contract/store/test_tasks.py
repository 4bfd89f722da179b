"""The store contract, on every backend: submitting, confirming, the outbox, idempotency keys,
reading and listing tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any
from uuid import UUID, uuid4

import pytest

from common import (
    ErrorKind,
    Outcome,
    StoreError,
    TaskErrorInfo,
    TaskNotFound,
)
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.query import TaskPosition, TaskQuery
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    T0,
    T1,
    T2,
    T3,
    T4,
    T5,
    a_queued_task,
    a_task,
    an_outcome,
    race,
)

# Submitting and queueing


def test_submitted_task_is_recorded_with_its_params(store: SyncTaskStore) -> None:
    task = a_task()

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
    tasks = [a_task() for _ in range(3)]
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
    task = a_task()
    store.add_submitted([task])
    retry_in_s = 1.0 if outcome is Outcome.RETRYING else None
    store.record_result(an_outcome(task.task_id, outcome, retry_in_s=retry_in_s))

    store.mark_queued([task.task_id], T4)

    record = store.get(task.task_id)
    assert record.state.value == outcome.value
    assert record.queued_at is None


def test_a_failed_batch_is_rolled_back_whole(store: SyncTaskStore) -> None:
    existing, new = a_task(), a_task()
    store.add_submitted([existing])

    with pytest.raises(StoreError):
        store.add_submitted([new, existing])  # the same task id twice

    assert store.get_many([new.task_id]) == []
    assert store.get(existing.task_id).state is TaskState.SUBMITTED


# Unconfirmed tasks (the outbox)


def test_unconfirmed_lists_old_submitted_tasks_oldest_first(store: SyncTaskStore) -> None:
    old, older, new, queued = (a_task(submitted_at=T0 + timedelta(minutes=m)) for m in (2, 1, 9, 0))
    store.add_submitted([old, older, new, queued])
    store.mark_queued([queued.task_id], T5)
    cutoff = T0 + timedelta(minutes=9)  # exclusive: the task submitted at the cutoff is not old

    unconfirmed = store.unconfirmed(cutoff, limit=10)

    assert unconfirmed == [older, old]
    assert store.unconfirmed(cutoff, limit=1) == [older]
    assert store.unconfirmed(T0, limit=10) == []


def test_unconfirmed_carries_what_a_republish_needs(store: SyncTaskStore) -> None:
    task = a_task(params={"nested": {"list": [1, 2.5, None, True]}, "text": "é"})
    replayed = task.model_copy(update={"attempt": 3})
    store.add_submitted([task])
    store.record_result(an_outcome(task.task_id, Outcome.DEAD))
    store.record_replay(replayed, T5)

    assert store.unconfirmed(T5, limit=10) == [replayed]


# Idempotency keys


def test_a_recorded_idempotency_key_returns_the_first_task(store: SyncTaskStore) -> None:
    a, b, c, d = (a_task() for _ in range(4))

    assert store.add_submitted([a, b], ["k1", None]) == [a.task_id, b.task_id]
    assert store.add_submitted([c, d], ["k1", "k2"]) == [a.task_id, d.task_id]

    assert store.get_many([c.task_id]) == []
    assert store.get(a.task_id).idempotency_key == "k1"
    assert store.get(d.task_id).idempotency_key == "k2"


def test_one_key_twice_in_one_batch_records_the_first(store: SyncTaskStore) -> None:
    a, b, c = (a_task() for _ in range(3))

    assert store.add_submitted([a, b, c], ["z", None, "z"]) == [a.task_id, b.task_id, a.task_id]

    assert store.get_many([c.task_id]) == []


def test_two_stores_racing_for_one_key_record_one_task(backend: Backend) -> None:
    first, second = backend.open(), backend.open()

    for n in range(20):
        key, mine, theirs = f"key-{n}", a_task(), a_task()
        # Overlapping keys in opposite orders as well: neither store may deadlock.
        recorded = race(
            partial(first.add_submitted, [mine, a_task()], [key, f"a-{n}"]),
            partial(second.add_submitted, [a_task(), theirs], [f"a-{n}", key]),
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
    tasks = [a_task() for _ in range(1234)]
    store.add_submitted(tasks)
    asked = [t.task_id for t in tasks] + [uuid4() for _ in range(10)]

    records = store.get_many(asked)

    assert {r.task_id for r in records} == {t.task_id for t in tasks}
    assert store.get_many([]) == []


def test_error_info_round_trips(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    error = TaskErrorInfo(
        kind=ErrorKind.INVALID_PARAMS,
        type="InvalidParams",
        message="top: too big — ünïcode",
        traceback="Traceback (most recent call last):\n  ...\nValueError: x",
        details=[{"loc": ["top"], "msg": "too big", "type": "less_than_equal", "ctx": None}],
    )
    result = an_outcome(task.task_id, Outcome.FAILED).model_copy(update={"error": error})

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
    task = a_queued_task(store)

    store.record_result(an_outcome(task.task_id, result=value))

    assert store.get(task.task_id).result == value


def test_a_null_result_reads_back_as_none(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id).model_copy(update={"result": None}))

    assert store.get(task.task_id).result is None


def test_timestamps_keep_their_instant_and_a_time_zone(store: SyncTaskStore) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    submitted = datetime(2026, 7, 1, 23, 59, 59, 999999, tzinfo=india)
    task = a_task(submitted_at=submitted)
    store.add_submitted([task])
    store.mark_queued([task.task_id], submitted.astimezone(UTC) + timedelta(microseconds=1))

    record = store.get(task.task_id)

    assert record.submitted_at == submitted
    assert record.submitted_at.tzinfo is not None
    assert record.queued_at == submitted + timedelta(microseconds=1)
    assert record.queued_at is not None
    assert record.queued_at.tzinfo is not None


# Listing


def _submitted_at(
    store: SyncTaskStore, *times: datetime, task_type: str = "word_count"
) -> list[UUID]:
    tasks = [a_task(submitted_at=at).model_copy(update={"task_type": task_type}) for at in times]
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
        found = {r.task_id for r in store.list_tasks(TaskQuery(**filters))}
        assert store.count_tasks(TaskQuery(**filters, limit=1)) == len(found)  # never the limit
        return found

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
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id))

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
    task = a_task()
    try:
        await store.add_submitted([task])
        await store.ping()
        listed = await store.list_tasks(TaskQuery(states=(TaskState.SUBMITTED,)))
    finally:
        await store.close()

    assert [r.task_id for r in listed] == [task.task_id]


def test_submissions_are_counted_by_type_in_a_half_open_window(store: SyncTaskStore) -> None:
    tasks = [a_task(submitted_at=at) for at in (T0, T1, T2)]
    tasks.append(a_task(submitted_at=T1).model_copy(update={"task_type": "resize"}))
    store.add_submitted(tasks)

    assert store.count_submitted(T0, T2) == {"word_count": 2, "resize": 1}
    assert store.count_submitted(T0 - timedelta(seconds=1), T0) == {"word_count": 1}
    assert store.count_submitted(T2, T2 + timedelta(days=1)) == {}
