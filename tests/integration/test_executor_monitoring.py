"""Executor heartbeats, the registry in the dispatcher, published schemas and metrics.

Real executor and dispatcher processes on the real broker; heartbeats are read straight from
the ``wq.executors`` queue, metrics scraped over HTTP.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pika

from common import AmqpSettings, ExecutorEvent, Heartbeat, decode_heartbeat
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli


def _drain_heartbeats(broker: Broker, queue: str) -> list[Heartbeat]:
    beats = []
    while (got := broker.get(queue)) is not None:
        beats.append(decode_heartbeat(got[1]))
    return beats


def _log_events(processes: Processes, name: str) -> list[dict[str, Any]]:
    events = []
    for line in processes.log(name).splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == codes.OK


async def test_heartbeats_keep_coming_while_every_slot_runs_a_cpu_bound_task(
    amqp_settings: AmqpSettings,
    processes: Processes,
    broker: Broker,
    dispatcher_settings: DispatcherSettings,
) -> None:
    topology = amqp_settings.topology
    executor = processes.executor("exec-busy", concurrency=2, WQ_EXECUTOR_HEARTBEAT_INTERVAL="0.2")
    wait_for_consumers(broker, topology.task_queue, 1)
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        # spin_ms holds the GIL between switches: the hardest case for the event loop.
        ids = [await dispatcher.submit("spin_ms", {"ms": 2500}) for _ in range(2)]
        for task_id in ids:
            assert (await dispatcher.wait(task_id, timeout=30)).state.value == "succeeded"
    _stop(executor)

    beats = _drain_heartbeats(broker, topology.executors_queue)
    assert beats[0].event is ExecutorEvent.STARTED
    assert beats[-1].event is ExecutorEvent.STOPPED
    assert {t.name for t in beats[0].task_types} >= {"echo", "spin_ms"}
    busy = [b for b in beats if len(b.current_tasks) == 2]
    # 2.5 s of both slots busy at one heartbeat per 0.2 s: a starved loop would send ~none.
    assert len(busy) >= 6, [(b.event, len(b.current_tasks), b.sent_at) for b in beats]
    gaps = [(b.sent_at - a.sent_at).total_seconds() for a, b in itertools.pairwise(busy)]
    assert max(gaps) < 1.0
    assert {str(t.task_id) for t in busy[0].current_tasks} == {str(i) for i in ids}
    last = beats[-1]
    assert (last.executor, last.slots, last.processed, last.failed) == ("exec-busy", 2, 2, 0)
    assert last.rss_bytes is not None
    assert last.rss_bytes > 10 * 2**20
    assert last.cpu_percent is not None


def test_dispatcher_serve_lists_executors_and_validates_against_their_schemas(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    topology = amqp_settings.topology
    processes.dispatcher("serve", store)
    wait_for_consumers(broker, topology.executors_queue, 1)
    executor = processes.executor("exec-listed", WQ_EXECUTOR_HEARTBEAT_INTERVAL="0.5")

    def listed() -> list[dict[str, Any]]:
        shown = run_cli("dispatcher", "executors", "--json", amqp=None, store=store)
        assert shown.returncode == codes.OK, shown.stderr
        return list(json.loads(shown.stdout))

    wait_until(lambda: any(e["state"] == "running" for e in listed()), timeout=20, what="listed")
    (row,) = listed()
    assert (row["executor_id"], row["slots"]) == ("exec-listed", 1)
    assert "echo" in row["task_types"]
    text = run_cli("dispatcher", "executors", amqp=None, store=store)
    assert "exec-listed  running" in text.stdout

    types = run_cli("dispatcher", "task-types", "--json", amqp=None, store=store)
    by_name = {t["name"]: t for t in json.loads(types.stdout)}
    assert by_name["sleep_ms"]["params_schema"]["required"] == ["ms"]
    assert by_name["fail"]["options"]["max_retries"] == 0
    assert by_name["echo"]["description"] == "Return the value unchanged."

    # No WQ_DISPATCHER_TASKS: submit checks the published schemas.
    unknown = run_cli("dispatcher", "submit", "nope", amqp=amqp_settings, store=store)
    assert unknown.returncode == codes.INVALID_TASK
    assert "unknown task type" in unknown.stderr
    invalid = run_cli(
        "dispatcher", "submit", "sleep_ms", "--params", '{"ms": "soon"}',
        amqp=amqp_settings, store=store,
    )  # fmt: skip
    assert invalid.returncode == codes.INVALID_TASK
    assert "ms: 'soon' is not of type 'integer'" in invalid.stderr
    valid = run_cli(
        "dispatcher", "submit", "sleep_ms", "--params", '{"ms": 1}', "--wait",
        amqp=amqp_settings, store=store,
    )  # fmt: skip
    assert valid.returncode == codes.OK, valid.stderr

    _stop(executor)
    wait_until(lambda: listed()[0]["state"] == "stopped", timeout=20, what="stopped")
    assert listed()[0]["processed"] == 1


def test_connections_and_consumers_are_named_after_the_services(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    topology = amqp_settings.topology
    serve = processes.dispatcher("serve-named", tmp_path / "tasks.sqlite3")
    processes.executor("exec-named")
    wait_for_consumers(broker, topology.task_queue, 1)
    wait_for_consumers(broker, topology.executors_queue, 1)

    listed = "\n".join(_rabbitmqctl("list_connections", "client_properties"))
    connections = set(re.findall(r'"connection_name","([^"]*)"', listed))
    prefix = amqp_settings.prefix
    names = {f"{prefix} executor exec-named consume", f"{prefix} executor exec-named publish"}
    assert names <= connections
    assert any(n.startswith(f"{prefix} dispatcher ") and n.endswith(f".{serve.pid} results")
               for n in connections)  # fmt: skip
    consumers = _rabbitmqctl("list_consumers", "queue_name", "consumer_tag")
    assert f"{topology.task_queue}\twq.executor.exec-named" in consumers
    assert any(c.startswith(f"{topology.results_queue}\twq.dispatcher.") for c in consumers)
    assert any(
        c.startswith(f"{topology.executors_queue}\twq.dispatcher.") and c.endswith(".executors")
        for c in consumers
    )


def test_executor_serves_prometheus_metrics_after_running_tasks(
    amqp_settings: AmqpSettings,
    processes: Processes,
    broker: Broker,
) -> None:
    topology = amqp_settings.topology
    processes.executor("exec-metrics", WQ_EXECUTOR_METRICS_PORT="0")
    wait_for_consumers(broker, topology.task_queue, 1)
    events = _log_events(processes, "exec-metrics")
    port = next(e["port"] for e in events if e["event"] == "metrics_serving")
    for body in (b'{"value": 1}', b'{"value": 2}'):
        _publish_task(broker, amqp_settings, "echo", body)
    _publish_task(broker, amqp_settings, "fail", b"{}")
    wait_until(
        lambda: broker.counts(topology.results_queue).messages == 3, timeout=20, what="results"
    )

    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert scraped.status_code == 200
    text = scraped.text
    assert 'wq_executor_tasks_total{outcome="succeeded",task_type="echo"} 2.0' in text
    assert 'wq_executor_tasks_total{outcome="failed",task_type="fail"} 1.0' in text
    assert 'wq_executor_task_duration_seconds_count{task_type="echo"} 2.0' in text
    assert "wq_executor_tasks_in_flight 0.0" in text
    assert "wq_executor_slots 1.0" in text


def _publish_task(broker: Broker, amqp: AmqpSettings, task_type: str, params: bytes) -> None:
    task_id = str(uuid.uuid4())
    body = (
        b'{"version": 1, "task_id": "' + task_id.encode() + b'", "task_type": "'
        + task_type.encode() + b'", "params": ' + params
        + b', "submitted_at": "2026-01-01T00:00:00Z"}'
    )  # fmt: skip
    properties = pika.BasicProperties(
        message_id=task_id, reply_to=amqp.topology.results_queue, delivery_mode=2
    )
    broker.publish(amqp.topology.task_exchange, "task", body, properties)


def _rabbitmqctl(*argv: str) -> set[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", *argv],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}
