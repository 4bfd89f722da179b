"""Retries wait on the broker, give up into the dead-letter queue, and never loop."""

from __future__ import annotations

import signal
from pathlib import Path

from common import AmqpSettings, ErrorKind
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, supervise_until_settled, wait_for_async


def _calls(counter: Path) -> int:
    return len(counter.read_text().split()) if counter.exists() else 0


async def test_failing_task_is_retried_with_backoff_until_it_succeeds(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "calls"
    processes.executor("exec-retry")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("flaky", {"counter": str(counter), "failures": 2})
        record = await dispatcher.wait(task_id, timeout=30)

    assert record.state is TaskState.SUCCEEDED
    assert record.result == 3
    assert record.attempt == 3
    assert _calls(counter) == 3
    log = processes.log("exec-retry")
    assert log.count('"then": "retry"') == 2


async def test_task_that_keeps_failing_is_dead_lettered_with_its_reasons(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    topology = amqp_settings.topology
    counter = tmp_path / "calls"
    processes.executor("exec-dead")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("flaky", {"counter": str(counter), "failures": 99})
        record = await dispatcher.wait(task_id, timeout=30)

    assert record.state is TaskState.DEAD
    assert record.attempt == 4  # the first attempt and max_retries=3 retries
    assert record.error is not None
    assert record.error.type == "ConnectionError"
    assert _calls(counter) == 4
    dead = broker.get(topology.task_dead_queue)
    assert dead is not None
    properties, body = dead
    assert properties.message_id == str(task_id)
    assert properties.headers["x-wq-dead-reason"] == "retries_exhausted"
    assert properties.headers["x-wq-attempts"] == 4
    assert properties.headers["x-wq-error-type"] == "ConnectionError"
    assert "flaky call 4" in properties.headers["x-wq-error"]
    assert properties.headers["x-wq-original-queue"] == topology.task_queue
    assert b'"attempt":4' in body


async def test_permanent_error_is_not_retried(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    processes.executor("exec-perm")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        record = await dispatcher.wait(await dispatcher.submit("refuse"), timeout=20)
    assert record.state is TaskState.FAILED
    assert record.attempt == 1
    assert record.error is not None
    assert record.error.type == "PermanentTaskError"
    assert broker.counts(amqp_settings.topology.task_dead_queue).messages == 0


async def test_waiting_retry_survives_the_death_of_every_executor(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "calls"
    first = processes.executor("exec-first")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit(
            "flaky_slow_backoff", {"counter": str(counter), "failures": 1}
        )

        async def retrying() -> bool:
            return (await dispatcher.get(task_id)).state is TaskState.RETRYING

        await wait_for_async(retrying, timeout=20, what="the first attempt to be retrying")
        # The retry waits in the broker, not in the executor: killing it loses nothing.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        record_while_waiting = await dispatcher.get(task_id)
        processes.executor("exec-second")
        record = await dispatcher.wait(task_id, timeout=30)

    assert record_while_waiting.next_attempt_at is not None
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 2
    assert record.executor == "exec-second"
    assert _calls(counter) == 2


async def test_handler_that_kills_its_executor_is_dead_lettered_after_the_delivery_limit(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    topology = amqp_settings.topology
    counter = tmp_path / "calls"
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("crash", {"counter": str(counter)})
        await supervise_until_settled(
            processes, dispatcher, task_id, restarts=6, WQ_AMQP_DELIVERY_LIMIT="3"
        )
        record = await dispatcher.wait(task_id, timeout=20)

    assert_exactly_one_outcome_each("handler exits its process (os._exit)", [task_id], [record])
    assert record.state is TaskState.DEAD
    assert record.error is not None
    assert record.error.kind is ErrorKind.DELIVERY_LIMIT
    assert _calls(counter) == 3, "the handler must run exactly delivery-limit times"
    dead = broker.get(topology.task_dead_queue)
    assert dead is not None
    assert dead[0].headers["x-wq-dead-reason"] == "delivery_limit"
    assert broker.counts(topology.task_queue).messages == 0
