"""Bad input: refused at submit where it can be, else reported and dead-lettered; never a loop."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pytest
from structlog.testing import capture_logs

from common import AmqpSettings, ErrorKind, InvalidParams
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskState
from dispatcher.sync_client import SyncDispatcher
from tests.integration.broker import Broker
from tests.integration.conftest import (
    Processes,
    wait_for_consumers,
    wait_until,
    wait_until_async,
)


def _task_body(task_id: str, **overrides: Any) -> bytes:
    document = {
        "version": 1,
        "task_id": task_id,
        "task_type": "echo",
        "params": {"value": 1},
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    document.update(overrides)
    return json.dumps(document).encode()


def _properties(task_id: str | None, reply_to: str | None) -> Any:
    return pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        message_id=task_id,
        correlation_id=task_id,
        reply_to=reply_to,
    )


CASES: dict[str, Callable[[str], bytes]] = {
    "decode_error": lambda task_id: b"\x00\xffnot json at all",
    "decode_error_schema": lambda task_id: json.dumps({"task_id": task_id}).encode(),
    "unsupported_version": lambda task_id: _task_body(task_id, version=2),
    "unknown_task_type": lambda task_id: _task_body(task_id, task_type="no_such_task"),
    "invalid_params": lambda task_id: _task_body(task_id, params={"value": 1, "extra": 2}),
    "invalid_params_type": lambda task_id: _task_body(
        task_id, task_type="sleep_ms", params={"ms": "soon"}
    ),
    "message_too_large": lambda task_id: _task_body(task_id, params={"value": "x" * 5000}),
}


EXPECTED_KIND = {
    "decode_error": ErrorKind.DECODE_ERROR,
    "decode_error_schema": ErrorKind.DECODE_ERROR,
    "unsupported_version": ErrorKind.UNSUPPORTED_VERSION,
    "unknown_task_type": ErrorKind.UNKNOWN_TASK_TYPE,
    "invalid_params": ErrorKind.INVALID_PARAMS,
    "invalid_params_type": ErrorKind.INVALID_PARAMS,
    "message_too_large": ErrorKind.MESSAGE_TOO_LARGE,
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_message_gets_an_error_result_and_is_dead_lettered(
    case: str,
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    topology = amqp_settings.topology
    executor = processes.executor("exec-bad", WQ_AMQP_MAX_BODY_BYTES="4096")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        wait_for_consumers(broker, topology.task_queue, 1)
        bad_id = str(uuid.uuid4())
        sent = CASES[case](bad_id)
        broker.publish(
            topology.task_exchange, "task", sent, _properties(bad_id, topology.results_queue)
        )
        record = await dispatcher.wait(uuid.UUID(bad_id), timeout=20)
        # The executor survived and still serves: a good task after the bad one succeeds.
        good = await dispatcher.wait(await dispatcher.submit("echo", {"value": 2}), timeout=20)

    assert record.state is TaskState.DEAD
    assert record.error is not None
    assert record.error.kind is EXPECTED_KIND[case]
    assert record.error.message
    assert good.state is TaskState.SUCCEEDED
    assert executor.poll() is None
    wait_until(
        lambda: broker.counts(topology.task_dead_queue).messages == 1,
        timeout=10,
        what="the bad message in the dead-letter queue",
    )
    assert broker.counts(topology.task_queue).messages == 0
    assert '"task_rejected"' in processes.log("exec-bad")
    dead = broker.get(topology.task_dead_queue)
    assert dead is not None
    properties, body = dead
    assert body == sent, "the dead-lettered message must be the original, byte for byte"
    assert properties.message_id == bad_id
    assert properties.headers["x-wq-dead-reason"] == "rejected"
    assert properties.headers["x-wq-error-kind"] == EXPECTED_KIND[case].value
    assert properties.headers["x-wq-original-queue"] == topology.task_queue
    assert properties.headers["x-wq-executor"] == "exec-bad"


def test_message_without_any_task_id_or_reply_to_is_dead_lettered_once(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker
) -> None:
    topology = amqp_settings.topology
    executor = processes.executor("exec-anon")
    wait_for_consumers(broker, topology.task_queue, 1)
    broker.publish(topology.task_exchange, "task", b"{oops", _properties(None, None))
    wait_until(
        lambda: broker.counts(topology.task_dead_queue).messages == 1,
        timeout=10,
        what="the anonymous bad message in the dead-letter queue",
    )
    assert broker.counts(topology.task_queue).messages == 0
    assert executor.poll() is None
    # Rejected once, not redelivered in a loop.
    assert processes.log("exec-anon").count('"task_rejected"') == 1


def test_result_with_nowhere_to_go_keeps_the_task_in_the_dead_letter_queue(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker
) -> None:
    topology = amqp_settings.topology
    processes.executor("exec-noreply")
    wait_for_consumers(broker, topology.task_queue, 1)
    task_id = str(uuid.uuid4())
    broker.publish(
        topology.task_exchange, "task", _task_body(task_id), _properties(task_id, "no.such.queue")
    )
    wait_until(
        lambda: broker.counts(topology.task_dead_queue).messages == 1,
        timeout=10,
        what="the task whose result was unroutable in the dead-letter queue",
    )
    assert '"result_undeliverable"' in processes.log("exec-noreply")


async def test_undecodable_result_is_dead_lettered_by_the_dispatcher(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    broker: Broker,
    tmp_path: Path,
) -> None:
    topology = amqp_settings.topology
    async with open_dispatcher(amqp_settings, dispatcher_settings):
        broker.publish("", topology.results_queue, b"not a result", _properties(None, None))
        await wait_until_async(
            lambda: broker.counts(topology.results_dead_queue).messages == 1,
            timeout=10,
            what="the bad result in the results dead-letter queue",
        )
    assert broker.counts(topology.results_queue).messages == 0


async def test_oversized_heartbeats_and_progress_are_logged_and_dropped_unread(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    amqp = amqp_settings.model_copy(update={"max_body_bytes": 4096})
    topology = amqp.topology
    # Valid JSON, but not a heartbeat or a report: only the size check names the size.
    body = b"{}" + b" " * 5000
    with capture_logs() as logs:
        async with open_dispatcher(amqp, dispatcher_settings, monitor_executors=True):
            broker.publish("", topology.executors_queue, body)
            broker.publish("", topology.progress_queue, body, _properties("p-1", None))
            await wait_until_async(
                lambda: len([e for e in logs if e["log_level"] == "warning"]) == 2,
                timeout=10,
                what="both oversized messages to be logged",
            )
    # Acked, not requeued when the dispatcher's channels closed.
    assert broker.counts(topology.executors_queue).messages == 0
    assert broker.counts(topology.progress_queue).messages == 0
    dropped = sorted(
        (
            {k: v for k, v in e.items() if k != "log_level"}
            for e in logs
            if e["log_level"] == "warning"
        ),
        key=lambda e: str(e["event"]),
    )
    assert dropped == [
        {"event": "heartbeat_rejected", "error": "heartbeat body of 5002 bytes is over the limit"},
        {
            "event": "progress_dropped",
            "message_id": "p-1",
            "error": "progress body of 5002 bytes is over the limit",
        },
    ]


async def test_a_task_over_the_body_limit_is_refused_at_submit_by_both_clients(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    amqp = amqp_settings.model_copy(update={"max_body_bytes": 4096})
    big = {"value": "x" * 5000}
    async with open_dispatcher(amqp, dispatcher_settings) as dispatcher:
        with pytest.raises(InvalidParams, match="over the limit of 4096"):
            await dispatcher.submit("echo", big)
        assert await dispatcher.list_tasks(TaskQuery()) == []
    with SyncDispatcher(amqp, dispatcher_settings) as client:
        with pytest.raises(InvalidParams, match="over the limit of 4096"):
            client.submit("echo", big)
        client.submit("echo", {"value": 1})
    # Only the task that fits was recorded and published.
    assert broker.counts(amqp.topology.task_queue).messages == 1


async def test_oversized_result_is_reported_as_a_failure_not_lost(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
) -> None:
    processes.executor("exec-big", WQ_AMQP_MAX_BODY_BYTES="4096")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("blow_up", {"size": 10_000})
        record = await dispatcher.wait(task_id, timeout=20)
    assert record.state is TaskState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert '"result_too_large"' in processes.log("exec-big")
