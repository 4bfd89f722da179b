"""The pair on quorum queues across a cluster of our own survives ``kill -9`` of the leader."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import AmqpSettings
from devbroker.cluster import LocalCluster
from devbroker.node import SHARED_NODE
from dispatcher.requests import TaskRequest
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.cluster.conftest import QUORUM, declare_on, finished, submit
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until

# Booting three nodes one after the other takes most of the time (about 20 s each on 2 cores).
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(300),
]

BATCH = 300
# 300 tasks of 100 ms on 4 slots take about 8 s: long enough for the kill to land mid-run.
TASK = TaskRequest("sleep_ms", {"ms": 100})


async def test_kill_9_of_the_task_queue_leader_mid_run_loses_no_task(
    cluster: LocalCluster, amqp: AmqpSettings, cluster_processes: Processes, tmp_path: Path
) -> None:
    topology = amqp.topology
    await declare_on(cluster.urls[0], amqp)
    leader = cluster.queue_leader(topology.task_queue)
    # Every service connects to the leader's node first, so that the kill cuts every service's
    # connection as well as moving the leader: each must fail over to another node.
    first = [
        url for node, url in zip(cluster.nodes, cluster.urls, strict=True) if node.node == leader
    ]
    others = [url for url in cluster.urls if url not in first]
    on_leader = {"WQ_AMQP_URL": ",".join(first + others), "WQ_AMQP_URL_ORDER": "listed", **QUORUM}
    store_path = tmp_path / "tasks.sqlite3"
    cluster_processes.dispatcher("dispatcher", store_path, **on_leader)
    cluster_processes.executor("exec-a", concurrency=2, **on_leader)
    cluster_processes.executor("exec-b", concurrency=2, **on_leader)
    watcher = Broker(cluster.urls[0], "cluster watcher")
    wait_for_consumers(watcher, topology.task_queue, 2, timeout=60)
    wait_for_consumers(watcher, topology.results_queue, 1, timeout=60)
    watcher.close()
    assert SHARED_NODE not in cluster.running_members()

    ids = await submit(amqp, store_path, [TASK] * BATCH)
    store = open_store(store_path)
    wait_until(lambda: finished(store, ids) >= BATCH // 10, timeout=60, what="a tenth done")

    cluster.node(leader).kill()

    assert finished(store, ids) < BATCH, "the kill came too late to hit the run"
    wait_until(lambda: finished(store, ids) == BATCH, timeout=120, what="every outcome")
    records = store.get_many(ids)
    store.close()
    tally = assert_exactly_one_outcome_each("kill -9 of the quorum leader", ids, records)
    assert tally.lost == 0
    assert {record.state for record in records} == {TaskState.SUCCEEDED}
    assert cluster.queue_leader(topology.task_queue) != leader
    for name in ("dispatcher", "exec-a", "exec-b"):
        log = cluster_processes.log(name)
        assert '"broker_connection_lost"' in log, name
        assert '"broker_reconnected"' in log, name
