"""Long and CPU-bound tasks keep the executor's connection alive: no drop, no second run."""

from __future__ import annotations

from common import AmqpSettings
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers


async def test_cpu_bound_task_outlasting_heartbeats_runs_once(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    # A 1 s heartbeat: the broker drops a connection silent for ~2 s. Both tasks run far longer,
    # so they pass only if task code stays off the connection's event loop.
    processes.executor("exec-cpu", concurrency=2, WQ_AMQP_HEARTBEAT="1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        ids = await dispatcher.submit_many(
            [TaskRequest("spin_ms", {"ms": 5000}), TaskRequest("sleep_ms", {"ms": 5000})]
        )
        records = [await dispatcher.wait(task_id, timeout=40) for task_id in ids]

    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    assert not any(r.redelivered for r in records)
    assert all(r.duplicate_results == 0 for r in records)
    log = processes.log("exec-cpu")
    assert "delivery_unsettled" not in log
    assert "missed heartbeats" not in log.lower()
