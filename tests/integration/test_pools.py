"""Two executor pools on their own queues: each task type reaches only its own pool.

Pool A runs ``tests.integration.tasks`` (the default queue), pool B ``pool_tasks`` (its type
declares the ``reports`` queue). The dispatcher loads no task module: it routes by the queues
the executors published with their task types.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import AmqpSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli

EACH = 100


@pytest.fixture
def api(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> Iterator[httpx.Client]:
    processes.dispatcher("dispatcher", tmp_path / "tasks.sqlite3")
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    with httpx.Client(base_url=api_url(processes, "dispatcher"), timeout=30) as client:
        yield client


def test_each_task_type_runs_only_in_its_own_pool_and_none_is_dead_lettered(
    api: httpx.Client,
    processes: Processes,
    amqp_settings: AmqpSettings,
    broker: Broker,
    tmp_path: Path,
) -> None:
    topology = amqp_settings.topology
    processes.executor("pool-a", concurrency=2)
    processes.executor("pool-b", concurrency=2, tasks="tests.integration.pool_tasks")
    wait_for_consumers(broker, topology.task_queue, 1)
    wait_for_consumers(broker, topology.task_queue_of("reports"), 1)

    def both_published() -> bool:
        names = {t["name"] for t in api.get("/task-types").json()["task_types"]}
        return {"echo", "render_report"} <= names

    wait_until(both_published, timeout=30, what="both pools' task types")
    batch = [{"task_type": "echo", "params": {"value": n}} for n in range(EACH)]
    batch += [{"task_type": "render_report", "params": {"title": f"r{n}"}} for n in range(EACH)]
    submitted = api.post("/tasks/batch", json={"tasks": batch})
    assert submitted.status_code == 201, submitted.text
    ids = [t["task_id"] for t in submitted.json()["tasks"]]

    store = open_store(tmp_path / "tasks.sqlite3")

    def all_final() -> bool:
        return all(r.state.is_final for r in store.get_many(ids)) and len(ids) == 2 * EACH

    wait_until(all_final, timeout=60, what="every outcome")
    records = store.get_many(ids)
    store.close()

    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    by_type = {(r.task_type, r.executor, r.queue) for r in records}
    assert by_type == {("echo", "pool-a", "default"), ("render_report", "pool-b", "reports")}
    assert broker.counts(topology.task_dead_queue).messages == 0
    listed = run_cli(
        "dispatcher", "executors", "--json", amqp=None, store=tmp_path / "tasks.sqlite3"
    )
    queues = {e["executor_id"]: e["queues"] for e in json.loads(listed.stdout)}
    assert queues == {"pool-a": ["default"], "pool-b": ["reports"]}

    # Listed by queue and executor: over HTTP and with dispatcher tasks.
    page = api.get("/tasks", params={"queue": "reports", "limit": 500}).json()["tasks"]
    assert len(page) == EACH
    assert {t["task_type"] for t in page} == {"render_report"}
    on_b = run_cli(
        "dispatcher", "tasks", "--executor", "pool-b", "--state", "succeeded", "--json",
        "--limit", "500", amqp=None, store=tmp_path / "tasks.sqlite3",
    )  # fmt: skip
    assert on_b.returncode == 0, on_b.stderr
    rows = [json.loads(line) for line in on_b.stdout.splitlines()]
    assert len(rows) == EACH
    assert {(r["queue"], r["executor"]) for r in rows} == {("reports", "pool-b")}
    as_table = run_cli(
        "dispatcher", "tasks", "--queue", "reports", "--limit", "3",
        amqp=None, store=tmp_path / "tasks.sqlite3",
    )  # fmt: skip
    lines = as_table.stdout.splitlines()
    header = "task type queue state attempt submitted executor error"
    assert lines[0].split() == header.split()
    assert len(lines) == 4
    assert all(" render_report " in line and " reports " in line for line in lines[1:])


def test_a_submission_may_name_another_queue(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    topology = amqp_settings.topology
    processes.executor("urgent", WQ_EXECUTOR_QUEUES="urgent")
    wait_for_consumers(broker, topology.task_queue_of("urgent"), 1)

    task_id = api.post(
        "/tasks", json={"task_type": "echo", "params": {"value": 1}, "queue": "urgent"}
    ).json()["task_id"]
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20}).json()

    assert (result["state"], result["executor"], result["queue"]) == (
        "succeeded",
        "urgent",
        "urgent",
    )
    assert api.post("/tasks", json={"task_type": "echo", "queue": "dead"}).status_code == 422
    contract = api.get("/asyncapi.json").json()  # with this deployment's names
    assert topology.task_exchange in contract["channels"]
    assert contract["asyncapi"] == "2.6.0"
    assert api.post("/tasks", json={"task_type": "echo", "queue": "A B"}).status_code == 422
