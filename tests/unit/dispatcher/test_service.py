"""The dispatcher's use cases against a fake publisher and the real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from common import (
    CancelNotice,
    ConfigError,
    InvalidParams,
    Outcome,
    ProgressMessage,
    PublishRejected,
    ResultMessage,
    StartNotice,
    TaskNotFound,
    UnknownTaskType,
    Verdict,
    encode,
)
from dispatcher.requests import CancelOutcome, TaskRequest, build_task
from dispatcher.service import Dispatcher
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.unit.dispatcher.fakes import NOW, FakeCancelPublisher, FakePublisher, registry, succeeded


@pytest.fixture
def dispatcher(publisher: FakePublisher, store: ThreadedTaskStore) -> Dispatcher:
    return Dispatcher(publisher=publisher, store=store, clock=lambda: NOW)


@pytest.fixture
def validating(publisher: FakePublisher, store: ThreadedTaskStore) -> Dispatcher:
    return Dispatcher(publisher=publisher, store=store, registry=registry, clock=lambda: NOW)


async def test_submit_records_the_task_as_queued(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a b"})

    record = await dispatcher.get(task_id)
    assert record.state is TaskState.QUEUED
    assert record.params == {"text": "a b"}
    assert [t.task_id for t in publisher.published] == [task_id]


async def test_clock_stamps_submission_and_queueing(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})

    record = await dispatcher.get(task_id)
    assert record.submitted_at == NOW
    assert record.queued_at == NOW
    assert publisher.published[0].submitted_at == NOW


async def test_submit_without_params_sends_an_empty_object(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    await dispatcher.submit("noop")

    assert publisher.published[0].params == {}


async def _submit_refused(dispatcher: Dispatcher, publisher: FakePublisher) -> UUID:
    """Submit a task the broker refuses; its id, which the ``PublishRejected`` raised names."""
    publisher.refuse = lambda task: True
    with pytest.raises(PublishRejected) as caught:
        await dispatcher.submit("word_count", {"text": "a"})
    task_id = caught.value.task_id
    assert task_id is not None
    return task_id


async def test_refused_publish_leaves_the_task_submitted_and_raises(
    dispatcher: Dispatcher, publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    task_id = await _submit_refused(dispatcher, publisher)

    assert (await store.get(task_id)).state is TaskState.SUBMITTED


async def test_one_refused_publish_does_not_stop_the_rest_of_the_batch(
    dispatcher: Dispatcher, publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    publisher.refuse = lambda task: task.params["n"] == 1
    requests = [TaskRequest("count", {"n": n}) for n in range(4)]

    with pytest.raises(PublishRejected) as caught:
        await dispatcher.submit_many(requests)

    refused_id = caught.value.task_id
    assert refused_id is not None
    assert (await store.get(refused_id)).state is TaskState.SUBMITTED
    assert [t.params["n"] for t in publisher.published] == [0, 2, 3]
    for task in publisher.published:
        assert (await store.get(task.task_id)).state is TaskState.QUEUED


async def test_unknown_type_is_refused_before_anything_is_recorded(
    validating: Dispatcher, publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    with pytest.raises(UnknownTaskType):
        await validating.submit_many(
            [TaskRequest("word_count", {"text": "ok"}), TaskRequest("nope", {})]
        )

    assert publisher.batches == []


async def test_invalid_params_are_refused_before_anything_is_recorded(
    validating: Dispatcher, publisher: FakePublisher
) -> None:
    with pytest.raises(InvalidParams) as caught:
        await validating.submit_many(
            [TaskRequest("word_count", {"text": "ok"}), TaskRequest("word_count", {"top": 0})]
        )

    assert [e["loc"] for e in caught.value.errors] == [["text"], ["top"]]
    assert publisher.batches == []


async def test_a_task_over_the_body_limit_is_refused_before_anything_is_recorded(
    publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    fits = TaskRequest("echo", {"text": "a"})
    limit = len(encode(build_task(fits, None, lambda: NOW)))
    limited = Dispatcher(publisher=publisher, store=store, clock=lambda: NOW, max_body_bytes=limit)

    with pytest.raises(InvalidParams) as caught:
        await limited.submit_many([fits, TaskRequest("echo", {"text": "ab"})])

    assert caught.value.errors == [
        {
            "loc": [],
            "msg": f"make a task body of {limit + 1} bytes,"
            f" over the limit of {limit} (WQ_AMQP_MAX_BODY_BYTES)",
            "type": "too_large",
        }
    ]
    assert publisher.batches == []
    assert await store.list_tasks(TaskQuery(limit=10)) == []
    # Exactly at the limit is accepted.
    assert (
        await limited.get(await limited.submit("echo", {"text": "a"}))
    ).state is TaskState.QUEUED


async def test_valid_params_pass_the_registry(validating: Dispatcher) -> None:
    task_id = await validating.submit("word_count", {"text": "a b", "top": 2})

    assert (await validating.get(task_id)).state is TaskState.QUEUED


async def test_invalid_task_type_name_without_registry_is_unknown(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    with pytest.raises(UnknownTaskType):
        await dispatcher.submit("not a valid name!")

    assert publisher.batches == []


async def test_non_json_params_without_registry_are_invalid(dispatcher: Dispatcher) -> None:
    with pytest.raises(InvalidParams):
        await dispatcher.submit("word_count", {"when": datetime.now(UTC)})  # type: ignore[dict-item]


async def test_submit_many_reports_progress_per_batch_and_keeps_order(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    seen: list[int] = []
    requests = [TaskRequest("count", {"n": n}) for n in range(1203)]

    ids = await dispatcher.submit_many(requests, progress=seen.append)

    assert sum(seen) == 1203
    assert len(seen) > 1
    assert seen == publisher.batches
    assert ids == [t.task_id for t in publisher.published]
    assert [t.params["n"] for t in publisher.published] == list(range(1203))
    assert len(set(ids)) == 1203


async def test_record_result_returns_whether_it_was_the_first(dispatcher: Dispatcher) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})

    assert await dispatcher.record_result(succeeded(task_id)) is True
    assert await dispatcher.record_result(succeeded(task_id)) is False
    assert (await dispatcher.get(task_id)).state is TaskState.SUCCEEDED


async def test_get_many_returns_existing_records(dispatcher: Dispatcher) -> None:
    ids = await dispatcher.submit_many([TaskRequest("count", {"n": n}) for n in range(3)])

    records = await dispatcher.get_many([*ids, uuid4()])

    assert {r.task_id for r in records} == set(ids)


async def test_outbox_republishes_tasks_whose_confirm_never_came(
    publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    dispatcher = Dispatcher(publisher=publisher, store=store, clock=lambda: now[0])
    publisher.refuse = lambda task: True
    with pytest.raises(PublishRejected):
        await dispatcher.submit_many([TaskRequest("word_count", {"text": "a"})] * 3)
    publisher.refuse = lambda task: False

    # Too young: a publish may still be waiting for its confirm.
    assert await dispatcher.republish_unconfirmed(older_than_s=60) == 0
    now[0] += timedelta(seconds=61)
    assert await dispatcher.republish_unconfirmed(older_than_s=60) == 3

    ids = [task.task_id for task in publisher.published]
    assert len(set(ids)) == 3
    assert {r.state for r in await store.get_many(ids)} == {TaskState.QUEUED}
    # Nothing is left for the next sweep.
    assert await dispatcher.republish_unconfirmed(older_than_s=0) == 0


async def test_outbox_leaves_tasks_that_already_have_an_outcome(
    dispatcher: Dispatcher, publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    task_id = await _submit_refused(dispatcher, publisher)
    # The unconfirmed publish landed after all, and its result came back.
    await dispatcher.record_result(succeeded(task_id))
    publisher.refuse = lambda task: False

    assert await dispatcher.republish_unconfirmed(older_than_s=0) == 0


async def test_idempotency_key_returns_the_existing_task_and_publishes_nothing(
    dispatcher: Dispatcher, publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    first = await dispatcher.submit("word_count", {"text": "a"}, idempotency_key="order-42")
    again = await dispatcher.submit("word_count", {"text": "b"}, idempotency_key="order-42")
    other = await dispatcher.submit("word_count", {"text": "c"}, idempotency_key="order-43")

    assert again == first
    assert other != first
    assert [task.task_id for task in publisher.published] == [first, other]
    assert (await store.get(first)).idempotency_key == "order-42"
    assert (await store.get(first)).params == {"text": "a"}


async def test_one_key_twice_in_a_batch_makes_one_task(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    ids = await dispatcher.submit_many(
        [
            TaskRequest("word_count", {"text": "a"}, idempotency_key="k"),
            TaskRequest("word_count", {"text": "b"}),
            TaskRequest("word_count", {"text": "c"}, idempotency_key="k"),
        ]
    )

    assert ids[0] == ids[2]
    assert len(set(ids)) == 2
    assert len(publisher.published) == 2


# Cancel and progress


@pytest.fixture
def cancelling(
    publisher: FakePublisher, store: ThreadedTaskStore, cancels: FakeCancelPublisher
) -> Dispatcher:
    return Dispatcher(publisher=publisher, store=store, clock=lambda: NOW, cancel_publisher=cancels)


async def test_cancel_flags_the_task_and_tells_the_executors(
    cancelling: Dispatcher, cancels: FakeCancelPublisher
) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})

    report = await cancelling.cancel(task_id)

    assert report.outcome is CancelOutcome.REQUESTED
    assert report.record.state is TaskState.QUEUED
    assert report.record.cancel_requested_at == NOW
    assert cancels.notices == [CancelNotice(task_id=task_id, requested_at=NOW, attempt=1)]


async def test_cancel_of_a_final_task_changes_nothing_and_tells_no_one(
    cancelling: Dispatcher, cancels: FakeCancelPublisher
) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})
    await cancelling.record_result(succeeded(task_id))

    report = await cancelling.cancel(task_id)

    assert report.outcome is CancelOutcome.ALREADY_FINAL
    assert report.record.state is TaskState.SUCCEEDED
    assert report.record.cancel_requested_at is None
    assert cancels.notices == []


async def test_cancel_of_an_unknown_task_raises_task_not_found(cancelling: Dispatcher) -> None:
    with pytest.raises(TaskNotFound):
        await cancelling.cancel(uuid4())


async def test_a_cancel_not_published_keeps_the_flag_and_can_be_asked_again(
    cancelling: Dispatcher, cancels: FakeCancelPublisher
) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})
    cancels.fail = PublishRejected("nack")

    with pytest.raises(PublishRejected):
        await cancelling.cancel(task_id)
    assert (await cancelling.get(task_id)).cancel_requested_at == NOW

    cancels.fail = None
    assert (await cancelling.cancel(task_id)).outcome is CancelOutcome.REQUESTED
    assert len(cancels.notices) == 1


async def test_cancel_needs_a_cancel_publisher(dispatcher: Dispatcher) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})

    with pytest.raises(ConfigError):
        await dispatcher.cancel(task_id)


async def test_progress_is_recorded_on_the_task(dispatcher: Dispatcher) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"})
    report = ProgressMessage(
        task_id=task_id,
        task_type="word_count",
        executor="e1",
        percent=30,
        note="a third",
        reported_at=NOW,
    )

    assert await dispatcher.record_progress(report) is True

    record = await dispatcher.get(task_id)
    assert (record.progress, record.progress_note, record.progress_at) == (30, "a third", NOW)


# Starts and the delivery limit


def _start(task_id: UUID, *, limit: int = 3) -> StartNotice:
    return StartNotice(
        task_id=task_id,
        task_type="word_count",
        executor="e1",
        redelivered=True,
        delivery_limit=limit,
        started_at=NOW,
    )


async def test_a_start_past_the_limit_is_given_up(cancelling: Dispatcher) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})

    verdicts = [await cancelling.record_start(_start(task_id)) for _ in range(4)]

    assert [(v.verdict, v.runs) for v in verdicts] == [
        (Verdict.RUN, 1),
        (Verdict.RUN, 2),
        (Verdict.RUN, 3),
        (Verdict.GIVE_UP, 4),
    ]
    assert (await cancelling.get(task_id)).runs == 4


async def test_a_start_of_a_task_with_its_outcome_is_settled_unrun(cancelling: Dispatcher) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})
    await cancelling.record_start(_start(task_id))
    await cancelling.record_result(succeeded(task_id))

    verdict = await cancelling.record_start(_start(task_id, limit=1))

    assert (verdict.verdict, verdict.runs) == (Verdict.SETTLED, 1)


async def test_a_start_of_an_attempt_whose_retry_is_owed_is_settled(cancelling: Dispatcher) -> None:
    task_id = await cancelling.submit("word_count", {"text": "a"})
    await cancelling.record_result(
        ResultMessage(
            task_id=task_id,
            task_type="word_count",
            outcome=Outcome.RETRYING,
            executor="e1",
            started_at=NOW,
            finished_at=NOW,
            retry_in_s=5,
        )
    )

    assert (await cancelling.record_start(_start(task_id))).verdict is Verdict.SETTLED


async def test_starts_of_a_task_without_a_record_are_counted_in_memory(
    cancelling: Dispatcher,
) -> None:
    # Published straight to the task queue by a producer that bypasses the dispatcher.
    task_id = uuid4()

    verdicts = [await cancelling.record_start(_start(task_id)) for _ in range(4)]

    assert [(v.verdict, v.runs) for v in verdicts] == [
        (Verdict.RUN, 1),
        (Verdict.RUN, 2),
        (Verdict.RUN, 3),
        (Verdict.GIVE_UP, 4),
    ]


async def test_task_pages_cover_every_match_once_a_page_at_a_time(dispatcher: Dispatcher) -> None:
    # One clock reading for all: the pages are ordered and continued by id alone.
    ids = await dispatcher.submit_many(TaskRequest("echo") for _ in range(5))

    pages = [page async for page in dispatcher.task_pages(TaskQuery(limit=2))]

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(r.task_id for page in pages for r in page) == sorted(ids)
    assert [page async for page in dispatcher.task_pages(TaskQuery(task_type="none"))] == []
