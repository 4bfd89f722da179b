"""POST /tasks/{id}/cancel in process: outcomes, codes, and a broker that is down."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
from structlog.testing import capture_logs

from common import BrokerError
from dispatcher.service import Dispatcher
from tests.unit.dispatcher.fakes import FakeCancelPublisher, succeeded

TEXT = {"task_type": "word_count", "params": {"text": "a b"}}


async def _submit(client: httpx.AsyncClient, **extra: object) -> str:
    response = await client.post("/tasks", json={**TEXT, **extra})
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_a_queued_task_is_202_requested_and_executors_are_told(
    client: httpx.AsyncClient, cancels: FakeCancelPublisher
) -> None:
    task_id = await _submit(client)

    response = await client.post(f"/tasks/{task_id}/cancel")

    assert response.status_code == 202
    body = response.json()
    assert body["outcome"] == "requested"
    assert body["task"]["state"] == "queued"
    assert body["task"]["cancel_requested_at"] is not None
    assert [str(n.task_id) for n in cancels.notices] == [task_id]


async def test_a_scheduled_task_is_cancelled_outright_and_its_wait_ends(
    client: httpx.AsyncClient,
) -> None:
    task_id = await _submit(client, countdown=3600)

    response = await client.post(f"/tasks/{task_id}/cancel")
    result = await client.get(f"/tasks/{task_id}/result", params={"wait": 5})

    assert (response.status_code, response.json()["outcome"]) == (200, "cancelled")
    assert response.json()["task"]["state"] == "cancelled"
    assert (result.status_code, result.json()["state"]) == (200, "cancelled")


async def test_a_finished_task_is_200_already_final_and_unchanged(
    client: httpx.AsyncClient, dispatcher: Dispatcher, cancels: FakeCancelPublisher
) -> None:
    task_id = await _submit(client)
    await dispatcher.record_result(succeeded(UUID(task_id)))

    response = await client.post(f"/tasks/{task_id}/cancel")

    assert (response.status_code, response.json()["outcome"]) == (200, "already_final")
    assert response.json()["task"]["state"] == "succeeded"
    assert response.json()["task"]["cancel_requested_at"] is None
    assert cancels.notices == []


async def test_unknown_and_malformed_ids(client: httpx.AsyncClient) -> None:
    missing = await client.post(f"/tasks/{uuid4()}/cancel")
    malformed = await client.post("/tasks/not-a-uuid/cancel")

    assert missing.status_code == 404
    assert "no task" in missing.json()["detail"]
    assert malformed.status_code == 422


async def test_a_notice_not_published_is_503_recorded_and_safe_to_retry(
    client: httpx.AsyncClient, cancels: FakeCancelPublisher
) -> None:
    task_id = await _submit(client)
    cancels.fail = BrokerError("not connected to RabbitMQ")

    with capture_logs() as logs:
        refused = await client.post(f"/tasks/{task_id}/cancel")
    cancels.fail = None
    retried = await client.post(f"/tasks/{task_id}/cancel")

    assert refused.status_code == 503
    assert "retrying the request is safe" in refused.json()["detail"]
    first_request = refused.json()["task"]["cancel_requested_at"]
    assert first_request is not None
    assert "task_cancel_not_published" in [entry["event"] for entry in logs]
    assert (retried.status_code, retried.json()["outcome"]) == (202, "requested")
    assert retried.json()["task"]["cancel_requested_at"] == first_request
    assert len(cancels.notices) == 1
