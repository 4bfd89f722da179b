"""Cancel, executors, task types, schedules, delays and metrics over HTTP, against a running
``dispatcher serve``, real executors and the real broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common import AmqpSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli

TOKEN = "operations-token-9d2e"
FAST_HEARTBEATS = "0.5"  # seconds between heartbeats


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
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        yield client


def _executor(api: httpx.Client, name: str) -> dict[str, Any] | None:
    found = [e for e in api.get("/executors").json()["executors"] if e["executor_id"] == name]
    return found[0] if found else None


def test_a_running_task_is_listed_on_its_executor_and_cancelled_over_http(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker,
    tmp_path: Path,
) -> None:  # fmt: skip
    processes.executor("exec-http", WQ_EXECUTOR_HEARTBEAT_INTERVAL=FAST_HEARTBEATS)
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    marker = tmp_path / "started"
    params = {"marker": str(marker), "percent": 40, "timeout": 25}
    task_id = api.post("/tasks", json={"task_type": "await_cancel", "params": params}).json()[
        "task_id"
    ]

    def running_here() -> bool:
        executor = _executor(api, "exec-http")
        return executor is not None and task_id in [t["task_id"] for t in executor["current_tasks"]]

    wait_until(marker.exists, timeout=20, what="the task to start")
    wait_until(running_here, timeout=20, what="/executors to show the running task")
    wait_until(
        lambda: api.get(f"/tasks/{task_id}").json()["progress"] == 40,
        timeout=20,
        what="the task's progress",
    )
    listed = _executor(api, "exec-http")
    assert listed is not None
    assert (listed["state"], listed["slots"]) == ("running", 1)
    assert listed["pid"] > 0
    assert listed["host"]
    running = api.get("/executors", params={"state": "running"}).json()["executors"]
    assert [e["executor_id"] for e in running] == ["exec-http"]
    assert api.get("/executors", params={"state": "lost"}).json() == {"executors": []}

    cancelled = api.post(f"/tasks/{task_id}/cancel")
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20})

    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["outcome"] == "requested"
    assert result.status_code == 200
    record = result.json()
    assert record["state"] == "cancelled"
    assert record["cancel_requested_at"] is not None
    assert record["executor"] == "exec-http"
    again = api.post(f"/tasks/{task_id}/cancel")
    assert (again.status_code, again.json()["outcome"]) == (200, "already_final")


def test_task_types_list_the_module_and_what_executors_published(
    api: httpx.Client, processes: Processes
) -> None:
    processes.executor("exec-types", WQ_EXECUTOR_HEARTBEAT_INTERVAL=FAST_HEARTBEATS)

    def sources() -> set[str]:
        types = api.get("/task-types").json()["task_types"]
        return {t["source"] for t in types if t["name"] == "echo"}

    wait_until(lambda: sources() == {"dispatcher", "executor"}, timeout=20, what="both sources")
    types = api.get("/task-types").json()["task_types"]
    published = next(t for t in types if (t["name"], t["source"]) == ("echo", "executor"))
    assert published["published_by"] == "exec-types"
    assert published["description"] == "Return the value unchanged."


def test_a_schedule_created_over_http_fires_and_is_managed(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-cron")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    schedule = {"name": "every-second", "cron": "* * * * * *", "task_type": "echo",
                "params": {"value": "tick"}}  # fmt: skip

    created = api.post("/schedules", json=schedule)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["schedule_id"]
    assert api.post("/schedules", json=schedule).status_code == 409
    bad = api.post("/schedules", json={**schedule, "name": "bad", "cron": "61 * * * *"})
    assert bad.status_code == 422

    def fired() -> list[dict[str, Any]]:
        listed = api.get("/tasks", params={"task_type": "echo", "state": "succeeded"}).json()
        return [t for t in listed["tasks"] if t["schedule_id"] == schedule_id]

    wait_until(lambda: len(fired()) >= 2, timeout=20, what="two fired tasks to succeed")
    assert all(t["result"] == "tick" for t in fired())
    shown = api.get("/schedules/every-second").json()
    assert shown["last_task_id"] is not None
    assert api.post("/schedules/every-second/pause").json()["paused"] is True
    assert api.delete("/schedules/every-second").status_code == 204
    assert api.get("/schedules/every-second").status_code == 404


def test_a_schedule_is_edited_and_run_now_over_http(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-edit", WQ_EXECUTOR_QUEUES="default,nightly")
    wait_for_consumers(broker, amqp_settings.topology.task_queue_of("nightly"), 1)
    created = api.post(
        "/schedules",
        json={"name": "yearly", "cron": "@yearly", "task_type": "echo", "params": {"value": 1}},
    ).json()
    assert created["queue"] == "default"

    edited = api.patch(
        "/schedules/yearly",
        json={"cron": "0 3 * * *", "timezone": "Europe/Paris", "params": {"value": 2},
              "priority": 4, "queue": "nightly"},
    )  # fmt: skip
    paused = api.patch("/schedules/yearly", json={"paused": True}).json()
    refused = api.patch("/schedules/yearly", json={"cron": "61 * * * *"})
    unknown_field = api.patch("/schedules/yearly", json={"task_type": "fail"})
    missing = api.patch("/schedules/nope", json={"priority": 1})
    run = api.post("/schedules/yearly/run")
    assert run.status_code == 202, run.text
    result = api.get(f"/tasks/{run.json()['task_id']}/result", params={"wait": 20}).json()

    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert (body["cron"], body["timezone"], body["params"], body["priority"], body["queue"]) == (
        "0 3 * * *",
        "Europe/Paris",
        {"value": 2},
        4,
        "nightly",
    )
    assert body["next_fire_at"] != created["next_fire_at"]  # a new cron moves the next fire
    assert paused["paused"] is True
    assert paused["next_fire_at"] == body["next_fire_at"]
    assert refused.status_code == 422
    assert unknown_field.status_code == 422
    assert missing.status_code == 404
    # Run now while paused: one task, on the schedule's queue, with its params.
    assert (result["state"], result["result"], result["queue"]) == ("succeeded", 2, "nightly")
    assert result["executor"] == "exec-edit"


def test_a_delayed_task_is_scheduled_then_runs(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-later")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)

    submitted = api.post(
        "/tasks", json={"task_type": "echo", "params": {"value": 1}, "countdown": 1, "priority": 7}
    )
    task_id = submitted.json()["task_id"]
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20})

    assert (submitted.status_code, submitted.json()["state"]) == (201, "scheduled")
    assert (result.status_code, result.json()["state"]) == (200, "succeeded")
    assert result.json()["priority"] == 7
    assert result.json()["eta"] is not None


def test_a_task_that_failed_twice_shows_every_attempt_over_http_and_in_status(
    api: httpx.Client,
    processes: Processes,
    amqp_settings: AmqpSettings,
    broker: Broker,
    tmp_path: Path,
) -> None:
    processes.executor("exec-attempts")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    params = {"counter": str(tmp_path / "calls"), "failures": 2}

    task_id = api.post("/tasks", json={"task_type": "flaky", "params": params}).json()["task_id"]
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 30})
    detail = api.get(f"/tasks/{task_id}").json()
    status = run_cli(
        "dispatcher", "status", task_id, "--traceback", amqp=None, store=tmp_path / "tasks.sqlite3"
    )

    assert result.json()["state"] == "succeeded"
    attempts = detail["attempts"]
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "succeeded"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert {a["executor"] for a in attempts} == {"exec-attempts"}
    assert all(a["runs"] == 1 and a["started_at"] and a["finished_at"] for a in attempts)
    assert attempts[0]["error"]["message"] == "flaky call 1 of 2 failing"
    assert "ConnectionError" in attempts[0]["error"]["traceback"]
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    table = lines[lines.index("attempts") + 1 :]
    assert table[0].split() == ["#", "executor", "started", "took", "outcome", "error"]
    assert [row.split()[4] for row in table[1:4]] == ["retrying", "retrying", "succeeded"]
    assert "traceback of attempt 1:" in status.stdout
    assert "Traceback (most recent call last)" in status.stdout
    failed_lines = [
        line for line in processes.log("exec-attempts").splitlines() if "task_failed" in line
    ]
    assert len(failed_lines) == 2
    assert all("Traceback (most recent call last)" in line for line in failed_lines)


def test_a_delayed_task_is_rescheduled_while_it_waits(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-later")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    task_id = api.post(
        "/tasks", json={"task_type": "echo", "params": {"value": 3}, "countdown": 3600}
    ).json()["task_id"]

    later = api.patch(f"/tasks/{task_id}", json={"eta": "2099-01-01T00:00:00+00:00"})
    both = api.patch(f"/tasks/{task_id}", json={"eta": "2099-01-01T00:00:00Z", "countdown": 1})
    now = api.patch(f"/tasks/{task_id}", json={"countdown": 0})
    result = api.get(f"/tasks/{task_id}/result", params={"wait": 20}).json()
    too_late = api.patch(f"/tasks/{task_id}", json={"countdown": 60})
    unknown = api.patch("/tasks/00000000-0000-4000-8000-000000000000", json={"countdown": 1})

    assert (later.status_code, later.json()["eta"][:4]) == (200, "2099")
    assert both.status_code == 422
    assert now.status_code == 200
    assert result["state"] == "succeeded"
    assert too_late.status_code == 409
    assert "succeeded, not scheduled" in too_late.json()["detail"]
    assert unknown.status_code == 404


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_are_scraped_after_tasks_ran(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-metrics", WQ_EXECUTOR_HEARTBEAT_INTERVAL=FAST_HEARTBEATS)
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    batch = [{"task_type": "echo", "params": {"value": n}} for n in range(3)]
    ids = [t["task_id"] for t in api.post("/tasks/batch", json={"tasks": batch}).json()["tasks"]]
    for task_id in ids:
        assert api.get(f"/tasks/{task_id}/result", params={"wait": 20}).status_code == 200

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return _samples(response.text)

    # Queue depths and executor states are gauges read every 5 s.
    wait_until(
        lambda: scraped().get(("wq_executors", (("state", "running"),))) == 1,
        timeout=20,
        what="the executor gauge",
    )
    # Submissions are counted from the store, a few seconds behind (SubmissionCounter).
    wait_until(
        lambda: scraped().get(("wq_tasks_submitted_total", (("task_type", "echo"),))) == 3,
        timeout=20,
        what="the submissions counter",
    )
    samples = scraped()
    outcome = ("wq_task_outcomes_total", (("outcome", "succeeded"), ("task_type", "echo")))
    assert samples[outcome] == 3
    with httpx.Client(base_url=api.base_url, timeout=10) as bare:
        assert bare.get("/metrics").status_code == 401


def test_cli_submissions_are_counted_by_the_serving_dispatcher(
    api: httpx.Client, amqp_settings: AmqpSettings, tmp_path: Path
) -> None:
    # `dispatcher submit` runs for a second and serves no metrics: the dispatcher serve on
    # the same store counts its tasks.
    store = tmp_path / "tasks.sqlite3"  # the api fixture's dispatcher's
    for n in range(2):
        submitted = run_cli(
            "dispatcher", "submit", "echo", "--params", json.dumps({"value": n}),
            "--tasks", "tests.integration.tasks", amqp=amqp_settings, store=store,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr

    def counted() -> float | None:
        return _samples(api.get("/metrics").text).get(
            ("wq_tasks_submitted_total", (("task_type", "echo"),))
        )

    wait_until(lambda: counted() == 2, timeout=20, what="the CLI's submissions counted")
