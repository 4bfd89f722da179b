"""The store contract, on every backend: results (the first final one wins), replays, cancels
and progress.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta, timezone
from functools import partial
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest

from common import (
    Outcome,
)
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    ERROR,
    T0,
    T1,
    T2,
    T3,
    T4,
    T5,
    a_progress,
    a_queued_task,
    a_retry,
    a_start,
    a_task,
    an_outcome,
    race,
)

# Results


def test_first_result_is_recorded_with_everything_it_carries(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    result = an_outcome(task.task_id, executor="exec-a", redelivered=True)
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
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id, executor="first"))
    before = store.get(task.task_id)

    assert store.record_result(an_outcome(task.task_id, Outcome.FAILED, executor="2nd")) is False
    assert store.record_result(an_outcome(task.task_id, executor="third", attempt=2)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 2
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_a_batch_of_results_is_recorded_in_order_with_a_flag_each(store: SyncTaskStore) -> None:
    first, second = a_queued_task(store), a_queued_task(store)
    batch = [
        an_outcome(first.task_id, executor="a"),
        an_outcome(second.task_id, Outcome.FAILED, executor="b"),
        an_outcome(first.task_id, Outcome.FAILED, executor="late duplicate"),
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

    assert store.record_result(an_outcome(task_id, outcome, attempt=3, retry_in_s=2.0)) is True

    record = store.get(task_id)
    assert record.state.value == outcome.value
    assert record.task_type == "word_count"
    assert record.params == {}
    assert record.attempt == 3
    assert record.submitted_at == T2  # unknown: the attempt's start stands in


def test_retrying_records_the_attempt_and_when_the_next_is_due(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    assert store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=4.5)) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.RETRYING
    assert record.attempt == 1
    assert record.error == ERROR
    assert record.next_attempt_at == T3 + timedelta(seconds=4.5)
    assert record.queued_at == T1


def test_each_later_retry_moves_the_task_on(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=1.0, at=T2))

    assert store.record_result(a_retry(task.task_id, attempt=2, retry_in_s=8.0, at=T4))
    assert store.record_result(a_retry(task.task_id, attempt=2, retry_in_s=9.0, at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.RETRYING, 2)
    assert record.next_attempt_at == T5 + timedelta(seconds=9)


def test_retrying_only_moves_forward(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=2, retry_in_s=8.0, at=T4))
    before = store.get(task.task_id)

    assert store.record_result(a_retry(task.task_id, attempt=1, at=T2)) is False

    after = store.get(task.task_id)
    assert after.duplicate_results == 1
    assert after.model_copy(update={"duplicate_results": 0}) == before


@pytest.mark.parametrize("final", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.DEAD])
def test_first_final_outcome_wins(store: SyncTaskStore, final: Outcome) -> None:
    task = a_queued_task(store)
    assert store.record_result(an_outcome(task.task_id, final, attempt=2, finished_at=T4))
    before = store.get(task.task_id)

    later = [
        a_retry(task.task_id, attempt=1, at=T2),
        a_retry(task.task_id, attempt=3, at=T5),
        *(an_outcome(task.task_id, o, attempt=3, finished_at=T5) for o in Outcome if o != final),
    ]
    assert [store.record_result(result) for result in later] == [False] * len(later)

    after = store.get(task.task_id)
    assert after.state.value == final.value
    assert after.duplicate_results == len(later)
    assert after.model_copy(update={"duplicate_results": 0}) == before


def test_first_final_outcome_wins_even_from_an_earlier_attempt(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(a_retry(task.task_id, attempt=2, at=T4))

    assert store.record_result(an_outcome(task.task_id, attempt=1, finished_at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1)
    assert record.next_attempt_at is None
    assert record.error is None


def test_retries_exhausted_make_the_task_dead(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    for attempt in (1, 2, 3):
        store.record_result(a_retry(task.task_id, attempt=attempt))

    assert store.record_result(an_outcome(task.task_id, Outcome.DEAD, attempt=4, finished_at=T5))

    record = store.get(task.task_id)
    assert (record.state, record.attempt, record.finished_at) == (TaskState.DEAD, 4, T5)
    assert record.state.is_final
    assert record.error == ERROR
    assert record.next_attempt_at is None


def test_results_recorded_by_two_stores_at_once_count_once(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    tasks = [a_task() for _ in range(20)]
    first.add_submitted(tasks)

    for task in tasks:
        recorded = race(
            partial(first.record_result, an_outcome(task.task_id, executor="first")),
            partial(second.record_result, an_outcome(task.task_id, executor="second")),
        )
        assert sorted(recorded) == [False, True]
        record = second.get(task.task_id)
        assert record.executor == ("first" if recorded[0] else "second")
        assert record.duplicate_results == 1


# Replays


def test_replay_moves_a_dead_task_back_to_submitted(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id, Outcome.DEAD, attempt=4, redelivered=True))

    store.record_replay(task.model_copy(update={"attempt": 5}), T5)

    record = store.get(task.task_id)
    assert (record.state, record.attempt) == (TaskState.SUBMITTED, 5)
    assert (record.queued_at, record.started_at, record.finished_at) == (None,) * 3
    assert (record.executor, record.result, record.error, record.next_attempt_at) == (None,) * 4
    assert record.redelivered is False
    assert record.submitted_at == T0
    assert store.record_result(an_outcome(task.task_id, attempt=5)) is True


@pytest.mark.parametrize("outcome", [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RETRYING])
def test_replay_changes_nothing_unless_the_task_is_dead(
    store: SyncTaskStore, outcome: Outcome
) -> None:
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id, outcome, retry_in_s=1.0))
    before = store.get(task.task_id)

    store.record_replay(task.model_copy(update={"attempt": 5}), T5)

    assert store.get(task.task_id) == before


def test_replay_of_an_unknown_task_records_it(store: SyncTaskStore) -> None:
    task = a_task().model_copy(update={"attempt": 2})

    store.record_replay(task, T5)

    record = store.get(task.task_id)
    assert (record.state, record.attempt, record.params) == (TaskState.SUBMITTED, 2, task.params)


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


def test_a_cancel_request_flags_an_open_task_and_keeps_its_state(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    assert store.request_cancel(task.task_id, T2) is True

    record = store.get(task.task_id)
    assert record.state is TaskState.QUEUED
    assert record.cancel_requested_at == T2
    assert record.finished_at is None


def test_asking_again_keeps_the_first_cancel_time(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.request_cancel(task.task_id, T2)

    assert store.request_cancel(task.task_id, T4) is True

    assert store.get(task.task_id).cancel_requested_at == T2


def test_a_scheduled_task_is_cancelled_outright(backend: Backend) -> None:
    store = backend.open()
    task = a_task()
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
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id, final))
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
    task = a_queued_task(store)
    store.request_cancel(task.task_id, T2)

    assert store.record_result(an_outcome(task.task_id, Outcome.CANCELLED)) is True
    assert store.record_result(an_outcome(task.task_id, Outcome.SUCCEEDED, finished_at=T5)) is False

    record = store.get(task.task_id)
    assert record.state is TaskState.CANCELLED
    assert record.error == ERROR
    assert record.duplicate_results == 1


def test_a_task_that_ignored_its_cancel_keeps_its_outcome_and_the_request(
    store: SyncTaskStore,
) -> None:
    task = a_queued_task(store)
    store.request_cancel(task.task_id, T2)

    store.record_result(an_outcome(task.task_id, Outcome.SUCCEEDED))

    record = store.get(task.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.cancel_requested_at == T2


def test_progress_is_recorded_with_its_note_and_time(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    assert store.record_progress(a_progress(task.task_id, 42.5, T2, "page 3 of 7")) is True

    record = store.get(task.task_id)
    assert (record.progress, record.progress_note, record.progress_at) == (42.5, "page 3 of 7", T2)


def test_progress_never_moves_backwards_in_time(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_progress(a_progress(task.task_id, 60, T3, "later"))

    assert store.record_progress(a_progress(task.task_id, 30, T2, "earlier")) is False
    assert store.record_progress(a_progress(task.task_id, 60, T3, "same time")) is False
    assert store.record_progress(a_progress(task.task_id, 80, T4)) is True

    record = store.get(task.task_id)
    assert (record.progress, record.progress_note, record.progress_at) == (80, None, T4)


def test_progress_times_in_other_zones_compare_as_instants(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    plus_two = timezone(timedelta(hours=2))
    store.record_progress(a_progress(task.task_id, 10, T3))

    # T2 written in UTC+2 reads as a larger wall-clock time, but is the earlier instant.
    assert store.record_progress(a_progress(task.task_id, 5, T2.astimezone(plus_two))) is False
    assert store.record_progress(a_progress(task.task_id, 20, T4.astimezone(plus_two))) is True

    assert store.get(task.task_id).progress_at == T4


def test_progress_after_the_outcome_is_ignored(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_progress(a_progress(task.task_id, 50, T2))
    store.record_result(an_outcome(task.task_id, Outcome.SUCCEEDED))

    assert store.record_progress(a_progress(task.task_id, 90, T5)) is False

    assert store.get(task.task_id).progress == 50


def test_progress_of_an_unknown_task_records_nothing(store: SyncTaskStore) -> None:
    unknown = uuid4()

    assert store.record_progress(a_progress(unknown, 50, T2)) is False
    assert store.get_many([unknown]) == []


async def test_threaded_store_cancels_and_records_progress(backend: Backend) -> None:
    threaded = ThreadedTaskStore(backend.open())
    task = a_task()
    await threaded.add_submitted([task])

    assert await threaded.request_cancel(task.task_id, T2) is True
    assert await threaded.record_progress(a_progress(task.task_id, 5, T3)) is True

    record = await threaded.get(task.task_id)
    assert (record.cancel_requested_at, record.progress) == (T2, 5)


# Starts: only a start counts towards the delivery limit


def test_each_start_of_the_current_attempt_is_counted(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    assert store.record_starts([a_start(task.task_id, at=T2)]) == [1]
    assert store.record_starts([a_start(task.task_id, at=T3, executor="e2")]) == [2]

    record = store.get(task.task_id)
    assert (record.runs, record.started_at, record.executor) == (2, T3, "e2")
    assert record.state is TaskState.RUNNING


def test_a_started_task_is_running_until_its_outcome(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_starts([a_start(task.task_id, at=T2, executor="e1")])

    running = store.get(task.task_id)
    assert (running.state, running.started_at, running.executor) == (TaskState.RUNNING, T2, "e1")
    assert [r.task_id for r in store.list_tasks(TaskQuery(states=(TaskState.RUNNING,)))] == [
        task.task_id
    ]

    store.record_result(an_outcome(task.task_id, finished_at=T3))
    assert store.get(task.task_id).state is TaskState.SUCCEEDED


def test_a_start_before_the_confirm_stays_running(store: SyncTaskStore) -> None:
    task = a_task()
    store.add_submitted([task])
    store.record_starts([a_start(task.task_id, at=T2)])

    store.mark_queued([task.task_id], T3)  # the confirm came after the executor's start

    assert store.get(task.task_id).state is TaskState.RUNNING


def test_a_late_start_never_moves_an_outcome_back_to_running(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_result(an_outcome(task.task_id, finished_at=T3))

    assert store.record_starts([a_start(task.task_id, at=T2)]) == [None]

    assert store.get(task.task_id).state is TaskState.SUCCEEDED


def test_a_batch_of_starts_counts_each_in_order(store: SyncTaskStore) -> None:
    a, b = a_queued_task(store), a_queued_task(store)

    counted = store.record_starts([a_start(a.task_id), a_start(b.task_id), a_start(a.task_id)])

    assert counted == [1, 1, 2]


def test_a_start_of_another_attempt_or_after_the_outcome_is_not_counted(
    store: SyncTaskStore,
) -> None:
    task = a_queued_task(store)
    unknown = uuid4()

    assert store.record_starts([a_start(task.task_id, attempt=2), a_start(unknown)]) == [None, None]
    store.record_result(an_outcome(task.task_id, finished_at=T3))
    assert store.record_starts([a_start(task.task_id, at=T4)]) == [None]
    assert store.get(task.task_id).runs == 0


def test_the_next_attempt_starts_its_count_afresh(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_starts([a_start(task.task_id)] * 3)
    store.record_result(a_retry(task.task_id, attempt=1, retry_in_s=1.0, at=T2))
    assert store.record_starts([a_start(task.task_id, at=T2)]) == [None]  # retrying: no run

    store.claim_due(T4, 10)

    assert store.get(task.task_id).runs == 0
    assert store.record_starts([a_start(task.task_id, attempt=2, at=T5)]) == [1]


async def test_threaded_store_counts_starts_that_arrive_together(backend: Backend) -> None:
    threaded = ThreadedTaskStore(backend.open())
    task = a_task()
    await threaded.add_submitted([task])

    counts = await asyncio.gather(*(threaded.record_start(a_start(task.task_id)) for _ in range(6)))
    await threaded.close()

    assert sorted(c or 0 for c in counts) == [1, 2, 3, 4, 5, 6]
