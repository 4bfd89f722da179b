"""A task goes through both services and back, and reads well in the management UI."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from common import AmqpSettings, PublishRejected
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from dispatcher.sync_client import SyncDispatcher
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers


async def test_task_round_trips_through_dispatcher_and_executor(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    processes.executor("exec-a")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("echo", {"value": {"hello": [1, 2, 3]}})
        record = await dispatcher.wait(task_id, timeout=20)

    assert record.state is TaskState.SUCCEEDED
    assert record.result == {"hello": [1, 2, 3]}
    assert record.executor == "exec-a"
    assert record.attempt == 1
    assert record.queued_at is not None
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.submitted_at <= record.finished_at
    assert record.duplicate_results == 0
    # Nothing is left behind: the task and its result were both acknowledged.
    assert broker.counts(amqp_settings.topology.task_queue).messages == 0
    assert broker.counts(amqp_settings.topology.results_queue).messages == 0


async def test_published_task_is_persistent_json_with_readable_properties(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False) as d:
        task_id = await d.submit("echo", {"value": 1})
        record = await d.get(task_id)
    assert record.state is TaskState.QUEUED

    got = broker.get(amqp_settings.topology.task_queue)
    assert got is not None
    properties, body = got
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert properties.message_id == str(task_id)
    assert properties.correlation_id == str(task_id)
    assert properties.type == "echo"
    assert properties.reply_to == amqp_settings.topology.results_queue
    assert properties.app_id == "wq-dispatcher"
    assert properties.timestamp >= int(before.timestamp())
    document = json.loads(body)
    assert document["version"] == 1
    assert document["task_id"] == str(task_id)
    assert document["params"] == {"value": 1}


async def test_submit_many_queues_every_task_with_pipelined_confirms(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    progress: list[int] = []
    async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False) as d:
        ids = await d.submit_many(
            [TaskRequest("echo", {"value": n}) for n in range(1200)], progress=progress.append
        )
        records = await d.get_many(ids)
    assert len(set(ids)) == 1200
    assert sum(progress) == 1200
    assert {r.state for r in records} == {TaskState.QUEUED}
    assert broker.counts(amqp_settings.topology.task_queue).messages == 1200


async def test_unroutable_publish_is_an_error_not_silence(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False) as d:
        # An operator deleting the task queue must not turn submissions into silent drops.
        broker.channel().queue_delete(amqp_settings.topology.task_queue)
        with pytest.raises(PublishRejected) as caught:
            await d.submit("echo", {"value": 1})
        assert caught.value.reason == "unroutable"
        assert caught.value.task_id is not None
        record = await d.get(caught.value.task_id)
    assert record.state is TaskState.SUBMITTED


def test_sync_client_submits_and_reads_the_outcome(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    store_path: Path,
    processes: Processes,
    broker: Broker,
) -> None:
    processes.dispatcher("dispatcher", store_path)
    processes.executor("exec-sync")
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    with SyncDispatcher(amqp_settings, dispatcher_settings) as client:
        ids = [client.submit("echo", {"value": n}) for n in range(3)]
        records = [client.wait(task_id, timeout=20) for task_id in ids]
    assert [r.result for r in records] == [0, 1, 2]
    assert {r.state for r in records} == {TaskState.SUCCEEDED}


def test_sync_client_is_safe_to_share_between_threads(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    ids: list[UUID] = []
    with SyncDispatcher(amqp_settings, dispatcher_settings) as client:

        def submit_some() -> None:
            for n in range(20):
                ids.append(client.submit("echo", {"value": n}))

        threads = [threading.Thread(target=submit_some) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        records = client.get_many(ids)
    assert len(set(ids)) == 80
    assert {r.state for r in records} == {TaskState.QUEUED}
    assert broker.counts(amqp_settings.topology.task_queue).messages == 80


def test_sync_client_submit_many_queues_every_task_of_the_batch(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    requests = [TaskRequest("echo", {"value": n}) for n in range(25)]
    with SyncDispatcher(amqp_settings, dispatcher_settings) as client:
        ids = client.submit_many(requests)
        records = client.get_many(ids)
    assert len(set(ids)) == 25
    assert {r.state for r in records} == {TaskState.QUEUED}
    assert broker.counts(amqp_settings.topology.task_queue).messages == 25


def test_sync_client_survives_an_idle_spell_longer_than_its_heartbeat(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, broker: Broker
) -> None:
    settings = amqp_settings.model_copy(update={"heartbeat": 1})
    with SyncDispatcher(settings, dispatcher_settings) as client:
        first = client.submit("echo", {"value": 1})
        # Idle, as a web view is between requests: the scenario itself, not a synchronisation.
        time.sleep(5)
        second = client.submit("echo", {"value": 2})
        records = client.get_many([first, second])
    assert {r.state for r in records} == {TaskState.QUEUED}
    assert broker.counts(amqp_settings.topology.task_queue).messages == 2
