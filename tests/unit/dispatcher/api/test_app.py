"""The API in process through httpx's ASGITransport, over a fake publisher and broker."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from structlog.testing import capture_logs

from common import BrokerError
from dispatcher.amqp.queue_depths import QueueDepth
from dispatcher.api.app import create_app
from dispatcher.api.errors import ERROR_STATUS
from dispatcher.service import Dispatcher
from tests.unit.dispatcher.api.conftest import context_of
from tests.unit.dispatcher.fakes import FakeBroker, FakePublisher, succeeded

# Submitting


async def test_submit_records_publishes_and_answers_201(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/tasks", json={"task_type": "word_count", "params": {"text": "a"}}
    )

    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "queued"
    assert body["created"] is True
    assert [str(t.task_id) for t in publisher.published] == [body["task_id"]]


async def test_a_reused_idempotency_key_answers_200_with_the_first_task(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    task = {"task_type": "word_count", "params": {"text": "a"}, "idempotency_key": "k1"}
    first = await client.post("/tasks", json=task)
    again = await client.post("/tasks", json=task)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert len(publisher.published) == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "task_type"]),
        ({"task_type": "bad type!"}, ["body", "task_type"]),
        ({"task_type": "word_count", "params": []}, ["body", "params"]),
        ({"task_type": "word_count", "extra": 1}, ["body", "extra"]),
        ({"task_type": "word_count", "idempotency_key": ""}, ["body", "idempotency_key"]),
        ({"task_type": "nope"}, ["body", "task_type"]),
        ({"task_type": "word_count", "params": {"text": "a", "top": 0}}, ["body", "params", "top"]),
        ({"task_type": "word_count", "params": {}}, ["body", "params", "text"]),
    ],
)
async def test_invalid_submissions_are_422_with_pydantic_detail(
    client: httpx.AsyncClient, publisher: FakePublisher, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.post("/tasks", json=body)

    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert publisher.published == []


async def test_an_unknown_type_says_so(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json={"task_type": "nope"})

    (error,) = response.json()["detail"]
    assert error["type"] == "unknown_task_type"
    assert "nope" in error["msg"]


async def test_a_task_over_the_body_limit_is_422_and_not_recorded(
    client: httpx.AsyncClient, dispatcher: Dispatcher, publisher: FakePublisher
) -> None:
    dispatcher.max_body_bytes = 1000

    response = await client.post(
        "/tasks", json={"task_type": "word_count", "params": {"text": "a" * 1000}}
    )

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["type"], error["loc"]) == ("too_large", ["body", "params"])
    assert "over the limit of 1000 (WQ_AMQP_MAX_BODY_BYTES)" in error["msg"]
    assert publisher.published == []
    assert (await client.get("/tasks")).json()["tasks"] == []


async def test_a_batch_is_validated_whole_before_anything_is_recorded(
    client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    good = {"task_type": "word_count", "params": {"text": "a"}}
    bad = {"task_type": "word_count", "params": {"text": 1}}

    response = await client.post("/tasks/batch", json={"tasks": [good, good, bad]})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "tasks", 2, "params", "text"]
    listed = await client.get("/tasks")
    assert listed.json()["tasks"] == []


async def test_a_batch_answers_each_task_in_order(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    tasks = [{"task_type": "word_count", "params": {"text": str(n)}} for n in range(5)]

    response = await client.post("/tasks/batch", json={"tasks": tasks})

    assert response.status_code == 201
    ids = [t["task_id"] for t in response.json()["tasks"]]
    assert ids == [str(t.task_id) for t in publisher.published]


async def test_empty_and_oversized_batches_are_422(client: httpx.AsyncClient) -> None:
    many = [{"task_type": "word_count", "params": {"text": "a"}}] * 1001

    assert (await client.post("/tasks/batch", json={"tasks": []})).status_code == 422
    assert (await client.post("/tasks/batch", json={"tasks": many})).status_code == 422


async def test_an_unconfirmed_publish_is_503_naming_the_recorded_task(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.refuse = lambda task: task.params["text"] == "lost"
    tasks = [{"task_type": "word_count", "params": {"text": t}} for t in ("ok", "lost")]

    single = await client.post("/tasks", json=tasks[1])
    batch = await client.post("/tasks/batch", json={"tasks": tasks})

    assert single.status_code == 503
    (recorded,) = single.json()["tasks"]
    assert recorded["state"] == "submitted"
    assert (await client.get(f"/tasks/{recorded['task_id']}")).json()["state"] == "submitted"
    assert batch.status_code == 503
    assert [t["state"] for t in batch.json()["tasks"]] == ["queued", "submitted"]
    assert "outbox" in batch.json()["detail"]


# Reading, listing and waiting


async def test_get_returns_the_record_and_404s_an_unknown_id(client: httpx.AsyncClient) -> None:
    submitted = await client.post(
        "/tasks", json={"task_type": "word_count", "params": {"text": "a"}}
    )
    task_id = submitted.json()["task_id"]

    found = await client.get(f"/tasks/{task_id}")
    missing = await client.get(f"/tasks/{uuid4()}")
    malformed = await client.get("/tasks/not-a-uuid")

    assert found.status_code == 200
    assert found.json()["params"] == {"text": "a"}
    assert found.json()["attempt"] == 1
    assert missing.status_code == 404
    assert "no task" in missing.json()["detail"]
    assert malformed.status_code == 422


async def test_pages_walk_every_task_newest_first(client: httpx.AsyncClient) -> None:
    tasks = [{"task_type": "word_count", "params": {"text": str(n)}} for n in range(7)]
    submitted = (await client.post("/tasks/batch", json={"tasks": tasks})).json()["tasks"]
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = (await client.get("/tasks", params=params)).json()
        seen.extend(task["task_id"] for task in page["tasks"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]

    assert seen == [task["task_id"] for task in reversed(submitted)]


async def test_listing_filters_by_state_and_time(
    client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    tasks = [{"task_type": "word_count", "params": {"text": str(n)}} for n in range(3)]
    ids = [
        t["task_id"]
        for t in (await client.post("/tasks/batch", json={"tasks": tasks})).json()["tasks"]
    ]
    await dispatcher.record_result(succeeded(UUID(ids[0])))
    first = (await client.get(f"/tasks/{ids[0]}")).json()["submitted_at"]

    succeeded_ones = await client.get("/tasks", params={"state": "succeeded"})
    open_ones = await client.get("/tasks", params=[("state", "queued"), ("state", "submitted")])
    later = await client.get("/tasks", params={"submitted_after": first})

    assert [t["task_id"] for t in succeeded_ones.json()["tasks"]] == [ids[0]]
    assert {t["task_id"] for t in open_ones.json()["tasks"]} == set(ids[1:])
    assert {t["task_id"] for t in later.json()["tasks"]} == set(ids[1:])


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"state": "sleeping"},
        {"cursor": "garbage"},
        {"submitted_after": "2026-01-01T00:00:00"},  # no time zone
        {"submitted_before": "yesterday"},
    ],
)
async def test_bad_listing_parameters_are_422(
    client: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert (await client.get("/tasks", params=params)).status_code == 422


async def test_result_is_202_until_the_outcome_then_200(
    client: httpx.AsyncClient, dispatcher: Dispatcher
) -> None:
    submitted = await client.post(
        "/tasks", json={"task_type": "word_count", "params": {"text": "a"}}
    )
    task_id = submitted.json()["task_id"]

    pending = await client.get(f"/tasks/{task_id}/result", params={"wait": 0.05})
    waiting = asyncio.create_task(client.get(f"/tasks/{task_id}/result", params={"wait": 30}))
    await dispatcher.record_result(succeeded(UUID(task_id)))
    done = await asyncio.wait_for(waiting, timeout=10)

    assert pending.status_code == 202
    assert pending.json()["state"] == "queued"
    assert done.status_code == 200
    assert done.json()["result"] == 2
    assert (await client.get(f"/tasks/{uuid4()}/result")).status_code == 404
    assert (await client.get(f"/tasks/{task_id}/result", params={"wait": 61})).status_code == 422


# Broker, task types, health


async def test_queues_and_task_types(client: httpx.AsyncClient) -> None:
    queues = await client.get("/queues")
    types = await client.get("/task-types")

    assert queues.json() == {"queues": [{"name": "wq.tasks", "messages": 3, "consumers": 2}]}
    (word,) = types.json()["task_types"]
    assert word["name"] == "word_count"
    assert word["params_schema"]["required"] == ["text"]


async def test_readiness_follows_the_broker_connection(
    client: httpx.AsyncClient, broker: FakeBroker
) -> None:
    ready = await client.get("/health/ready")
    broker.connected = False
    not_ready = await client.get("/health/ready")

    assert (ready.status_code, ready.json()) == (
        200,
        {"ready": True, "broker": True, "results": True, "store": True},
    )
    assert not_ready.status_code == 503
    assert not_ready.json()["broker"] is False
    assert (await client.get("/health/live")).json() == {"status": "ok"}


async def test_readiness_is_false_while_the_results_consumer_is_stalled(
    client: httpx.AsyncClient, broker: FakeBroker
) -> None:
    broker.flowing = False

    response = await client.get("/health/ready")

    assert response.status_code == 503
    assert response.json() == {"ready": False, "broker": True, "results": False, "store": True}


async def test_openapi_documents_every_router(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    for path in ("/tasks", "/tasks/batch", "/tasks/{task_id}", "/tasks/{task_id}/result"):
        assert path in paths
    assert {"/queues", "/task-types", "/health/live", "/health/ready"} <= set(paths)
    for path in ("/tasks/{task_id}/cancel", "/schedules", "/schedules/{name}", "/executors"):
        assert path in paths
    assert {"/schedules/{name}/pause", "/schedules/{name}/resume", "/metrics"} <= set(paths)
    assert (await client.get("/docs")).status_code == 200


# Auth and logging


@pytest.mark.parametrize("path", ["/tasks", "/queues", "/health/ready", "/openapi.json", "/docs"])
async def test_with_a_token_every_route_but_liveness_needs_it(
    guarded: httpx.AsyncClient, path: str
) -> None:
    missing = await guarded.get(path)
    wrong = await guarded.get(path, headers={"Authorization": "Bearer tok-124"})
    right = await guarded.get(path, headers={"Authorization": "Bearer tok-123"})

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert right.status_code == 200
    assert (await guarded.get("/health/live")).status_code == 200


async def test_each_request_logs_one_line_without_secrets(guarded: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        await guarded.get(
            "/tasks", params={"limit": 5}, headers={"Authorization": "Bearer tok-123"}
        )
        await guarded.get("/tasks", headers={"Authorization": "Bearer nope"})

    lines = [entry for entry in logs if entry["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in lines] == [
        ("GET", "/tasks", 200),
        ("GET", "/tasks", 401),
    ]
    assert all(isinstance(e["duration_ms"], float) for e in lines)
    assert "tok-123" not in repr(logs)
    assert "nope" not in repr(logs)


async def test_a_bug_is_500_logged_once_and_the_broker_down_is_503(
    client: httpx.AsyncClient, broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(task_queues: object = ()) -> list[QueueDepth]:
        raise RuntimeError("bug")

    async def down(task_queues: object = ()) -> list[QueueDepth]:
        raise BrokerError("not connected to RabbitMQ")

    monkeypatch.setattr(broker, "queue_depths", broken)
    with capture_logs() as logs:
        failed = await client.get("/queues")
    monkeypatch.setattr(broker, "queue_depths", down)
    unavailable = await client.get("/queues")

    assert (failed.status_code, failed.json()) == (500, {"detail": "internal error"})
    assert [e["event"] for e in logs].count("http_request_failed") == 1
    assert unavailable.status_code == 503
    assert "broker unavailable" in unavailable.json()["detail"]


@pytest.mark.parametrize(
    "instant", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "1000-01-01T00:00:00Z"]
)
async def test_a_listing_bound_out_of_range_is_422_not_a_store_error(
    client: httpx.AsyncClient, instant: str
) -> None:
    for bound in ("submitted_after", "submitted_before"):
        response = await client.get("/tasks", params={bound: instant})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", bound]


async def test_request_lines_about_one_task_name_it(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:
        task = {"task_type": "word_count", "params": {"text": "a"}}
        one = await client.post("/tasks", json=task)
        task_id = one.json()["task_id"]
        await client.get(f"/tasks/{task_id}")
        await client.post(f"/tasks/{task_id.upper()}/cancel")
        await client.post("/tasks/batch", json={"tasks": [task, task]})
        await client.get("/tasks")

    lines = [entry for entry in logs if entry["event"] == "http_request"]
    assert [(e["method"], e["path"].lower(), e.get("task_id")) for e in lines] == [
        ("POST", "/tasks", task_id),
        ("GET", f"/tasks/{task_id}", task_id),
        ("POST", f"/tasks/{task_id}/cancel", task_id),
        ("POST", "/tasks/batch", None),
        ("GET", "/tasks", None),
    ]


def test_every_refusal_the_dashboard_maps_has_a_handler_in_the_api(
    dispatcher: Dispatcher, broker: FakeBroker
) -> None:
    app = create_app(context_of(dispatcher, broker))

    for kind, _ in ERROR_STATUS:
        assert kind in app.exception_handlers, kind
