"""The pair on quorum queues across a 3-node cluster of our own survives ``kill -9`` of the leader.

The cluster is ``devbroker.cluster.LocalCluster`` (what ``scripts/rabbitmq-cluster`` starts):
three nodes on loopback with their own names, ports, folders and cookie, never joined with the
shared ``rabbit@localhost``. Every service gets all three addresses in ``WQ_AMQP_URL``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import SecretStr

from common import AmqpSettings
from devbroker.cluster import LocalCluster
from devbroker.node import SHARED_NODE
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.conftest import unique_prefix
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
QUORUM = {"WQ_AMQP_QUEUE_TYPE": "quorum"}


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    """Three clustered nodes of our own, stopped and deleted whatever the test does."""
    nodes = LocalCluster(3, name_prefix="wqtestcluster")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def cluster_processes(
    cluster: LocalCluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Processes]:
    """Service processes on the cluster's quorum queues, killed at teardown."""
    amqp = AmqpSettings(
        url=SecretStr(cluster.url), prefix=unique_prefix(), queue_type="quorum", confirm_timeout=10
    )
    started = Processes(amqp, tmp_path)
    try:
        yield started
    finally:
        started.kill_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(started.dump_logs())


def _finished(store: SyncTaskStore, ids: list[UUID]) -> int:
    return sum(record.state.is_final for record in store.get_many(ids))


async def _submit(amqp: AmqpSettings, store: Path, requests: list[TaskRequest]) -> list[UUID]:
    async with open_dispatcher(
        amqp, DispatcherSettings(store=store), consume_results=False
    ) as dispatcher:
        return await dispatcher.submit_many(requests)


async def test_kill_9_of_the_task_queue_leader_mid_run_loses_no_task(
    cluster: LocalCluster, cluster_processes: Processes, tmp_path: Path
) -> None:
    amqp = AmqpSettings(
        url=SecretStr(cluster.url),
        prefix=cluster_processes.env()["WQ_AMQP_PREFIX"],
        queue_type="quorum",
        confirm_timeout=10,
    )
    topology = amqp.topology
    store_path = tmp_path / "tasks.sqlite3"
    cluster_processes.dispatcher("dispatcher", store_path, **QUORUM)
    cluster_processes.executor("exec-a", concurrency=2, **QUORUM)
    cluster_processes.executor("exec-b", concurrency=2, **QUORUM)
    watcher = Broker(cluster.urls[0], "cluster watcher")
    wait_for_consumers(watcher, topology.task_queue, 2, timeout=60)
    wait_for_consumers(watcher, topology.results_queue, 1, timeout=60)
    watcher.close()
    assert SHARED_NODE not in cluster.running_members()

    ids = await _submit(amqp, store_path, [TASK] * BATCH)
    leader = cluster.queue_leader(topology.task_queue)
    # Every service connected to the first address and declared the queue there, and RabbitMQ
    # places a new quorum queue's leader on the declaring client's node: so killing the leader
    # also cuts every service's connections, and each must fail over to another node.
    assert leader == cluster.nodes[0].node
    store = open_store(store_path)
    wait_until(lambda: _finished(store, ids) >= BATCH // 10, timeout=60, what="a tenth done")

    cluster.node(leader).kill()

    assert _finished(store, ids) < BATCH, "the kill came too late to hit the run"
    wait_until(lambda: _finished(store, ids) == BATCH, timeout=120, what="every outcome")
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
