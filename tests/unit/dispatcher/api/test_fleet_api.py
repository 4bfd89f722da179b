"""/executors and /task-types in process, over heartbeats recorded in a real SQLite store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from common import ExecutorEvent, Heartbeat, RunningTask, TaskRegistry, TaskTypeInfo
from dispatcher.service import Dispatcher
from tests.clock import T0

published = TaskRegistry()


@published.task("resize")
def resize(width: int) -> None:
    """Resize an image.

    Details that stay out of the summary.
    """


def _heartbeat(executor: str, ago_s: float, **changes: Any) -> Heartbeat:
    fields: dict[str, Any] = {
        "event": ExecutorEvent.HEARTBEAT,
        "executor": executor,
        "host": "node-1",
        "pid": 4242,
        "slots": 4,
        "started_at": T0 - timedelta(hours=1),
        "sent_at": T0 - timedelta(seconds=ago_s),
        "task_types": [published.get("resize").describe()],
    }
    return Heartbeat(**{**fields, **changes})


@pytest.fixture
async def fleet(dispatcher: Dispatcher) -> Dispatcher:
    running = RunningTask(task_id=uuid4(), task_type="resize", started_at=T0)
    for heartbeat in (
        _heartbeat(
            "busy",
            1,
            current_tasks=[running],
            processed=7,
            failed=2,
            cpu_percent=55.5,
            rss_bytes=30 * 2**20,
        ),
        _heartbeat("silent", 120),
        _heartbeat("gone", 5, event=ExecutorEvent.STOPPED),
    ):
        await dispatcher.fleet.record_heartbeat(heartbeat)
    return dispatcher


async def test_executors_are_listed_with_state_load_and_running_tasks(
    client: httpx.AsyncClient, fleet: Dispatcher
) -> None:
    response = await client.get("/executors")

    assert response.status_code == 200
    executors = {e["executor_id"]: e for e in response.json()["executors"]}
    assert {k: e["state"] for k, e in executors.items()} == {
        "busy": "running",
        "silent": "lost",
        "gone": "stopped",
    }
    busy = executors["busy"]
    assert (busy["host"], busy["pid"], busy["slots"]) == ("node-1", 4242, 4)
    assert (busy["processed"], busy["failed"]) == (7, 2)
    assert (busy["cpu_percent"], busy["rss_bytes"]) == (55.5, 30 * 2**20)
    assert [t["task_type"] for t in busy["current_tasks"]] == ["resize"]
    assert busy["last_seen_at"] is not None


async def test_executors_filter_by_state(client: httpx.AsyncClient, fleet: Dispatcher) -> None:
    lost = await client.get("/executors", params={"state": "lost"})
    either = await client.get("/executors", params=[("state", "lost"), ("state", "stopped")])
    bad = await client.get("/executors", params={"state": "sleeping"})

    assert [e["executor_id"] for e in lost.json()["executors"]] == ["silent"]
    assert {e["executor_id"] for e in either.json()["executors"]} == {"silent", "gone"}
    assert bad.status_code == 422


async def test_without_heartbeats_no_executors(client: httpx.AsyncClient) -> None:
    assert (await client.get("/executors")).json() == {"executors": []}


async def test_task_types_come_from_the_task_module_and_the_executors(
    client: httpx.AsyncClient, fleet: Dispatcher
) -> None:
    types = (await client.get("/task-types")).json()["task_types"]

    assert [(t["name"], t["source"]) for t in types] == [
        ("resize", "executor"),
        ("word_count", "dispatcher"),
    ]
    resize_type, word_count = types
    assert resize_type["published_by"] == "busy"  # the first, still live: kept
    assert resize_type["description"] == "Resize an image."
    assert resize_type["params_schema"]["required"] == ["width"]
    assert resize_type["options"]["max_retries"] == 3
    assert resize_type["updated_at"] is not None
    assert word_count["description"] == "Count the words of a text."
    assert word_count["params_schema"]["required"] == ["text"]
    assert word_count["published_by"] is None
    assert "max_retries" in word_count["options"]
    TaskTypeInfo.model_validate(resize_type)  # the wire shape producers already know


async def test_openapi_describes_executors(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    for name in ("state", "last_seen_at", "current_tasks", "cpu_percent", "rss_bytes"):
        assert schemas["ExecutorView"]["properties"][name]["description"], name
