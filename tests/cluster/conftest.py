"""A 3-node cluster of our own and service processes on its quorum queues.

The cluster is ``devbroker.cluster.LocalCluster`` (what ``scripts/rabbitmq-cluster`` starts):
three nodes on loopback with their own names, ports, folders and cookie, never joined with the
shared ``rabbit@localhost``, configured as deploy/rabbitmq-cluster.conf configures the compose
cluster (peer discovery, balanced queue leaders).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import SecretStr

from common import AmqpSettings
from common.pika_link import declare_topology, open_link
from devbroker.cluster import LocalCluster
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.protocol import SyncTaskStore
from tests.conftest import unique_prefix
from tests.integration.conftest import Processes

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
def amqp(cluster: LocalCluster) -> AmqpSettings:
    """Settings for every node of the cluster, on quorum queues under a prefix of the test's."""
    return AmqpSettings(
        url=SecretStr(cluster.url), prefix=unique_prefix(), queue_type="quorum", confirm_timeout=10
    )


@pytest.fixture
def cluster_processes(
    amqp: AmqpSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Processes]:
    """Service processes on the cluster's quorum queues, killed at teardown."""
    started = Processes(amqp, tmp_path)
    try:
        yield started
    finally:
        started.kill_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(started.dump_logs())


def finished(store: SyncTaskStore, ids: list[UUID]) -> int:
    return sum(record.state.is_final for record in store.get_many(ids))


async def submit(amqp: AmqpSettings, store: Path, requests: list[TaskRequest]) -> list[UUID]:
    async with open_dispatcher(
        amqp, DispatcherSettings(store=store), consume_results=False
    ) as dispatcher:
        return await dispatcher.submit_many(requests)


async def declare_on(url: str, amqp: AmqpSettings) -> None:
    """Declare the whole topology through the node at ``url`` (as a service would)."""
    settings = amqp.model_copy(update={"url": SecretStr(url)})
    async with open_link(settings, name="test declare") as link:
        await declare_topology(await link.channel(), amqp.topology)
