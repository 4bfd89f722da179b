"""Cron schedules and delayed tasks with an injected clock: fire times, catch-up, DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from common import InvalidParams, InvalidSchedule, Outcome, ResultMessage, ScheduleExists
from dispatcher.requests import TaskRequest
from dispatcher.schedules import (
    ScheduleBook,
    fire_idempotency_key,
    next_fire_time,
    run_due,
    validate_cron,
)
from dispatcher.service import Dispatcher
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.clock import Clock
from tests.unit.dispatcher.fakes import FakePublisher, registry

START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def dispatcher(publisher: FakePublisher, store: ThreadedTaskStore, clock: Clock) -> Dispatcher:
    return Dispatcher(publisher=publisher, store=store, registry=registry, clock=clock)


@pytest.fixture
def book(dispatcher: Dispatcher) -> ScheduleBook:
    return ScheduleBook.of(dispatcher)


# Pure fire-time logic


def test_next_fire_time_is_strictly_after_and_in_utc() -> None:
    at = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)

    assert next_fire_time("*/15 * * * *", "UTC", at) == datetime(2026, 1, 1, 10, 30, tzinfo=UTC)


def test_a_six_field_expression_has_seconds_first() -> None:
    at = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)

    assert next_fire_time("*/10 * * * * *", "UTC", at) == at + timedelta(seconds=10)


def test_a_daily_schedule_keeps_its_local_time_across_the_spring_dst_change() -> None:
    at = datetime(2026, 3, 28, 12, tzinfo=UTC)  # Berlin changes to CEST on 29 March
    first = next_fire_time("0 9 * * *", "Europe/Berlin", at)
    second = next_fire_time("0 9 * * *", "Europe/Berlin", first)

    assert first == datetime(2026, 3, 29, 7, tzinfo=UTC)  # 09:00 CEST
    assert second == datetime(2026, 3, 30, 7, tzinfo=UTC)
    before = next_fire_time("0 9 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert before == datetime(2026, 3, 28, 8, tzinfo=UTC)  # 09:00 CET


def test_a_time_skipped_by_the_dst_change_fires_at_the_next_existing_one() -> None:
    at = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)  # 01:45 CET; 02:00-03:00 does not exist

    fired = next_fire_time("30 * * * *", "Europe/Berlin", at)

    assert fired == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "* * * * * * *", "@reboot", ""])
def test_invalid_cron_expressions_are_refused_with_the_reason(expression: str) -> None:
    with pytest.raises(InvalidSchedule, match="cron"):
        validate_cron(expression)


def test_aliases_and_names_are_accepted() -> None:
    assert validate_cron("@Daily") == "@daily"
    assert validate_cron("0  9 * *  mon-fri") == "0 9 * * mon-fri"


def test_the_fire_key_names_the_schedule_and_the_fire_time() -> None:
    schedule_id = uuid4()

    key = fire_idempotency_key(schedule_id, START)

    assert key == f"schedule:{schedule_id}:2026-03-04T05:06:07.000000+00:00"


# The schedule book


async def test_create_validates_and_sets_the_first_fire_time(book: ScheduleBook) -> None:
    schedule = await book.create(
        "counts", "*/5 * * * *", "word_count", {"text": "a b"}, timezone="Europe/Berlin"
    )

    assert schedule.next_fire_at == datetime(2026, 3, 4, 5, 10, tzinfo=UTC)
    assert await book.get("counts") == schedule
    assert await book.all() == [schedule]


async def test_create_refuses_what_a_submit_would_refuse(book: ScheduleBook) -> None:
    with pytest.raises(InvalidParams):
        await book.create("bad", "* * * * *", "word_count", {"top": 99})
    with pytest.raises(InvalidSchedule, match="timezone"):
        await book.create("bad", "* * * * *", "word_count", {"text": "a"}, timezone="Mars/Base")
    with pytest.raises(InvalidSchedule, match="name"):
        await book.create("has space", "* * * * *", "word_count", {"text": "a"})
    assert await book.all() == []


async def test_create_refuses_a_task_over_the_body_limit(dispatcher: Dispatcher) -> None:
    dispatcher.max_body_bytes = 1000
    book = ScheduleBook.of(dispatcher)

    with pytest.raises(InvalidParams, match="over the limit of 1000"):
        await book.create("big", "* * * * *", "word_count", {"text": "a" * 1000})
    await book.create("small", "* * * * *", "word_count", {"text": "a"})
    assert [s.name for s in await book.all()] == ["small"]


async def test_names_are_unique(book: ScheduleBook) -> None:
    await book.create("a", "* * * * *", "word_count", {"text": "a"})

    with pytest.raises(ScheduleExists):
        await book.create("a", "* * * * *", "word_count", {"text": "b"})


async def test_a_due_schedule_fires_one_task_and_moves_on(
    book: ScheduleBook, dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    await book.create("tick", "* * * * *", "word_count", {"text": "a"}, priority=4)
    assert await run_due(dispatcher, book, limit=10) == 0

    clock.now = datetime(2026, 3, 4, 5, 7, 1, tzinfo=UTC)
    assert await run_due(dispatcher, book, limit=10) == 1
    assert await run_due(dispatcher, book, limit=10) == 0

    (task,) = publisher.published
    assert task.priority == 4
    record = await dispatcher.get(task.task_id)
    assert record.state is TaskState.QUEUED
    assert record.eta == datetime(2026, 3, 4, 5, 7, tzinfo=UTC)
    after = await book.get("tick")
    assert after.next_fire_at == datetime(2026, 3, 4, 5, 8, tzinfo=UTC)
    assert after.last_task_id == task.task_id


async def test_missed_fire_times_fire_once(
    book: ScheduleBook, dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    await book.create("tick", "* * * * *", "word_count", {"text": "a"})

    clock.now = START + timedelta(hours=3)  # every dispatcher was down for three hours
    await run_due(dispatcher, book, limit=10)
    await run_due(dispatcher, book, limit=10)

    assert len(publisher.published) == 1
    after = await book.get("tick")
    assert after.next_fire_at == datetime(2026, 3, 4, 8, 7, tzinfo=UTC)


async def test_a_paused_schedule_does_not_fire_and_resumes_from_now(
    book: ScheduleBook, dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    await book.create("tick", "* * * * *", "word_count", {"text": "a"})
    await book.pause("tick")

    clock.now = START + timedelta(minutes=10)
    await run_due(dispatcher, book, limit=10)
    assert publisher.published == []
    resumed = await book.resume("tick")
    assert resumed.next_fire_at == datetime(2026, 3, 4, 5, 17, tzinfo=UTC)
    await book.delete("tick")
    assert await book.all() == []


# Delayed tasks


async def test_a_task_due_later_is_scheduled_and_not_published(
    dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"}, countdown=30, priority=2)

    record = await dispatcher.get(task_id)
    assert record.state is TaskState.SCHEDULED
    assert record.eta == START + timedelta(seconds=30)
    assert record.priority == 2
    assert publisher.published == []


async def test_a_delayed_task_is_published_once_when_due(
    dispatcher: Dispatcher, book: ScheduleBook, publisher: FakePublisher, clock: Clock
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"}, eta=START + timedelta(minutes=1))
    assert await dispatcher.release_due() == 0
    assert publisher.published == []

    clock.now = START + timedelta(minutes=1)
    assert await dispatcher.release_due() == 1
    assert await dispatcher.release_due() == 0

    assert [t.task_id for t in publisher.published] == [task_id]
    assert publisher.published[0].submitted_at == START
    assert (await dispatcher.get(task_id)).state is TaskState.QUEUED


@pytest.mark.parametrize("eta", [START, START - timedelta(days=1)])
async def test_an_eta_now_or_past_publishes_at_once(
    dispatcher: Dispatcher, publisher: FakePublisher, eta: datetime
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"}, eta=eta)

    assert [t.task_id for t in publisher.published] == [task_id]


async def test_a_mixed_batch_keeps_its_order(
    dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    requests = [
        TaskRequest("word_count", {"text": "later"}, countdown=60),
        TaskRequest("word_count", {"text": "now"}),
    ]

    later, now = await dispatcher.submit_many(requests)

    assert (await dispatcher.get(later)).params == {"text": "later"}
    assert (await dispatcher.get(now)).params == {"text": "now"}
    assert [t.task_id for t in publisher.published] == [now]


def test_eta_must_be_aware_and_alone() -> None:
    with pytest.raises(ValueError, match="aware"):
        TaskRequest("t", eta=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        TaskRequest("t", eta=START, countdown=1)


async def test_a_refused_release_stays_submitted_for_the_outbox(
    dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"}, countdown=5)
    publisher.refuse = lambda task: True
    clock.now = START + timedelta(seconds=5)

    assert await dispatcher.release_due() == 0
    assert (await dispatcher.get(task_id)).state is TaskState.SUBMITTED
    # The outbox waits its age from the release, not from the old submission.
    assert await dispatcher.republish_unconfirmed(older_than_s=1) == 0


# Retries: the store holds them, the dispatcher publishes them when due


async def test_a_retry_is_published_with_its_next_attempt_when_due(
    dispatcher: Dispatcher, publisher: FakePublisher, clock: Clock
) -> None:
    task_id = await dispatcher.submit("word_count", {"text": "a"}, priority=3)
    (first,) = publisher.published
    await dispatcher.record_result(
        ResultMessage(
            task_id=task_id,
            task_type="word_count",
            outcome=Outcome.RETRYING,
            attempt=1,
            executor="e1",
            started_at=START,
            finished_at=START,
            retry_in_s=10,
        )
    )
    clock.now = START + timedelta(seconds=9)
    assert await dispatcher.release_due() == 0

    clock.now = START + timedelta(seconds=10)
    assert await dispatcher.release_due() == 1
    assert await dispatcher.release_due() == 0

    assert publisher.published[1] == first.model_copy(update={"attempt": 2})
    record = await dispatcher.get(task_id)
    assert (record.state, record.attempt) == (TaskState.QUEUED, 2)
