"""The executor registry, published task types and the dispatcher's metrics, on SQLite."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from common import (
    ExecutorEvent,
    Heartbeat,
    InvalidParams,
    Outcome,
    ResultMessage,
    TaskRegistry,
    TaskTypeInfo,
    UnknownTaskType,
)
from dispatcher.fleet import Fleet
from dispatcher.metrics import DispatcherMetrics, SubmissionCounter, render
from dispatcher.service import Dispatcher
from dispatcher.store.backends import open_store
from dispatcher.store.records import ExecutorState, TaskTypeRecord
from dispatcher.store.threaded import ThreadedTaskStore
from dispatcher.task_types import CATALOG_MAX_AGE_S, TaskTypeCatalog
from tests.unit.dispatcher.fakes import FakePublisher

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
tasks = TaskRegistry()


@tasks.task("resize")
def resize(width: int, height: int = 10, mode: str = "fit") -> None:
    """Resize an image.

    Longer explanation.
    """


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ThreadedTaskStore]:
    threaded = ThreadedTaskStore(open_store(tmp_path / "tasks.sqlite3"))
    yield threaded
    await threaded.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dispatcher(store: ThreadedTaskStore, clock: Clock) -> Dispatcher:
    return Dispatcher(publisher=FakePublisher(), store=store, clock=clock, executor_lost_after=30)


def _heartbeat(
    at: datetime, event: ExecutorEvent = ExecutorEvent.HEARTBEAT, **changes: Any
) -> Heartbeat:
    return Heartbeat(
        event=event,
        host="h",
        pid=1,
        slots=2,
        started_at=T0,
        sent_at=at,
        **({"executor": "e1", "task_types": [tasks.get("resize").describe()]} | changes),
    )


def test_a_task_definition_describes_itself_for_other_languages() -> None:
    info = tasks.get("resize").describe()

    assert info.description == "Resize an image."
    assert info.params_schema["required"] == ["width"]
    assert info.params_schema["additionalProperties"] is False
    assert info.options["max_retries"] == 3
    assert info.options["time_limit"] is None


async def test_executors_are_running_then_lost_or_stopped(
    dispatcher: Dispatcher, clock: Clock
) -> None:
    await dispatcher.fleet.record_heartbeat(_heartbeat(T0, ExecutorEvent.STARTED))
    ((record),) = await dispatcher.fleet.executors()
    assert record.state is ExecutorState.RUNNING

    clock.now = T0 + timedelta(seconds=31)
    assert [e.state for e in await dispatcher.fleet.executors()] == [ExecutorState.LOST]

    await dispatcher.fleet.record_heartbeat(_heartbeat(clock.now, ExecutorEvent.STOPPED))
    assert [e.state for e in await dispatcher.fleet.executors()] == [ExecutorState.STOPPED]
    await dispatcher.fleet.update_gauges()
    text = render(dispatcher.metrics.registry)[0].decode()
    assert 'wq_executors{state="stopped"} 1.0' in text
    assert 'wq_executors{state="running"} 0.0' in text


async def test_submits_are_checked_against_published_schemas(dispatcher: Dispatcher) -> None:
    await dispatcher.fleet.record_heartbeat(_heartbeat(T0))

    await dispatcher.submit("resize", {"width": 3})
    with pytest.raises(UnknownTaskType):
        await dispatcher.submit("nope", {})
    with pytest.raises(InvalidParams) as refused:
        await dispatcher.submit("resize", {"width": "wide", "colour": 1})
    assert [(e["loc"], e["type"]) for e in refused.value.errors] == [
        ([], "additionalProperties"),
        (["width"], "type"),
    ]
    assert "'wide' is not of type 'integer'" in str(refused.value)


async def test_without_published_types_anything_is_accepted(dispatcher: Dispatcher) -> None:
    await dispatcher.submit("anything", {"x": 1})


async def test_a_type_published_by_another_dispatcher_is_found_in_the_store(
    store: ThreadedTaskStore, dispatcher: Dispatcher
) -> None:
    await dispatcher.submit("anything", {})  # the catalog is loaded, empty
    info = TaskTypeInfo(name="late", params_schema={"type": "object"})
    await store.publish_task_types([info], published_by="elsewhere", at=T0)

    await dispatcher.submit("late", {})


def test_the_catalog_compiles_a_schema_once_until_it_changes() -> None:
    catalog = TaskTypeCatalog(clock=lambda: 0.0)

    def record(schema: dict[str, Any]) -> TaskTypeRecord:
        return TaskTypeRecord(name="t", params_schema=schema, published_by="e", updated_at=T0)

    catalog.load([record({"type": "object"})])
    compiled = catalog._validators["t"]
    catalog.load([record({"type": "object"})])
    assert catalog._validators["t"] is compiled
    catalog.load([record({"type": "object", "required": ["a"]})])
    with pytest.raises(InvalidParams):
        catalog.validate("t", {})
    catalog.load([record({"type": 5})])  # an invalid schema is ignored, the old one kept
    assert len(catalog) == 1
    catalog.load([])
    assert not catalog.knows("t")


async def test_dispatcher_metrics_count_submits_and_outcomes(
    dispatcher: Dispatcher, clock: Clock
) -> None:
    submissions = SubmissionCounter(dispatcher.store, dispatcher.metrics, clock, lag_s=5)
    clock.now += timedelta(seconds=1)  # dispatcher serve counts what comes after its start
    task_id = await dispatcher.submit("resize", {"width": 1})
    await submissions.count()  # within the lag: not yet
    assert dispatcher.metrics.submitted.labels(task_type="resize")._value.get() == 0
    clock.now += timedelta(seconds=5)
    await submissions.count()
    result = ResultMessage(
        task_id=task_id,
        task_type="resize",
        outcome=Outcome.SUCCEEDED,
        executor="e1",
        started_at=T0,
        finished_at=T0,
    )
    await dispatcher.record_result(result)
    await dispatcher.record_result(result)

    body, content_type = render(dispatcher.metrics.registry)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert content_type.startswith("text/plain")
    assert samples[("wq_tasks_submitted_total", (("task_type", "resize"),))] == 1
    key = (("outcome", "succeeded"), ("task_type", "resize"))
    assert samples[("wq_task_outcomes_total", key)] == 1
    assert samples[("wq_duplicate_results_total", ())] == 1


async def test_submissions_of_another_process_are_counted_once_each(
    dispatcher: Dispatcher, store: ThreadedTaskStore, clock: Clock
) -> None:
    # A `dispatcher submit` is another process on the same store, with metrics of its own
    # that nobody scrapes: dispatcher serve counts its tasks from the store.
    cli = Dispatcher(publisher=FakePublisher(), store=store, clock=clock)
    submissions = SubmissionCounter(dispatcher.store, dispatcher.metrics, clock, lag_s=5)
    for seconds in (1, 10, 30):
        clock.now = T0 + timedelta(seconds=seconds)
        await cli.submit("resize", {"width": seconds})
        await cli.submit("crop", {})
        clock.now += timedelta(seconds=6)
        await submissions.count()
        await submissions.count()  # nothing counted twice

    counted = dispatcher.metrics.submitted
    assert counted.labels(task_type="resize")._value.get() == 3
    assert counted.labels(task_type="crop")._value.get() == 3


def test_each_dispatcher_has_its_own_registry() -> None:
    first, second = DispatcherMetrics(), DispatcherMetrics()
    first.duplicates.inc()
    assert b"wq_duplicate_results_total 0.0" in render(second.registry)[0]


class GatedTypes(ThreadedTaskStore):
    """The same store, whose task-type reads are counted and wait for the test's gate."""

    def __init__(self, inner: ThreadedTaskStore) -> None:
        super().__init__(inner.sync)
        self.reads = 0
        self.gate = asyncio.Event()
        self.read = asyncio.Event()
        self.entered = asyncio.Event()

    async def list_task_types(self) -> list[TaskTypeRecord]:
        self.reads += 1
        self.entered.set()
        await self.gate.wait()
        records = await super().list_task_types()
        self.read.set()
        return records


