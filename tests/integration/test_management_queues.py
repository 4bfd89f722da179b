"""The dashboard's queue page with RabbitMQ's management API: unacked messages and rates.

The shared broker runs without the management plugin, so this runs a node of its own
(``devbroker.node.LocalNode`` with ``management=True``), stopped and deleted afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from common import AmqpSettings
from devbroker.node import LocalNode
from tests.conftest import unique_prefix
from tests.integration.conftest import Processes, api_url, wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def managed_node() -> Iterator[LocalNode]:
    with LocalNode(name_prefix="wqmgmt", management=True) as node:
        yield node


@pytest.fixture
def amqp_settings(managed_node: LocalNode) -> AmqpSettings:
    """The integration fixtures' settings, on the node of this module."""
    return AmqpSettings(url=SecretStr(managed_node.url), prefix=unique_prefix(), confirm_timeout=10)


def test_the_queue_page_shows_unacked_messages_and_rates_from_the_management_api(
    managed_node: LocalNode, processes: Processes, amqp_settings: AmqpSettings, tmp_path: Path
) -> None:
    management = f"http://guest:guest@127.0.0.1:{managed_node.management_port}"
    processes.dispatcher(
        "dispatcher",
        tmp_path / "tasks.sqlite3",
        WQ_DISPATCHER_TASKS="tests.integration.tasks",
        WQ_DISPATCHER_MANAGEMENT_URL=management,
    )
    url = api_url(processes, "dispatcher")
    processes.executor("exec-1")
    with httpx.Client(base_url=url, timeout=30) as api:
        for _ in range(4):  # one runs (unacked) for a minute, three wait (ready)
            answer = api.post("/tasks", json={"task_type": "sleep_ms", "params": {"ms": 60_000}})
            assert answer.status_code == 201, answer.text
        row = re.compile(
            re.escape(amqp_settings.topology.task_queue)
            + r"</code></td><td>(\d+)</td>\s*<td>(\d*)</td><td>(\d+)</td>\s*<td>([\d.]*)</td>"
        )

        def counted() -> bool:
            found = row.search(api.get("/ui/queues").text)
            return found is not None and found.groups()[:3] == ("3", "1", "1")

        # The management plugin samples every second: wait for it to catch up.
        wait_until(counted, timeout=60, what="ready 3, unacked 1, 1 consumer on the page")
        page = api.get("/ui/queues").text

    assert "Unacked" in page
    assert "Published /s" in page
    assert "did not answer" not in page
