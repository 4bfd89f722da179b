"""docs/operations.md's "one task's story" recipe, run as printed on real processes' logs.

A task submitted over HTTP must be findable by its id on both sides at the default level
(info): the dispatcher's lines about it and the executor's, which names itself.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from common import AmqpSettings
from tests.conftest import REPO
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until

STORY_MARK = "# one task's story"


def _story_recipe() -> tuple[list[str], list[str]]:
    """The documented command: the compose services it reads, and the jq invocation."""
    operations = (REPO / "docs" / "operations.md").read_text()
    (line,) = [line for line in operations.splitlines() if line.endswith(STORY_MARK)]
    command = line.removesuffix(STORY_MARK).strip()
    logs, jq = command.split(" | ", 1)
    words = shlex.split(logs)
    assert words[:3] == ["docker", "compose", "logs"], logs
    services = [word for word in words[3:] if not word.startswith("-")]
    return services, shlex.split(jq)


def _run_recipe(jq: list[str], task_id: str, logs: str) -> list[dict[str, Any]]:
    if shutil.which(jq[0]) is None:
        pytest.fail("the recipe needs jq: apt-get install jq (tests never skip)", pytrace=False)
    argv = [word.replace("<id>", task_id) for word in jq]
    done = subprocess.run(argv, input=logs, capture_output=True, text=True, timeout=30, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_recipe_reads_the_services_compose_runs() -> None:
    services, jq = _story_recipe()
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]

    assert {"dispatcher", "executor", "reports-executor"} <= set(services) <= set(compose)
    assert jq[0] == "jq"


def test_one_tasks_story_has_both_sides_for_a_task_submitted_over_http(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    # Info, as deployed: at debug the dispatcher's result_recorded would name the task anyway.
    processes.dispatcher("dispatcher", tmp_path / "tasks.sqlite3", WQ_LOG_LEVEL="info")
    processes.executor("exec-story", tasks="examples.tasks", WQ_LOG_LEVEL="info")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    url = api_url(processes, "dispatcher")
    with httpx.Client(base_url=url, timeout=30) as client:
        submitted = client.post(
            "/tasks", json={"task_type": "word_count", "params": {"text": "to be"}}
        )
        assert submitted.status_code == 201, submitted.text
        task_id = submitted.json()["task_id"]
        outcome = client.get(f"/tasks/{task_id}/result", params={"wait": 20})
        assert outcome.status_code == 200, outcome.text
        assert outcome.json()["state"] == "succeeded"
    # The dispatcher logs a request once its answer is sent: the client can be first.
    wait_until(
        lambda: f'/tasks/{task_id}/result"' in processes.log("dispatcher"),
        timeout=10,
        what="the dispatcher's line for the answered request",
    )
    # Compose interleaves the services' lines: the recipe must not depend on their order.
    logs = processes.log("exec-story") + processes.log("dispatcher")

    story = _run_recipe(_story_recipe()[1], task_id, logs)

    assert story, "the recipe found no line"
    assert {line["task_id"] for line in story} == {task_id}
    assert [line["timestamp"] for line in story] == sorted(line["timestamp"] for line in story)
    dispatcher = [line for line in story if line["logger"].startswith("dispatcher.")]
    executor = [line for line in story if line["logger"].startswith("executor.")]
    assert ("http_request", "POST", "/tasks") in {
        (line["event"], line.get("method"), line.get("path")) for line in dispatcher
    }
    assert "tasks_published" in {line["event"] for line in dispatcher}
    (succeeded,) = [line for line in executor if line["event"] == "task_succeeded"]
    assert succeeded["executor"] == "exec-story"
    assert all(line["executor"] == "exec-story" for line in executor)
    # The story reads in causal order. Not "the submission first": the dispatcher logs the
    # publish once its confirm is back, and by then the executor may have run the task. But
    # the executor logs task_succeeded before it publishes the result, so the dispatcher's
    # answer with that result always comes after it.
    (answered,) = [
        line
        for line in dispatcher
        if line["event"] == "http_request" and line.get("path", "").endswith("/result")
    ]
    assert story.index(succeeded) < story.index(answered)
