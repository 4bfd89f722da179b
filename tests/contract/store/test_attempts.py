"""Every attempt of a task is kept: its executor, times, starts, outcome and error."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from common import ErrorKind, Outcome
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import (
    ERROR,
    T2,
    T3,
    T4,
    T5,
    a_queued_task,
    a_retry,
    a_start,
    a_task,
    an_outcome,
)


def test_a_task_that_failed_twice_then_succeeded_keeps_all_three_attempts(
    store: SyncTaskStore,
) -> None:
    task = a_queued_task(store)
    store.record_starts([a_start(task.task_id, at=T2, executor="e1")])
    store.record_results([a_retry(task.task_id, attempt=1, at=T3)])
    store.claim_due(T3 + timedelta(hours=1), 10)
    store.record_starts([a_start(task.task_id, attempt=2, at=T4, executor="e2")])
    second = an_outcome(
        task.task_id, Outcome.RETRYING, attempt=2, retry_in_s=4.0, finished_at=T5, executor="e2"
    )
    store.record_results([second])
    store.claim_due(T5 + timedelta(hours=1), 10)
    store.record_results([an_outcome(task.task_id, attempt=3, finished_at=T5, executor="e3")])

    attempts = store.attempts(task.task_id)

    assert [(a.attempt, a.executor, a.outcome) for a in attempts] == [
        (1, "e1", Outcome.RETRYING),
        (2, "e2", Outcome.RETRYING),
        (3, "e3", Outcome.SUCCEEDED),
    ]
    first = attempts[0]
    assert (first.started_at, first.finished_at, first.runs) == (T3 - timedelta(seconds=1), T3, 1)
    assert first.error == ERROR
    assert first.error is not None
    assert first.error.traceback == ERROR.traceback
    assert attempts[2].error is None
    assert attempts[2].runs == 0  # no start notice: its outcome only


def test_a_running_attempt_has_a_start_and_no_outcome(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_starts([a_start(task.task_id, at=T2, executor="e1")])
    store.record_starts([a_start(task.task_id, at=T3, executor="e2")])  # redelivered elsewhere

    (attempt,) = store.attempts(task.task_id)

    assert (attempt.attempt, attempt.executor, attempt.started_at) == (1, "e2", T3)
    assert (attempt.runs, attempt.outcome, attempt.finished_at) == (2, None, None)


def test_the_first_outcome_of_an_attempt_wins(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_results([an_outcome(task.task_id, Outcome.FAILED, finished_at=T3)])
    store.record_results([an_outcome(task.task_id, finished_at=T4, executor="e2")])
    store.record_starts([a_start(task.task_id, at=T5, executor="e3")])

    (attempt,) = store.attempts(task.task_id)

    assert (attempt.outcome, attempt.finished_at, attempt.executor) == (Outcome.FAILED, T3, "e1")
    assert attempt.error is not None
    assert attempt.error.kind is ErrorKind.HANDLER_ERROR


def test_a_start_of_an_unknown_task_records_no_attempt(store: SyncTaskStore) -> None:
    unknown = uuid4()
    store.record_starts([a_start(unknown)])

    assert store.attempts(unknown) == []


def test_a_result_of_an_unknown_task_records_its_attempt(store: SyncTaskStore) -> None:
    unknown = uuid4()
    store.record_results([an_outcome(unknown, finished_at=T3)])

    assert [a.outcome for a in store.attempts(unknown)] == [Outcome.SUCCEEDED]


async def test_threaded_store_reads_the_attempts(backend: Backend) -> None:
    threaded = ThreadedTaskStore(backend.open())
    task = a_task()
    await threaded.add_submitted([task])
    await threaded.record_start(a_start(task.task_id))
    await threaded.record_results([an_outcome(task.task_id)])

    attempts = await threaded.attempts(task.task_id)
    await threaded.close()

    assert [(a.attempt, a.runs, a.outcome) for a in attempts] == [(1, 1, Outcome.SUCCEEDED)]


def test_a_retry_by_hand_opens_the_next_attempt_with_its_cause(store: SyncTaskStore) -> None:
    failed, running = a_queued_task(store), a_queued_task(store)
    store.record_results([an_outcome(failed.task_id, Outcome.FAILED, finished_at=T3)])
    store.record_starts([a_start(running.task_id)])

    retried = store.retry_tasks([failed.task_id, running.task_id, uuid4()], T4, cause="by hand")

    assert [(t.task_id, t.attempt) for t in retried] == [(failed.task_id, 2)]
    record = store.get(failed.task_id)
    assert (record.state, record.attempt, record.error, record.finished_at) == (
        TaskState.SUBMITTED,
        2,
        None,
        None,
    )
    assert [(a.attempt, a.cause, a.caused_at) for a in store.attempts(failed.task_id)] == [
        (1, None, None),
        (2, "by hand", T4),
    ]
    assert store.get(running.task_id).state is TaskState.RUNNING  # left alone


def test_a_stale_dead_copy_is_not_replayed_over_a_retry_by_hand(store: SyncTaskStore) -> None:
    task = a_queued_task(store)
    store.record_results([an_outcome(task.task_id, Outcome.DEAD, finished_at=T3)])
    store.retry_tasks([task.task_id], T4, cause="by hand")

    replay = task.model_copy(update={"attempt": 2})
    assert store.record_replay(replay, T5, cause="replayed") is False
    assert store.get(task.task_id).state is TaskState.SUBMITTED


def test_a_cancel_records_when_and_through_what_it_was_first_asked(store: SyncTaskStore) -> None:
    task = a_queued_task(store)

    store.request_cancel(task.task_id, T2, via="http")
    store.request_cancel(task.task_id, T3, via="cli")  # asked again: the first one stays

    record = store.get(task.task_id)
    assert (record.cancel_requested_at, record.cancel_requested_via) == (T2, "http")
    store.record_results([an_outcome(task.task_id, Outcome.CANCELLED, finished_at=T4)])
    store.retry_tasks([task.task_id], T5, cause="by hand")
    retried = store.get(task.task_id)
    assert (retried.cancel_requested_at, retried.cancel_requested_via) == (None, None)
