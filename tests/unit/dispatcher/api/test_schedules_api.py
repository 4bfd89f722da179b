"""/schedules in process: create, read, pause, resume, delete, and every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from common import ExecutorEvent, Heartbeat
from dispatcher.api.app import create_app
from dispatcher.service import Dispatcher
from dispatcher.store.threaded import ThreadedTaskStore
from tests.clock import T0, Clock
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import (
    FakeBroker,
    FakePublisher,
    client_of,
    registry,
)

NIGHTLY = {
    "name": "nightly",
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "task_type": "word_count",
    "params": {"text": "a b"},
    "priority": 4,
}


async def test_a_created_schedule_is_201_listed_and_shown(client: httpx.AsyncClient) -> None:
    created = await client.post("/schedules", json=NIGHTLY)

    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in NIGHTLY} == NIGHTLY
    assert body["paused"] is False
    # 03:00 in Berlin (UTC+1 in March) after T0 (05:06 UTC on March 4th).
    assert datetime.fromisoformat(body["next_fire_at"]).isoformat() == "2026-03-05T02:00:00+00:00"
    listed = (await client.get("/schedules")).json()["schedules"]
    assert [s["name"] for s in listed] == ["nightly"]
    shown = await client.get("/schedules/nightly")
    assert shown.json() == body


async def test_pause_resume_and_delete(client: httpx.AsyncClient) -> None:
    await client.post("/schedules", json=NIGHTLY)

    paused = await client.post("/schedules/nightly/pause")
    resumed = await client.post("/schedules/nightly/resume")
    deleted = await client.delete("/schedules/nightly")

    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get("/schedules")).json() == {"schedules": []}


async def test_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    await client.post("/schedules", json=NIGHTLY)

    again = await client.post("/schedules", json={**NIGHTLY, "cron": "@hourly"})

    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


@pytest.mark.parametrize(
    ("request_", "path"), [("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")]
)
async def test_an_unknown_name_is_404(client: httpx.AsyncClient, request_: str, path: str) -> None:
    response = await client.request(request_, f"/schedules/nope{path}")

    assert response.status_code == 404
    assert "no schedule named 'nope'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("changes", "loc", "kind"),
    [
        ({"cron": "0 3 * *"}, ["body", "cron"], "invalid_schedule"),
        ({"cron": "@sometimes"}, ["body", "cron"], "invalid_schedule"),
        ({"timezone": "Nowhere/Special"}, ["body", "timezone"], "invalid_schedule"),
        ({"name": "has space"}, ["body", "name"], "invalid_schedule"),
        ({"task_type": "nope"}, ["body", "task_type"], "unknown_task_type"),
        ({"params": {"text": 1}}, ["body", "params", "text"], "string_type"),
        ({"priority": 256}, ["body", "priority"], "less_than_equal"),
        ({"every": "day"}, ["body", "every"], "extra_forbidden"),
    ],
)
async def test_bad_schedules_are_422_and_not_recorded(
    client: httpx.AsyncClient, changes: dict[str, Any], loc: list[Any], kind: str
) -> None:
    response = await client.post("/schedules", json={**NIGHTLY, **changes})

    assert response.status_code == 422
    assert [loc, kind] in [[e["loc"], e["type"]] for e in response.json()["detail"]]
    assert (await client.get("/schedules")).json() == {"schedules": []}


@pytest.fixture
async def without_task_module(
    store: ThreadedTaskStore, clock: Clock, broker: FakeBroker
) -> AsyncIterator[tuple[httpx.AsyncClient, Dispatcher]]:
    dispatcher = Dispatcher(publisher=FakePublisher(), store=store, clock=clock)
    async with client_of(create_app(context_of(dispatcher, broker))) as http:
        yield http, dispatcher


async def test_without_a_task_module_schedules_are_checked_against_published_types(
    without_task_module: tuple[httpx.AsyncClient, Dispatcher],
) -> None:
    client, dispatcher = without_task_module
    await dispatcher.fleet.record_heartbeat(
        Heartbeat(
            event=ExecutorEvent.STARTED,
            executor="e1",
            host="h",
            pid=1,
            slots=1,
            started_at=T0,
            sent_at=T0,
            task_types=[registry.get("word_count").describe()],
        )
    )

    unknown = await client.post("/schedules", json={**NIGHTLY, "task_type": "nope"})
    invalid = await client.post("/schedules", json={**NIGHTLY, "params": {}})
    good = await client.post("/schedules", json=NIGHTLY)

    assert unknown.status_code == invalid.status_code == 422
    assert unknown.json()["detail"][0]["type"] == "unknown_task_type"
    assert invalid.json()["detail"][0]["loc"][:2] == ["body", "params"]
    assert good.status_code == 201
