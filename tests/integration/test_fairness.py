"""Fair dispatch: no executor sits idle while a task waits that another executor holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from common import AmqpSettings
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskRecord
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers

# Between two tasks an executor publishes a result, waits for its confirm, acks and receives
# the next delivery: a few milliseconds. Anything far longer is idling.
IDLE_TOLERANCE = timedelta(milliseconds=250)


def idle_while_work_waited(records: list[TaskRecord], began: datetime) -> list[str]:
    """Idle gaps of an executor during which some task had not started anywhere yet.

    A gap runs from the executor's previous finish (or ``began``, when every executor was
    ready and the tasks were published) to its next start (or the last start overall). It
    is a problem when it is long and a task that started after the gap began was waiting.
    """
    starts = sorted(_start(r) for r in records)
    problems = []
    for executor in sorted({r.executor or "" for r in records}):
        own = sorted((r for r in records if r.executor == executor), key=_start)
        idle_from = began
        for record in [*own, None]:
            idle_to = _start(record) if record else starts[-1]
            waiting = [s for s in starts if s > idle_from + IDLE_TOLERANCE]
            if idle_to - idle_from > IDLE_TOLERANCE and waiting:
                problems.append(f"{executor} idle {idle_from:%T.%f}..{idle_to:%T.%f}")
            if record is not None:
                assert record.finished_at is not None
                idle_from = record.finished_at
    return problems


async def test_two_executors_share_mixed_work_without_idling(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    processes.executor("exec-a")
    processes.executor("exec-b")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 2)
    requests = [TaskRequest("sleep_ms", {"ms": 500 if n % 10 == 0 else 5}) for n in range(40)]
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        began = datetime.now(UTC)
        ids = await dispatcher.submit_many(requests)
        records = [await dispatcher.wait(task_id, timeout=30) for task_id in ids]

    assert {r.executor for r in records} == {"exec-a", "exec-b"}
    for executor in ("exec-a", "exec-b"):
        own = sorted((r for r in records if r.executor == executor), key=_start)
        # One slot: an executor never runs two tasks at once.
        for before, after in pairwise(own):
            assert before.finished_at is not None
            assert _start(after) >= before.finished_at
    assert idle_while_work_waited(records, began) == []


def _start(record: TaskRecord) -> datetime:
    assert record.started_at is not None
    return record.started_at


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_a_slot_holds_one_task_across_every_queue_its_executor_consumes(
    queue_type: str,
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    # Classic queues share the slots (a channel-wide prefetch): 1 slot for both queues.
    # Quorum queues ignore a channel-wide prefetch, so each queue gets a slot of its own: 2.
    amqp = amqp_settings.model_copy(update={"queue_type": queue_type})
    slots = 1 if queue_type == "classic" else 2
    env = {"WQ_AMQP_QUEUE_TYPE": queue_type, "WQ_EXECUTOR_QUEUES": "default,reports"}
    processes.executor("exec-a", concurrency=slots, **env)
    processes.executor("exec-b", concurrency=slots, **env)
    for queue in ("default", "reports"):
        wait_for_consumers(broker, amqp.topology.task_queue_of(queue), 2)
    requests = [
        TaskRequest(
            "sleep_ms", {"ms": 500 if n % 10 < 2 else 5}, queue=("default", "reports")[n % 2]
        )
        for n in range(40)
    ]
    async with open_dispatcher(amqp, dispatcher_settings) as dispatcher:
        began = datetime.now(UTC)
        ids = await dispatcher.submit_many(requests)
        records = [await dispatcher.wait(task_id, timeout=30) for task_id in ids]

    assert {r.executor for r in records} == {"exec-a", "exec-b"}
    # What one slot runs: an executor's tasks (classic), or an executor's tasks of one queue
    # (quorum). A slot that held a second task would leave the other executor idle meanwhile.
    groups = [("default", "reports")] if queue_type == "classic" else [("default",), ("reports",)]
    for queues in groups:
        share = [r for r in records if r.queue in queues]
        for executor in ("exec-a", "exec-b"):
            own = sorted((r for r in share if r.executor == executor), key=_start)
            for before, after in pairwise(own):
                assert before.finished_at is not None
                assert _start(after) >= before.finished_at, (queues, executor)
        assert idle_while_work_waited(share, began) == [], queues
