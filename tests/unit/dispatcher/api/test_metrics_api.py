"""/metrics in process: the dispatcher's own registry, in Prometheus' text format."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

TEXT = {"task_type": "word_count", "params": {"text": "a b"}}


async def test_metrics_count_what_this_dispatcher_published(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.post("/tasks", json=TEXT)).status_code == 201

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("wq_tasks_submitted_total", (("task_type", "word_count"),))] == 3
    assert ("wq_duplicate_results_total", ()) in samples


async def test_metrics_need_the_token_once_one_is_set(guarded: httpx.AsyncClient) -> None:
    missing = await guarded.get("/metrics")
    right = await guarded.get("/metrics", headers={"Authorization": "Bearer tok-123"})

    assert missing.status_code == 401
    assert right.status_code == 200
    assert "wq_duplicate_results_total" in right.text
