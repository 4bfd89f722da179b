"""A cluster whose nodes all stopped comes back whichever node stopped first, losing no task.

``docker-compose.cluster.yml``'s documented drill is ``kill rabbitmq-1``, later ``down`` and
``up``. The node that stopped first waits at boot for the ones that stopped after it, so the
nodes must boot together, never one waiting for another's health (the compose file no longer
chains them; tests/unit/test_compose.py checks that). Here the same happens to a cluster of our
own: node 1 is killed mid-run, nodes 2 and 3 are stopped cleanly in turn (3 stops last), then
all three are booted together, node 1 first, while the services keep reconnecting.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from common import AmqpSettings
from devbroker.cluster import LocalCluster
from dispatcher.requests import TaskRequest
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.cluster.conftest import QUORUM, finished, submit
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(420),
]

BATCH = 200
TASK = TaskRequest("sleep_ms", {"ms": 100})


def _leaders(cluster: LocalCluster, prefix: str) -> Counter[str]:
    """How many of the prefix's quorum queues each node leads."""
    listed = cluster.nodes[0].rabbitmqctl(
        "list_queues", "name", "type", "leader", "--formatter", "json"
    )
    rows = json.loads(listed.stdout)
    return Counter(
        row["leader"] for row in rows if row["name"].startswith(prefix) and row["type"] == "quorum"
    )


async def test_down_then_up_with_the_first_stopped_node_booting_first_loses_no_task(
    cluster: LocalCluster, amqp: AmqpSettings, cluster_processes: Processes, tmp_path: Path
) -> None:
    topology = amqp.topology
    store_path = tmp_path / "tasks.sqlite3"
    cluster_processes.dispatcher("dispatcher", store_path, **QUORUM)
    cluster_processes.executor("exec-a", concurrency=2, **QUORUM)
    cluster_processes.executor("exec-b", concurrency=2, **QUORUM)
    watcher = Broker(cluster.urls[0], "cluster watcher")
    wait_for_consumers(watcher, topology.task_queue, 2, timeout=60)
    wait_for_consumers(watcher, topology.results_queue, 1, timeout=60)
    watcher.close()
    # Balanced leaders (deploy/rabbitmq-cluster.conf): not every queue on one node.
    leaders = _leaders(cluster, amqp.prefix)
    assert sum(leaders.values()) >= 4, leaders
    assert len(leaders) >= 2, leaders

    ids = await submit(amqp, store_path, [TASK] * BATCH)
    store = open_store(store_path)
    wait_until(lambda: finished(store, ids) >= BATCH // 10, timeout=60, what="a tenth done")

    first, second, third = cluster.nodes
    first.kill()
    second.halt()
    third.halt()
    assert finished(store, ids) < BATCH, "the outage came too late to hit the run"
    cluster.boot_together([first, second, third], timeout=240)

    wait_until(lambda: finished(store, ids) == BATCH, timeout=150, what="every outcome")
    records = store.get_many(ids)
    store.close()
    tally = assert_exactly_one_outcome_each("down/up in the wrong order", ids, records)
    assert tally.lost == 0
    assert {record.state for record in records} == {TaskState.SUCCEEDED}
    for name in ("dispatcher", "exec-a", "exec-b"):
        assert '"broker_reconnected"' in cluster_processes.log(name), name
