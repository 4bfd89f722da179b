"""The dead-letter queue over HTTP: list with reasons, replay back to its queue, purge."""

from __future__ import annotations

from pathlib import Path

import httpx

from common import AmqpSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, api_url, wait_for_consumers, wait_until


def test_dead_tasks_are_listed_replayed_and_purged_over_http(
    processes: Processes, amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    topology = amqp_settings.topology
    processes.dispatcher("dispatcher", tmp_path / "tasks.sqlite3")
    processes.executor("exec-pool", WQ_EXECUTOR_QUEUES="default,reports")
    wait_for_consumers(broker, topology.task_queue_of("reports"), 1)
    with httpx.Client(base_url=api_url(processes, "dispatcher"), timeout=30) as api:
        # flaky failing more often than its 3 retries: dead once its retries are used up.
        ids = [
            api.post(
                "/tasks",
                json={
                    "task_type": "flaky",
                    "params": {"counter": str(tmp_path / f"calls-{n}"), "failures": 100},
                    "queue": "reports",
                },
            ).json()["task_id"]
            for n in range(2)
        ]
        wait_until(
            lambda: broker.counts(topology.task_dead_queue).messages == 2,
            timeout=20,
            what="two dead messages",
        )

        listed = api.get("/dead", params={"limit": 10}).json()["dead"]
        queues = {q["name"]: q for q in api.get("/queues").json()["queues"]}
        assert broker.counts(topology.task_dead_queue).messages == 2  # listing keeps them
        replayed = api.post("/dead/replay", json={"task_ids": [ids[0]]}).json()
        refused = api.post("/dead/replay", json={"task_ids": [ids[0]], "all": True})
        unconfirmed = api.post("/dead/purge", json={"confirm": False})
        wait_until(
            lambda: broker.counts(topology.task_dead_queue).messages == 2,
            timeout=20,
            what="the replayed task to die again",
        )
        one = api.post("/dead/purge", json={"confirm": True, "task_ids": [ids[1]]}).json()
        left = [d["task_id"] for d in api.get("/dead").json()["dead"]]
        purged = api.post("/dead/purge", json={"confirm": True}).json()
        record = api.get(f"/tasks/{ids[0]}").json()

    assert queues[topology.task_queue_of("reports")]["consumers"] == 1  # a named queue too
    assert {d["task_id"] for d in listed} == set(ids)
    assert {d["reason"] for d in listed} == {"retries_exhausted"}
    assert {d["original_queue"] for d in listed} == {topology.task_queue_of("reports")}
    assert replayed["replayed"] == [ids[0]]
    assert replayed["missing"] == []
    assert refused.status_code == 422
    assert unconfirmed.status_code == 422
    assert one == {"purged": 1}
    assert left == [ids[0]]
    assert purged == {"purged": 1}
    assert record["queue"] == "reports"
    assert record["attempt"] == 5  # four attempts, then the replay's
    assert record["state"] == "dead"  # which fails again, with no retries left
    causes = [a["cause"] for a in record["attempts"]]
    assert causes == [None, None, None, None, "replayed from the dead letters (http)"]