def _fleet(store: ThreadedTaskStore, now: list[float]) -> Fleet:
    catalog = TaskTypeCatalog(clock=lambda: now[0])
    return Fleet(store, metrics=DispatcherMetrics(), clock=lambda: T0, catalog=catalog)


async def test_submits_waiting_for_an_unknown_type_share_one_store_read(
    store: ThreadedTaskStore,
) -> None:
    await store.publish_task_types([tasks.get("resize").describe()], published_by="e1", at=T0)
    gated = GatedTypes(store)
    fleet = _fleet(gated, [0.0])

    checks = [asyncio.ensure_future(fleet.validate([("resize", {"width": 3})])) for _ in range(3)]
    await asyncio.sleep(0)
    gated.gate.set()
    await asyncio.gather(*checks)

    assert gated.reads == 1


async def test_a_type_being_published_is_waited_for_not_refused(
    store: ThreadedTaskStore,
) -> None:
    # The store holds the type (GET /task-types lists it) before the catalog is reloaded
    # after it; a submit in between, within a second of the last read, waited for nothing.
    other = TaskTypeInfo(name="other", params_schema={"type": "object"})
    await store.publish_task_types([other], published_by="e0", at=T0)
    gated = GatedTypes(store)
    fleet = _fleet(gated, [0.0])
    gated.gate.set()
    await fleet.validate([("other", {})])  # a fresh catalog, without resize
    gated.gate.clear()
    gated.entered.clear()

    publishing = asyncio.ensure_future(fleet.record_heartbeat(_heartbeat(T0)))
    await gated.entered.wait()  # resize is in the store; the catalog's reload waits at the gate
    check = asyncio.ensure_future(fleet.validate([("resize", {"width": 3})]))
    await asyncio.sleep(0)
    gated.gate.set()
    await publishing

    await check


