"""Retention on a running ``dispatcher serve``, and ``dispatcher prune`` by hand."""

from __future__ import annotations

from pathlib import Path

import httpx

from common import AmqpSettings
from dispatcher.store.backends import open_store
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli


def test_serve_prunes_finished_tasks_once_they_are_older_than_the_retention(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    processes.dispatcher(
        "dispatcher",
        store_path,
        WQ_DISPATCHER_RETENTION="2s",
        WQ_DISPATCHER_RETENTION_INTERVAL="0.2",
    )
    processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    with httpx.Client(base_url=api_url(processes, "dispatcher"), timeout=30) as api:
        finished = api.post("/tasks", json={"task_type": "echo", "params": {"value": 1}}).json()
        assert (
            api.get(f"/tasks/{finished['task_id']}/result", params={"wait": 20}).json()["state"]
            == "succeeded"
        )
        waiting = api.post(
            "/tasks", json={"task_type": "echo", "params": {"value": 2}, "countdown": 3600}
        ).json()
        store = open_store(store_path)
        try:
            wait_until(
                lambda: store.get_many([finished["task_id"]]) == [],
                timeout=20,
                what="the finished task to be pruned",
            )
            assert store.attempts(finished["task_id"]) == []
            assert [r.task_id for r in store.get_many([waiting["task_id"]])]  # not finished
        finally:
            store.close()
        metrics = api.get("/metrics").text
    assert 'wq_pruned_total{kind="tasks"} 1.0' in metrics
    assert '"retention_pruned"' in processes.log("dispatcher")


def test_prune_by_hand_counts_first_then_deletes(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    store = tmp_path / "tasks.sqlite3"
    processes.executor("exec-cli")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    for value in ("a", "b"):
        submitted = run_cli(
            "dispatcher", "submit", "echo", "--params", f'{{"value": "{value}"}}', "--wait",
            amqp=amqp_settings, store=store,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr

    dry = run_cli("dispatcher", "prune", "--older-than", "0s", "--dry-run", amqp=None, store=store)
    kept = run_cli("dispatcher", "prune", "--older-than", "1d", amqp=None, store=store)
    failed_only = run_cli(
        "dispatcher", "prune", "--older-than", "0s", "--state", "failed", amqp=None, store=store
    )
    done = run_cli("dispatcher", "prune", "--older-than", "0s", amqp=None, store=store)
    bad = run_cli("dispatcher", "prune", "--older-than", "soon", amqp=None, store=store)

    assert dry.stdout.strip() == "2 task(s) would be pruned"
    assert kept.stdout.strip() == "0 task(s) to prune"
    assert failed_only.stdout.strip() == "0 task(s) to prune"
    assert done.stdout.strip() == "pruned 2 task(s)"
    assert done.stderr == ""  # no progress bar off a terminal
    assert bad.returncode == 2
    assert "a duration such as 7d" in bad.stderr
