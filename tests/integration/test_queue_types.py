"""Quorum queues work like classic ones; a queue-type change fails clearly, with a way out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common import AmqpSettings, ConfigError, ErrorKind
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, supervise_until_settled, wait_for_consumers


def _queue_types(prefix: str) -> dict[str, str]:
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name", "type"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pairs = (line.split("\t") for line in listed.splitlines() if line.startswith(prefix + "."))
    return {name: kind.strip() for name, kind in pairs}


@pytest.fixture
def quorum(amqp_settings: AmqpSettings) -> AmqpSettings:
    return amqp_settings.model_copy(update={"queue_type": "quorum", "delivery_limit": 3})


async def test_tasks_round_trip_and_retry_on_quorum_queues(
    quorum: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    tmp_path: Path,
) -> None:
    processes.executor("exec-q", WQ_AMQP_QUEUE_TYPE="quorum", WQ_AMQP_DELIVERY_LIMIT="3")
    counter = tmp_path / "calls"
    async with open_dispatcher(quorum, dispatcher_settings) as dispatcher:
        echoed = await dispatcher.wait(await dispatcher.submit("echo", {"value": 1}), timeout=20)
        retried = await dispatcher.wait(
            await dispatcher.submit("flaky", {"counter": str(counter), "failures": 1}),
            timeout=20,
        )
    assert echoed.state is TaskState.SUCCEEDED
    assert retried.state is TaskState.SUCCEEDED
    assert retried.attempt == 2
    types = _queue_types(quorum.prefix)
    assert types[quorum.topology.task_queue] == "quorum"
    assert types[quorum.topology.results_queue] == "quorum"
    assert types[quorum.topology.task_dead_queue] == "quorum"


async def test_poison_task_on_a_quorum_queue_is_dead_lettered_with_reasons(
    quorum: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "calls"
    async with open_dispatcher(quorum, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("crash", {"counter": str(counter)})
        await supervise_until_settled(
            processes,
            dispatcher,
            task_id,
            restarts=6,
            WQ_AMQP_QUEUE_TYPE="quorum",
            WQ_AMQP_DELIVERY_LIMIT="3",
        )
        record = await dispatcher.wait(task_id, timeout=20)
    assert record.state is TaskState.DEAD
    assert record.error is not None
    assert record.error.kind is ErrorKind.DELIVERY_LIMIT
    assert len(counter.read_text().split()) == 3
    dead = broker.get(quorum.topology.task_dead_queue)
    assert dead is not None
    assert dead[0].headers["x-wq-dead-reason"] == "delivery_limit"


async def test_changing_the_queue_type_fails_with_a_migration_hint(
    amqp_settings: AmqpSettings,
    quorum: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False):
        pass  # the classic queues now exist
    with pytest.raises(ConfigError) as caught:
        async with open_dispatcher(quorum, dispatcher_settings, consume_results=False):
            pass
    message = str(caught.value)
    assert "x-queue-type" in message
    assert "rabbitmqctl delete_queue" in message
    assert "WQ_AMQP_PREFIX" in message
    executor = processes.executor("exec-mismatch", WQ_AMQP_QUEUE_TYPE="quorum")
    assert executor.wait(timeout=30) == codes.USAGE
    assert "delete_queue" in processes.log("exec-mismatch")
    # The existing queues were left alone.
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 0)
    assert "classic" in _queue_types(amqp_settings.prefix)[amqp_settings.topology.task_queue]
