"""The HTTP API of a running ``dispatcher serve``, through a real client and the real broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import AmqpSettings
from common import exit_codes as codes
from tests.conftest import REPO
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers

TOKEN = "integration-token-5f1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> Iterator[httpx.Client]:
    """A client (with the token) of a dispatcher that loads the test task module."""
    processes.dispatcher(
        "dispatcher",
        tmp_path / "tasks.sqlite3",
        WQ_DISPATCHER_HTTP_TOKEN=TOKEN,
        WQ_DISPATCHER_TASKS="tests.integration.tasks",
    )
    url = api_url(processes, "dispatcher")
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        yield client


def test_a_task_submitted_over_http_runs_and_its_result_is_served(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)

    submitted = api.post("/tasks", json={"task_type": "echo", "params": {"value": [1, "two"]}})
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.json()["task_id"]
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20})

    assert result.status_code == 200
    assert result.json()["state"] == "succeeded"
    assert result.json()["result"] == [1, "two"]
    record = api.get(f"/tasks/{task_id}").json()
    assert record["executor"] == "exec-1"
    assert record["attempt"] == 1
    assert record["finished_at"] is not None
    listed = api.get("/tasks", params={"state": "succeeded", "task_type": "echo"}).json()
    assert [t["task_id"] for t in listed["tasks"]] == [task_id]


def test_a_failed_task_serves_its_error(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)

    task_id = api.post("/tasks", json={"task_type": "fail", "params": {}}).json()["task_id"]
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20})

    assert result.status_code == 200
    assert result.json()["state"] == "failed"
    assert result.json()["error"]["message"] == "boom"


def test_without_an_executor_the_wait_ends_in_202_and_the_queue_shows_the_task(
    api: httpx.Client, amqp_settings: AmqpSettings
) -> None:
    batch = [{"task_type": "echo", "params": {"value": n}} for n in range(5)]
    submitted = api.post("/tasks/batch", json={"tasks": batch})
    assert submitted.status_code == 201
    first = submitted.json()["tasks"][0]["task_id"]

    pending = api.get(f"/tasks/{first}/result", params={"wait": 0.3})
    queues = {q["name"]: q for q in api.get("/queues").json()["queues"]}

    assert pending.status_code == 202
    assert pending.json()["state"] == "queued"
    assert queues[amqp_settings.topology.task_queue]["messages"] == 5
    assert queues[amqp_settings.topology.results_queue]["consumers"] == 1


def test_pages_list_a_batch_once_each_newest_first(api: httpx.Client) -> None:
    batch = [{"task_type": "echo", "params": {"value": n}} for n in range(12)]
    ids = [t["task_id"] for t in api.post("/tasks/batch", json={"tasks": batch}).json()["tasks"]]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 5, "task_type": "echo"}
    for _ in range(10):
        page = api.get("/tasks", params=params).json()
        seen.extend(t["task_id"] for t in page["tasks"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    submitted_at = [api.get(f"/tasks/{i}").json()["submitted_at"] for i in seen]
    assert submitted_at == sorted(submitted_at, reverse=True)


def test_unknown_types_and_invalid_params_are_refused_before_publishing(
    api: httpx.Client, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    unknown = api.post("/tasks", json={"task_type": "no_such_task"})
    invalid = api.post("/tasks", json={"task_type": "sleep_ms", "params": {"ms": "long"}})

    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["type"] == "unknown_task_type"
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "params", "ms"]
    assert broker.counts(amqp_settings.topology.task_queue).messages == 0
    assert api.get("/tasks").json()["tasks"] == []


def test_the_token_guards_everything_but_liveness(api: httpx.Client) -> None:
    wrong = {"Authorization": "Bearer not-the-token"}
    with httpx.Client(base_url=api.base_url, timeout=10) as bare:
        assert bare.get("/health/live").status_code == 200
        for path in ("/tasks", "/queues", "/task-types", "/health/ready", "/openapi.json"):
            assert bare.get(path).status_code == 401, path
            assert bare.get(path, headers=wrong).status_code == 401, path
            assert api.get(path).status_code == 200, path
        refused = bare.post("/tasks", json={"task_type": "echo"})
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")


def test_health_task_types_and_docs(api: httpx.Client, processes: Processes) -> None:
    ready = api.get("/health/ready")
    types = {t["name"]: t for t in api.get("/task-types").json()["task_types"]}
    paths = api.get("/openapi.json").json()["paths"]

    assert ready.json() == {"ready": True, "broker": True, "results": True, "store": True}
    assert types["sleep_ms"]["params_schema"]["required"] == ["ms"]
    assert "/tasks/{task_id}/result" in paths
    log = processes.log("dispatcher")
    assert '"http_request"' in log
    assert TOKEN not in log


def test_two_dispatchers_serve_side_by_side_on_free_ports(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    processes.dispatcher("d1", tmp_path / "one.sqlite3")
    processes.dispatcher("d2", tmp_path / "two.sqlite3")
    urls = {api_url(processes, "d1"), api_url(processes, "d2")}

    assert len(urls) == 2
    for url in urls:
        assert httpx.get(f"{url}/health/live", timeout=10).status_code == 200


def test_serving_beyond_loopback_without_a_token_exits_2(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "WQ_DISPATCHER_STORE": str(tmp_path / "tasks.sqlite3"),
        "WQ_DISPATCHER_HTTP_HOST": "0.0.0.0",
        "WQ_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",  # never reached
    }
    refused = subprocess.run(
        [sys.executable, "-m", "dispatcher", "serve"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert refused.returncode == codes.USAGE
    assert "WQ_DISPATCHER_HTTP_TOKEN" in refused.stderr
