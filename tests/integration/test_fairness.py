"""Fair dispatch: no executor sits idle while a task waits that another executor holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

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
