"""Submitting over HTTP with a priority, an eta or a countdown, and what the docs say of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from dispatcher.api.app import create_app
from dispatcher.service import Dispatcher
from dispatcher.store.threaded import ThreadedTaskStore
from tests.clock import T0
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import FakeBroker, FakePublisher, client_of, registry

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


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('"countdown": 1e300', ["countdown"]),
        ('"countdown": 1e12', ["countdown"]),
        ('"countdown": Infinity', ["countdown"]),
        ('"countdown": NaN', ["countdown"]),
        ('"priority": 1e400', ["priority"]),
        ('"priority": 256', ["priority"]),
        ('"eta": "9999-12-31T23:00:00-05:00"', ["eta"]),
        ('"eta": "0001-01-01T00:00:00+05:00"', ["eta"]),
        ('"idempotency_key": ""', ["idempotency_key"]),
    ],
)
async def test_values_at_the_edges_of_their_types_are_422_never_500(
    client: httpx.AsyncClient, publisher: FakePublisher, raw: str, loc: list[str]
) -> None:
    # Bodies a strict JSON encoder would not write (NaN, 1e400): the 422 must still encode.
    task = '{"task_type": "word_count", "params": {"text": "a"}, ' + raw + "}"
    headers = {"Content-Type": "application/json"}
    single = await client.post("/tasks", content=task, headers=headers)
    batch = await client.post("/tasks/batch", content='{"tasks": [' + task + "]}", headers=headers)

    assert single.status_code == batch.status_code == 422
    assert ["body", *loc] in [error["loc"] for error in single.json()["detail"]]
    assert ["body", "tasks", 0, *loc] in [error["loc"] for error in batch.json()["detail"]]
    assert publisher.published == []


async def test_a_long_invalid_input_is_described_not_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json={**TEXT, "idempotency_key": "k" * 5000})

    (error,) = response.json()["detail"]
    assert response.status_code == 422
    assert error["input"] == "<str of 5002 characters>"


async def test_get_on_the_batch_endpoint_is_405_with_its_methods(client: httpx.AsyncClient) -> None:
    response = await client.get("/tasks/batch")

    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/tasks", "GET, OPTIONS, POST"),
        ("/tasks/batch", "OPTIONS, POST"),
        ("/schedules/nightly", "DELETE, GET, OPTIONS, PATCH"),
    ],
)
async def test_options_lists_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    response = await client.options(path)

    assert response.status_code == 204
    assert response.headers["allow"] == allowed


async def test_a_method_a_path_does_not_take_is_405_listing_all_it_does(
    client: httpx.AsyncClient,
) -> None:
    response = await client.delete("/tasks")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, OPTIONS, POST"


async def test_a_batch_refused_by_published_schemas_names_the_task_at_fault(
    store: ThreadedTaskStore, publisher: FakePublisher, broker: FakeBroker
) -> None:
    # No task module of its own: the dispatcher checks the executors' published schemas.
    dispatcher = Dispatcher(publisher=publisher, store=store, registry=None)
    await store.publish_task_types(
        [registry.get("word_count").describe()], published_by="e1", at=T0
    )
    bad = {"task_type": "word_count", "params": {"text": 3}}
    async with client_of(create_app(context_of(dispatcher, broker))) as client:
        batch = await client.post("/tasks/batch", json={"tasks": [TEXT, TEXT, bad]})
        single = await client.post("/tasks", json=bad)

    assert batch.status_code == single.status_code == 422
    assert [e["loc"] for e in batch.json()["detail"]] == [["body", "tasks", 2, "params", "text"]]
    assert [e["loc"] for e in single.json()["detail"]] == [["body", "params", "text"]]
    assert publisher.published == []
