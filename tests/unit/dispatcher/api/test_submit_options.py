"""Submitting over HTTP with a priority, an eta or a countdown, and what the docs say of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.clock import T0
from tests.unit.dispatcher.fakes import FakePublisher

TEXT = {"task_type": "word_count", "params": {"text": "a b"}}


async def test_the_priority_goes_on_the_published_task(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post("/tasks", json={**TEXT, "priority": 9})

    assert response.status_code == 201
    (published,) = publisher.published
    assert published.priority == 9
    assert (await client.get(f"/tasks/{published.task_id}")).json()["priority"] == 9


@pytest.mark.parametrize(
    "delay",
    [{"countdown": 60}, {"eta": (T0 + timedelta(hours=1)).isoformat()}],
    ids=["countdown", "eta"],
)
async def test_a_delayed_task_answers_201_scheduled_and_is_not_published(
    client: httpx.AsyncClient, publisher: FakePublisher, delay: dict[str, Any]
) -> None:
    response = await client.post("/tasks", json={**TEXT, **delay})

    assert response.status_code == 201
    assert response.json()["state"] == "scheduled"
    assert publisher.published == []
    record = (await client.get(f"/tasks/{response.json()['task_id']}")).json()
    assert record["state"] == "scheduled"
    assert record["eta"] is not None


async def test_an_eta_in_the_past_publishes_at_once(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    past = (T0 - timedelta(days=1)).isoformat()

    response = await client.post("/tasks", json={**TEXT, "eta": past})

    assert (response.status_code, response.json()["state"]) == (201, "queued")
    assert len(publisher.published) == 1


async def test_a_batch_mixes_delayed_and_immediate_tasks_in_request_order(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    tasks = [TEXT, {**TEXT, "countdown": 30}, {**TEXT, "priority": 3}]

    response = await client.post("/tasks/batch", json={"tasks": tasks})

    assert response.status_code == 201
    assert [t["state"] for t in response.json()["tasks"]] == ["queued", "scheduled", "queued"]
    assert [t.priority for t in publisher.published] == [0, 3]


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"eta": T0.isoformat(), "countdown": 5}, ["body"]),
        ({"eta": "2026-03-04T05:06:07"}, ["body", "eta"]),  # no time zone
        ({"countdown": -1}, ["body", "countdown"]),
        ({"priority": 256}, ["body", "priority"]),
        ({"priority": -1}, ["body", "priority"]),
    ],
)
async def test_bad_delays_and_priorities_are_422(
    client: httpx.AsyncClient, publisher: FakePublisher, extra: dict[str, Any], loc: list[Any]
) -> None:
    single = await client.post("/tasks", json={**TEXT, **extra})
    batch = await client.post("/tasks/batch", json={"tasks": [TEXT, {**TEXT, **extra}]})

    assert single.status_code == batch.status_code == 422
    assert loc in [error["loc"] for error in single.json()["detail"]]
    batch_loc = ["body", "tasks", 1, *loc[1:]]
    assert batch_loc in [error["loc"] for error in batch.json()["detail"]]
    assert publisher.published == []


async def test_openapi_describes_the_submit_options_and_the_task_fields(
    client: httpx.AsyncClient,
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]

    submission = schemas["TaskSubmission"]["properties"]
    for name in ("priority", "eta", "countdown"):
        assert submission[name]["description"], name
    task = schemas["TaskView"]["properties"]
    for name in ("priority", "eta", "progress", "progress_note", "cancel_requested_at"):
        assert task[name]["description"], name