async def test_an_old_catalog_is_read_again_without_holding_submits_of_known_types(
    store: ThreadedTaskStore,
) -> None:
    await store.publish_task_types([tasks.get("resize").describe()], published_by="e1", at=T0)
    gated = GatedTypes(store)
    now = [0.0]
    fleet = _fleet(gated, now)
    gated.gate.set()
    await fleet.validate([("resize", {"width": 3})])
    gated.gate.clear()
    gated.read.clear()
    now[0] = CATALOG_MAX_AGE_S

    await fleet.validate([("resize", {"width": 3})])  # returns with the read still held
    with pytest.raises(InvalidParams):
        await fleet.validate([("resize", {"width": "wide"})])
    gated.gate.set()
    await gated.read.wait()

    assert gated.reads == 2  # the first load, then one read for both checks


async def test_params_are_validated_off_the_event_loop(
    store: ThreadedTaskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.publish_task_types([tasks.get("resize").describe()], published_by="e1", at=T0)
    catalog = TaskTypeCatalog()
    fleet = Fleet(store, metrics=DispatcherMetrics(), clock=lambda: T0, catalog=catalog)
    threads: list[int] = []
    validate = catalog.validate

    def recording(task_type: str, params: Any) -> None:
        threads.append(threading.get_ident())
        validate(task_type, params)

    monkeypatch.setattr(catalog, "validate", recording)

    await fleet.validate([("resize", {"width": 3}), ("resize", {"width": 4})])

    assert len(threads) == 2
    assert threading.get_ident() not in threads  # a slow check cannot stall the loop


async def test_another_executors_schema_waits_until_the_publisher_stops(
    store: ThreadedTaskStore,
) -> None:
    # A heartbeat can come from anyone on the broker: while the executor that published a
    # type is live, another one cannot replace its schema (with a pattern that backtracks,
    # say); a deploy takes over once the old executor has stopped.
    fleet = Fleet(store, metrics=DispatcherMetrics(), clock=lambda: T0, lost_after=60)
    await fleet.record_heartbeat(_heartbeat(T0))
    resize = tasks.get("resize").describe()
    hostile = resize.model_copy(update={"params_schema": {"type": "object", "required": ["x"]}})
    rogue = _heartbeat(T0, executor="rogue", task_types=[hostile])

    with capture_logs() as logs:
        await fleet.record_heartbeat(rogue)
        await fleet.record_heartbeat(rogue)

    assert [line["event"] for line in logs] == ["task_types_conflict"]  # once, not per beat
    assert logs[0]["task_types"] == ["resize"]
    await fleet.validate([("resize", {"width": 3})])  # still the publisher's schema
    (kept,) = await fleet.task_types()
    assert kept.published_by == "e1"

    await fleet.record_heartbeat(_heartbeat(T0, event=ExecutorEvent.STOPPED))
    await fleet.record_heartbeat(rogue)

    (taken,) = await fleet.task_types()
    assert (taken.published_by, taken.params_schema["required"]) == ("rogue", ["x"])


async def test_a_submission_no_live_executor_serves_is_warned_about_once_a_minute(
    dispatcher: Dispatcher, clock: Clock
) -> None:
    await dispatcher.fleet.record_heartbeat(_heartbeat(T0, queues=["default"]))

    with capture_logs() as logs:
        await dispatcher.submit("resize", {"width": 1})  # its type, on a queue it consumes
        await dispatcher.submit("resize", {"width": 1}, queue="reports")
        await dispatcher.submit("resize", {"width": 2}, queue="reports")  # warned already
        clock.now = T0 + timedelta(seconds=61)
        await dispatcher.fleet.record_heartbeat(_heartbeat(clock.now, queues=["default"]))
        await dispatcher.submit("resize", {"width": 3}, queue="reports")

    warned = [e for e in logs if e["event"] == "task_queue_unserved"]
    assert [(e["task_type"], e["queue"], e["live_executors"]) for e in warned] == [
        ("resize", "reports", 1),
        ("resize", "reports", 1),
    ]


async def test_no_routing_warning_while_no_executor_is_known_or_live(
    dispatcher: Dispatcher, clock: Clock
) -> None:
    with capture_logs() as logs:
        await dispatcher.submit("resize", {"width": 1}, queue="reports")  # none known yet
        await dispatcher.fleet.record_heartbeat(_heartbeat(T0, queues=["reports"]))
        clock.now = T0 + timedelta(minutes=5)  # that one is lost by now
        await dispatcher.submit("resize", {"width": 1}, queue="elsewhere")

    assert [e for e in logs if e["event"] == "task_queue_unserved"] == []


async def test_replicas_publishing_the_same_task_types_are_no_conflict(
    store: ThreadedTaskStore,
) -> None:
    fleet = Fleet(store, metrics=DispatcherMetrics(), clock=lambda: T0, lost_after=60)
    await fleet.record_heartbeat(_heartbeat(T0))

    with capture_logs() as logs:
        await fleet.record_heartbeat(_heartbeat(T0, executor="replica-2"))
        await fleet.record_heartbeat(_heartbeat(T0, executor="replica-2"))

    assert [line["event"] for line in logs if line["event"] == "task_types_conflict"] == []
    (kept,) = await fleet.task_types()
    assert kept.published_by == "e1"
