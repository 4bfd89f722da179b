"""Running failed, dead and cancelled tasks again by hand, over HTTP and from the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common import AmqpSettings
from common import exit_codes as codes
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli


@pytest.fixture
def api(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> Iterator[httpx.Client]:
    processes.dispatcher(
        "dispatcher", tmp_path / "tasks.sqlite3", WQ_DISPATCHER_TASKS="tests.integration.tasks"
    )
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 1)
    with httpx.Client(base_url=api_url(processes, "dispatcher"), timeout=30) as client:
        yield client


def _final(api: httpx.Client, task_id: str) -> dict[str, object]:
    answer: dict[str, object] = api.get(f"/tasks/{task_id}/result", params={"wait": 30}).json()
    return answer


def test_a_failed_task_retried_over_http_runs_as_its_next_attempt(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    # fail has no retries: it ends failed at once, and again when retried.
    task_id = api.post("/tasks", json={"task_type": "fail", "params": {}}).json()["task_id"]
    assert _final(api, task_id)["state"] == "failed"
    running = api.post("/tasks", json={"task_type": "echo", "params": {"value": 1}}).json()
    assert _final(api, running["task_id"])["state"] == "succeeded"

    retried = api.post(f"/tasks/{task_id}/retry")
    again = _final(api, task_id)
    refused = api.post(f"/tasks/{running['task_id']}/retry")
    unknown = api.post("/tasks/00000000-0000-4000-8000-000000000000/retry")

    assert retried.status_code == 202, retried.text
    assert retried.json()["attempt"] == 2
    assert (again["state"], again["attempt"]) == ("failed", 2)  # it fails again, on purpose
    attempts = api.get(f"/tasks/{task_id}").json()["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert attempts[1]["cause"] == "retried by hand (http)"
    assert attempts[1]["caused_at"] is not None
    assert attempts[0]["cause"] is None
    assert refused.status_code == 409
    assert "succeeded" in refused.json()["detail"]
    assert unknown.status_code == 404


def test_a_cancelled_task_retried_from_the_cli_runs(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker,
    tmp_path: Path,
) -> None:  # fmt: skip
    store = tmp_path / "tasks.sqlite3"
    marker = tmp_path / "ran"
    task_id = api.post(
        "/tasks", json={"task_type": "sleep_ms", "params": {"ms": 0, "marker": str(marker)}}
    ).json()["task_id"]
    api.post(f"/tasks/{task_id}/cancel")
    processes.executor("exec-1")
    assert _final(api, task_id)["state"] == "cancelled"
    assert not marker.exists()

    dry = run_cli(
        "dispatcher", "retry", "--state", "cancelled", "--dry-run", amqp=None, store=store
    )
    unconfirmed = run_cli(
        "dispatcher", "retry", "--state", "cancelled", amqp=amqp_settings, store=store
    )
    done = run_cli(
        "dispatcher", "retry", "--state", "cancelled", "--yes", amqp=amqp_settings, store=store
    )

    assert dry.stdout.strip() == "1 task(s) would be retried"
    assert unconfirmed.returncode == codes.USAGE
    assert "add --yes" in unconfirmed.stderr
    assert done.returncode == codes.OK, done.stderr
    assert done.stdout.strip() == f"retried {task_id}"
    wait_until(marker.exists, timeout=20, what="the retried task to run")
    assert _final(api, task_id)["state"] == "succeeded"  # the cancel covered attempt 1 only
    by_id = run_cli("dispatcher", "retry", task_id, amqp=amqp_settings, store=store)
    assert by_id.returncode == codes.INVALID_TASK
    assert "succeeded: only failed, dead or cancelled tasks are retried" in by_id.stderr


def test_failed_tasks_retried_over_http_by_filter_after_a_dry_run_count(
    api: httpx.Client, processes: Processes, amqp_settings: AmqpSettings, broker: Broker
) -> None:
    processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    failed = [
        api.post("/tasks", json={"task_type": "fail", "params": {}}).json()["task_id"]
        for _ in range(3)
    ]
    done = api.post("/tasks", json={"task_type": "echo", "params": {"value": 1}}).json()
    for task_id in [*failed, done["task_id"]]:
        _final(api, task_id)
    by_type = {"task_type": "fail"}

    dry = api.post("/tasks/retry", json={"filter": by_type, "dry_run": True})
    first = api.post("/tasks/retry", json={"filter": by_type, "limit": 2})
    second = api.post("/tasks/retry", json={"filter": {"state": ["failed"], **by_type}})
    wrong_state = api.post("/tasks/retry", json={"filter": {"state": ["succeeded"]}})
    both = api.post("/tasks/retry", json={"filter": {}, "task_ids": [done["task_id"]]})
    unknown_field = api.post("/tasks/retry", json={"filter": {"colour": "red"}})

    assert dry.status_code == 200, dry.text
    assert dry.json() == {"retried": [], "refused": {}, "matched": 3, "more": False}
    assert first.json()["matched"] == 3
    assert len(first.json()["retried"]) == 2
    assert first.json()["more"] is True
    # Attempt 2 of the first two may still be running (not failed): at least the third is left.
    left = second.json()
    assert failed[0] in left["retried"]  # newest first: the oldest was left by the first call
    assert set(first.json()["retried"]) | set(left["retried"]) == set(failed)
    for status in (wrong_state, both, unknown_field):
        assert status.status_code == 422, status.text
    assert "only failed, dead or cancelled" in wrong_state.text
    for task_id in failed:
        attempts = api.get(f"/tasks/{task_id}").json()["attempts"]
        assert attempts[1]["cause"] == "retried by hand (http)"
    assert api.get(f"/tasks/{done['task_id']}").json()["attempt"] == 1
