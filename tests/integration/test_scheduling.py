"""Priorities, delayed tasks and cron schedules against the real broker and both stores."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pika
import pytest
from pydantic import SecretStr

from common import AmqpSettings, ConfigError, TaskTypeInfo
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.schedules import ScheduleBook
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.integration.broker import Broker
from tests.integration.conftest import (
    Processes,
    wait_for_async,
    wait_for_consumers,
    wait_until,
)
from tests.integration.test_cli import run_cli
from tests.postgres import IsolatedSchema


async def test_a_high_priority_task_overtakes_a_backlog(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        # No executor yet: the backlog waits in the queue, then the urgent task joins it.
        backlog = await dispatcher.submit_many(
            [TaskRequest("sleep_ms", {"ms": 5}, priority=1) for _ in range(30)]
        )
        urgent = await dispatcher.submit("sleep_ms", {"ms": 5}, priority=9)
        assert broker.counts(amqp_settings.topology.task_queue).messages == 31
        processes.executor("exec-prio", concurrency=1)

        async def all_done() -> bool:
            records = await dispatcher.get_many([*backlog, urgent])
            return all(r.state is TaskState.SUCCEEDED for r in records)

        await wait_for_async(all_done, timeout=60, what="31 tasks to succeed")
        records = await dispatcher.get_many([*backlog, urgent])

    order = [r.task_id for r in sorted(records, key=lambda r: r.finished_at or r.submitted_at)]
    # The executor may already hold the first backlog task when it starts; the urgent one
    # must come before most of the backlog all the same.
    assert order.index(urgent) <= 2, order.index(urgent)
    assert next(r for r in records if r.task_id == urgent).priority == 9


async def test_a_task_queue_without_priorities_fails_with_the_setting_to_use(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    broker: Broker,
    broker_reachable: str,
) -> None:
    # A task queue declared by an older release, before priorities existed.
    old = amqp_settings.model_copy(update={"max_priority": 0})
    connection = pika.BlockingConnection(pika.URLParameters(broker_reachable))
    channel = connection.channel()
    for name, arguments in old.topology.queue_declarations():
        channel.queue_declare(name, durable=True, arguments=arguments)
    connection.close()

    with pytest.raises(ConfigError) as caught:
        async with open_dispatcher(amqp_settings, dispatcher_settings, consume_results=False):
            pass
    message = str(caught.value)
    assert "x-max-priority" in message
    assert "WQ_AMQP_MAX_PRIORITY=0" in message


async def test_a_delayed_task_runs_once_it_is_due(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    store_path: Path,
) -> None:
    processes.dispatcher("dispatcher", store_path, WQ_DISPATCHER_SCHEDULER_INTERVAL="0.2")
    processes.executor("exec-delay")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    async with open_dispatcher(
        amqp_settings, dispatcher_settings, consume_results=False
    ) as dispatcher:
        task_id = await dispatcher.submit("echo", {"value": 1}, countdown=1.5)
        assert (await dispatcher.get(task_id)).state is TaskState.SCHEDULED
        assert broker.counts(amqp_settings.topology.task_queue).messages == 0
        record = await dispatcher.wait(task_id, timeout=20)

    assert record.state is TaskState.SUCCEEDED
    assert record.eta is not None
    assert record.started_at is not None
    assert record.started_at >= record.eta


async def test_a_seconds_schedule_fires_in_real_time(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    store_path: Path,
) -> None:
    added = run_cli(
        "dispatcher", "schedule", "add", "every-second", "--cron", "* * * * * *",
        "--type", "echo", "--params", '{"value": "tick"}', "--priority", "3",
        amqp=None, store=store_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    processes.dispatcher("dispatcher", store_path, WQ_DISPATCHER_SCHEDULER_INTERVAL="0.2")
    processes.executor("exec-cron")

    wait_until(lambda: _succeeded_fires(store_path) >= 3, timeout=20, what="three fires that ran")
    shown = run_cli("dispatcher", "schedule", "show", "every-second", "--json", amqp=None,
                    store=store_path)  # fmt: skip
    assert json.loads(shown.stdout)["last_task_id"] is not None


def _succeeded_fires(store_path: Path) -> int:
    db = sqlite3.connect(store_path)
    try:
        (count,) = db.execute(
            "SELECT count(*) FROM tasks WHERE schedule_id IS NOT NULL AND state = 'succeeded'"
        ).fetchone()
        return int(count)
    finally:
        db.close()


async def test_two_replicas_publish_exactly_one_task_per_fire_time(
    amqp_settings: AmqpSettings,
    processes: Processes,
    broker: Broker,
    postgres_schema: IsolatedSchema,
) -> None:
    settings = DispatcherSettings(store=SecretStr(postgres_schema.url))
    async with open_dispatcher(amqp_settings, settings, consume_results=False) as dispatcher:
        book = ScheduleBook.of(dispatcher)
        await book.create("fast", "* * * * * *", "echo", {"value": "x"})
        for name in ("dispatcher-a", "dispatcher-b"):
            processes.dispatcher(name, postgres_schema.url, WQ_DISPATCHER_SCHEDULER_INTERVAL="0.05")

        def tasks_of_schedule() -> list[tuple[datetime, str]]:
            with postgres_schema.connect() as db:
                rows = db.execute("SELECT eta, state FROM wq_tasks").fetchall()
            return [(row[0], row[1]) for row in rows]

        wait_until(lambda: len(tasks_of_schedule()) >= 6, timeout=30, what="six fire times")
        await book.pause("fast")
        wait_until(
            lambda: all(state == "queued" for _, state in tasks_of_schedule()),
            timeout=20,
            what="every fired task to be confirmed",
        )

    fired = tasks_of_schedule()
    per_fire_time = Counter(eta for eta, _ in fired)
    assert set(per_fire_time.values()) == {1}, per_fire_time
    assert all(eta.astimezone(UTC).microsecond == 0 for eta in per_fire_time)
    # Exactly one message each on the broker too: nothing was published twice.
    assert broker.counts(amqp_settings.topology.task_queue).messages == len(fired)
    for name in ("dispatcher-a", "dispatcher-b"):
        assert '"dispatcher_serving"' in processes.log(name)


def test_schedule_commands_manage_a_schedule(store_path: Path) -> None:
    def cli(*argv: str) -> tuple[int, str, str]:
        done = run_cli("dispatcher", "schedule", *argv, amqp=None, store=store_path)
        return done.returncode, done.stdout, done.stderr

    code, out, _ = cli("add", "nightly", "--cron", "0 3 * * *", "--type", "echo",
                       "--tz", "Europe/Berlin")  # fmt: skip
    assert code == codes.OK, out
    assert "0 3 * * * in Europe/Berlin" in out
    assert cli("add", "nightly", "--cron", "0 3 * * *", "--type", "echo")[0] == codes.USAGE
    code, _, err = cli("add", "bad", "--cron", "0 3 * *", "--type", "echo")
    assert (code, "expected 5") == (codes.USAGE, err[err.index("expected") :][:10])
    assert cli("add", "tz", "--cron", "@daily", "--type", "echo", "--tz", "Nowhere/X")[0] == 2
    assert "paused" in cli("pause", "nightly")[1]
    assert "next" in cli("resume", "nightly")[1]
    code, out, _ = cli("update", "nightly", "--cron", "30 4 * * *", "--queue", "reports",
                       "--params", '{"value": 7}', "--pause")  # fmt: skip
    assert code == codes.OK, out
    assert "30 4 * * * in Europe/Berlin" in out
    assert 'echo {"value": 7} priority 0 queue reports' in out
    assert "paused" in out
    assert cli("update", "nightly", "--queue", "Bad Name")[0] == codes.USAGE
    assert cli("update", "nope", "--priority", "1")[0] == codes.NOT_FOUND
    code, out, _ = cli("run", "nightly")
    assert code == codes.OK
    run_now = run_cli("dispatcher", "status", out.strip(), amqp=None, store=store_path)
    assert "state     scheduled" in run_now.stdout  # due now: serve publishes it
    code, out, _ = cli("list", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["nightly"]
    assert cli("delete", "nightly")[0] == codes.OK
    assert cli("show", "nightly")[0] == codes.NOT_FOUND
    assert "seconds first" in run_cli("dispatcher", "schedule", "add", "--help", amqp=None,
                                      store=store_path).stdout  # fmt: skip


def test_schedule_add_checks_the_task_types_executors_published(store_path: Path) -> None:
    # No task module on the command line: the published schemas are what it knows.
    store = open_store(store_path)
    echo = TaskTypeInfo(
        name="echo",
        params_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "additionalProperties": False,
        },
    )
    store.publish_task_types([echo], published_by="exec-1", at=datetime.now(UTC))
    store.close()

    def add(name: str, task_type: str, params: str) -> subprocess.CompletedProcess[str]:
        return run_cli("dispatcher", "schedule", "add", name, "--cron", "@daily", "--type",
                       task_type, "--params", params, amqp=None, store=store_path)  # fmt: skip

    assert add("good", "echo", '{"text": "hi"}').returncode == codes.OK
    unknown = add("unknown", "no_such_type", "{}")
    assert unknown.returncode == codes.INVALID_TASK
    assert "no_such_type" in unknown.stderr
    assert add("bad-params", "echo", '{"text": 3}').returncode == codes.INVALID_TASK
