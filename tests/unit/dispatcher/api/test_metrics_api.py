"""/metrics in process: the dispatcher's own registry, in Prometheus' text format."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

TEXT = {"task_type": "word_count", "params": {"text": "a b"}}


async def test_metrics_are_served_in_the_text_format(client: httpx.AsyncClient) -> None:
    # Submissions are counted from the store by dispatcher serve's gauge pass
    # (tests/unit/dispatcher/test_fleet.py); the outcome counters by what was recorded here.
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
    assert ("wq_duplicate_results_total", ()) in samples
    assert "# HELP wq_tasks_submitted_total Tasks recorded in the task store" in response.text


async def test_metrics_need_the_token_once_one_is_set(guarded: httpx.AsyncClient) -> None:
    missing = await guarded.get("/metrics")
    right = await guarded.get("/metrics", headers={"Authorization": "Bearer tok-123"})

    assert missing.status_code == 401
    assert right.status_code == 200
    assert "wq_duplicate_results_total" in right.text
