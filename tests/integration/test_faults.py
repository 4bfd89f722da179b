"""Processes really die mid-work; every task id still ends with exactly one outcome."""

from __future__ import annotations

import signal
from pathlib import Path

from common import AmqpSettings
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until_async


async def test_executor_killed_mid_task_leads_to_redelivery_and_one_result(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    victim = processes.executor("exec-victim")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    markers = [tmp_path / f"started-{n}" for n in range(12)]
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        ids = await dispatcher.submit_many(
            [TaskRequest("sleep_ms", {"ms": 400, "marker": str(m)}) for m in markers]
        )
        # Written, not only created: the file exists from the handler's open, and a kill
        # before its close would leave the victim's pid unwritten.
        await wait_until_async(
            lambda: markers[0].exists() and markers[0].read_text().endswith("\n"),
            timeout=20,
            what="the first task to start",
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        processes.executor("exec-survivor")
        records = [await dispatcher.wait(task_id, timeout=30) for task_id in ids]

    assert_exactly_one_outcome_each("executor kill -9 mid-task", ids, records)
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    killed_mid_task = [
        record
        for record, marker in zip(records, markers, strict=True)
        if str(victim.pid) in marker.read_text().split() and record.executor == "exec-survivor"
    ]
    assert killed_mid_task, "no task was interrupted by the kill and redelivered"
    assert all(record.redelivered for record in killed_mid_task)
    assert all(record.duplicate_results == 0 for record in records)


async def test_dispatcher_killed_and_restarted_loses_no_result(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    store_path: Path,
    processes: Processes,
    broker: Broker,
) -> None:
    topology = amqp_settings.topology
    first = processes.dispatcher("dispatcher-1", store_path)
    processes.executor("exec-1", concurrency=2)
    wait_for_consumers(broker, topology.results_queue, 1)
    async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False) as d:
        ids = await d.submit_many([TaskRequest("sleep_ms", {"ms": 5}) for _ in range(300)])
    store = open_store(store_path)

    def finished() -> int:
        return sum(r.state.is_final for r in store.get_many(ids))

    await wait_until_async(lambda: finished() >= 20, timeout=30, what="some recorded results")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    recorded_before_restart = finished()
    # With no dispatcher running, the executor keeps working and results wait in the queue.
    await wait_until_async(
        lambda: (
            broker.counts(topology.task_queue).messages == 0
            and broker.counts(topology.results_queue).messages > 0
        ),
        timeout=30,
        what="results to pile up in the durable results queue",
    )
    processes.dispatcher("dispatcher-2", store_path)
    await wait_until_async(lambda: finished() == len(ids), timeout=30, what="every outcome")

    records = store.get_many(ids)
    store.close()
    assert recorded_before_restart < len(ids)
    assert_exactly_one_outcome_each("dispatcher kill -9 and restart", ids, records)
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    assert broker.counts(topology.results_queue).messages == 0
