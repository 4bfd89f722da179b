"""Activity: what finished in each span of time, with run-time percentiles."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from common import Outcome
from dispatcher.store.protocol import SyncTaskStore
from tests.contract.store.samples import T0, a_queued_task, an_outcome

MINUTE = timedelta(minutes=1)


def finish(store: SyncTaskStore, outcome: Outcome, at_minute: float, ran_s: float) -> None:
    task = a_queued_task(store)
    finished = T0 + at_minute * MINUTE
    result = an_outcome(task.task_id, outcome, finished_at=finished)
    store.record_results(
        [result.model_copy(update={"started_at": finished - timedelta(seconds=ran_s)})]
    )


def test_finished_tasks_count_in_their_bucket_with_nearest_rank_percentiles(
    store: SyncTaskStore,
) -> None:
    for n in range(1, 21):  # minute 0: 20 successes that ran 1 to 20 s
        finish(store, Outcome.SUCCEEDED, 0.5, float(n))
    finish(store, Outcome.FAILED, 2.2, 3.0)  # minute 2: one failure
    finish(store, Outcome.SUCCEEDED, -1, 1.0)  # before the window: not counted
    a_queued_task(store)  # not finished: not counted

    buckets = store.activity(T0, MINUTE, 3)

    assert [b.start for b in buckets] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert [(b.succeeded, b.failed) for b in buckets] == [(20, 0), (0, 0), (0, 1)]
    first = buckets[0]
    assert first.p50_s == pytest.approx(10.0, abs=0.01)
    assert first.p95_s == pytest.approx(19.0, abs=0.01)
    assert (buckets[1].p50_s, buckets[1].p95_s) == (None, None)
    assert buckets[2].p50_s == pytest.approx(3.0, abs=0.01)


def test_an_empty_store_has_empty_buckets(store: SyncTaskStore) -> None:
    buckets = store.activity(T0, MINUTE, 2)

    assert [(b.succeeded, b.failed, b.p50_s) for b in buckets] == [(0, 0, None), (0, 0, None)]
    assert replace(buckets[0], start=T0 + MINUTE) == buckets[1]
