"""The store contract, on every backend: priorities, delayed tasks and cron schedules."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from uuid import uuid4

import pytest

from common import (
    ScheduleExists,
    ScheduleNotFound,
)
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import ScheduleRecord, TaskState
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    T0,
    T1,
    T2,
    T3,
    T4,
    T5,
    a_queued_task,
    a_retry,
    a_task,
    an_outcome,
    race,
)

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
    task = a_task().model_copy(update={"priority": 7})
    store.add_submitted([task])

    assert store.get(task.task_id).priority == 7
    assert store.unconfirmed(T5, 10)[0].priority == 7


def test_a_delayed_task_is_scheduled_with_its_eta_and_not_in_the_outbox(
    store: SyncTaskStore,
) -> None:
    task = a_task().model_copy(update={"priority": 2})
    assert store.add_scheduled([task], [T3]) == [task.task_id]

    record = store.get(task.task_id)
    assert record.state is TaskState.SCHEDULED
    assert record.eta == T3
    assert record.priority == 2
    assert store.unconfirmed(T5 + timedelta(days=1), 10) == []


def test_claim_due_moves_only_due_tasks_to_submitted(store: SyncTaskStore) -> None:
    due, later = a_task(), a_task()
    store.add_scheduled([due, later], [T2, T4])

    assert store.claim_due(T3, 10) == [due]
    assert store.claim_due(T3, 10) == []
    assert store.get(due.task_id).state is TaskState.SUBMITTED
    assert store.get(later.task_id).state is TaskState.SCHEDULED


def test_a_just_claimed_task_waits_its_full_outbox_age(store: SyncTaskStore) -> None:
    # Submitted long ago, due long ago, claimed at T5: the outbox counts from the claim.
    task = a_task(submitted_at=T0)
    store.add_scheduled([task], [T1])
    store.claim_due(T5, 10)

    assert store.unconfirmed(T4, 10) == []
    assert store.get(task.task_id).eta == T5
    assert [t.task_id for t in store.unconfirmed(T5 + timedelta(seconds=1), 10)] == [task.task_id]


def test_scheduled_tasks_keep_idempotency_keys(store: SyncTaskStore) -> None:
    first, again = a_task(), a_task()

    assert store.add_scheduled([first], [T3], ["k"]) == [first.task_id]
    assert store.add_submitted([again], ["k"]) == [first.task_id]


def test_two_stores_claiming_at_once_claim_each_task_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    tasks = [a_task() for _ in range(40)]
    a.add_scheduled(tasks, [T1] * len(tasks))

    claimed = race(*(partial(s.claim_due, T2, 7) for s in (a, b, a, b)))
    while more := a.claim_due(T2, 100):
        claimed.append(more)

    ids = [t.task_id for batch in claimed for t in batch]
    assert sorted(ids) == sorted(t.task_id for t in tasks)


def test_a_due_retry_is_claimed_once_with_its_next_attempt(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=2.0, at=T1))  # due at T3

    assert store.claim_due(T2, 10) == []
    (claimed,) = store.claim_due(T3, 10)
    assert store.claim_due(T5, 10) == []

    assert claimed == task.model_copy(update={"attempt": 2})
    record = store.get(task.task_id)
    assert (record.state, record.attempt, record.eta) == (TaskState.SUBMITTED, 2, T3)
    assert record.next_attempt_at is None
    # A late report of the attempt before does not move it back.
    assert store.record_result(a_retry(task.task_id, attempt=1, at=T4)) is False
    store.mark_queued([task.task_id], T4)
    assert store.record_result(an_outcome(task.task_id, attempt=2, finished_at=T5)) is True
    assert store.get(task.task_id).state is TaskState.SUCCEEDED


def test_an_unpublished_released_retry_is_in_the_outbox(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=1.0, at=T1))
    store.claim_due(T2, 10)

    assert store.unconfirmed(T2, 10) == []
    assert store.unconfirmed(T3, 10) == [task.model_copy(update={"attempt": 2})]


def test_a_claim_takes_due_delays_and_retries_within_its_limit(store: SyncTaskStore) -> None:
    retried = a_queued_task(store)
    store.record_result(a_retry(retried.task_id, attempt=1, retry_in_s=0.5, at=T1))
    delayed = [a_task(), a_task()]
    store.add_scheduled(delayed, [T1, T2])

    first = store.claim_due(T5, 2)
    second = store.claim_due(T5, 2)

    assert [t.task_id for t in first] == [t.task_id for t in delayed]
    assert [(t.task_id, t.attempt) for t in second] == [(retried.task_id, 2)]


def test_two_stores_claiming_retries_at_once_claim_each_once(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    tasks = [a_queued_task(a) for _ in range(30)]
    for task in tasks:
        a.record_result(a_retry(task.task_id, attempt=1, retry_in_s=0.5, at=T1))

    claimed = race(*(partial(s.claim_due, T3, 7) for s in (a, b, a, b)))
    while more := a.claim_due(T3, 100):
        claimed.append(more)

    ids = [t.task_id for batch in claimed for t in batch]
    assert sorted(ids) == sorted(t.task_id for t in tasks)


def test_a_retrying_task_is_cancelled_outright(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=1.0, at=T1))

    assert store.request_cancel(task.task_id, T2) is True

    record = store.get(task.task_id)
    assert (record.state, record.finished_at, record.next_attempt_at) == (
        TaskState.CANCELLED,
        T2,
        None,
    )
    assert store.claim_due(T5, 10) == []


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
    task = a_task(submitted_at=T3).model_copy(update={"priority": 3})

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
    store.fire_schedule(schedule, T4, a_task(), "k1")
    late = a_task()

    assert not store.fire_schedule(schedule, T4, late, "k2")
    assert store.get_many([late.task_id]) == []


def test_a_paused_schedule_does_not_fire(store: SyncTaskStore) -> None:
    schedule = _schedule()
    store.add_schedule(schedule)
    store.set_schedule_paused("nightly", paused=True, next_fire_at=None, at=T1)

    assert not store.fire_schedule(schedule, T4, a_task(), "k")


def test_two_stores_firing_one_schedule_at_once_record_one_task(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    schedule = _schedule()
    a.add_schedule(schedule)
    tasks = [a_task() for _ in range(4)]
    key = "schedule:race:T2"

    fired = race(
        *(
            partial(s.fire_schedule, schedule, T4, t, key)
            for s, t in zip((a, b, a, b), tasks, strict=True)
        )
    )

    assert sorted(fired) == [False, False, False, True]
    assert len(a.get_many([t.task_id for t in tasks])) == 1
