"""SIGTERM: in-flight tasks finish within the grace period, or go back to the queue."""

from __future__ import annotations

from pathlib import Path

from common import AmqpSettings
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until_async


async def test_sigterm_lets_the_running_task_finish_report_and_ack(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    executor = processes.executor("exec-term", WQ_EXECUTOR_SHUTDOWN_GRACE="20")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("sleep_ms", {"ms": 1500, "marker": str(marker)})
        await wait_until_async(marker.exists, timeout=20, what="the task to start")
        executor.terminate()
        record = await dispatcher.wait(task_id, timeout=20)
    assert executor.wait(timeout=20) == codes.OK
    assert_exactly_one_outcome_each("executor SIGTERM mid-task", [task_id], [record])
    assert record.state is TaskState.SUCCEEDED
    assert record.executor == "exec-term"
    assert broker.counts(amqp_settings.topology.task_queue).messages == 0
    log = processes.log("exec-term")
    assert '"executor_draining"' in log
    assert '"executor_grace_expired"' not in log


async def test_task_unfinished_after_the_grace_goes_back_to_the_queue(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    executor = processes.executor("exec-short-grace", WQ_EXECUTOR_SHUTDOWN_GRACE="0.5")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("sleep_ms", {"ms": 3000, "marker": str(marker)})
        await wait_until_async(marker.exists, timeout=20, what="the task to start")
        executor.terminate()
        assert executor.wait(timeout=20) == codes.OK
        assert '"executor_grace_expired"' in processes.log("exec-short-grace")
        processes.executor("exec-next")
        record = await dispatcher.wait(task_id, timeout=30)
    assert_exactly_one_outcome_each("executor SIGTERM past its grace", [task_id], [record])
    assert record.state is TaskState.SUCCEEDED
    assert record.executor == "exec-next"
    assert record.duplicate_results == 0
    assert len(marker.read_text().split()) == 2  # started once per executor, recorded once


async def test_second_sigterm_stops_at_once(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    executor = processes.executor("exec-twice", WQ_EXECUTOR_SHUTDOWN_GRACE="60")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        await dispatcher.submit("sleep_ms", {"ms": 30_000, "marker": str(marker)})
        await wait_until_async(marker.exists, timeout=20, what="the task to start")
        executor.terminate()
        await wait_until_async(
            lambda: '"executor_draining"' in processes.log("exec-twice"),
            timeout=20,
            what="the executor to start draining",
        )
        executor.terminate()
        assert executor.wait(timeout=10) == codes.INTERRUPTED
