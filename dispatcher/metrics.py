"""The dispatcher's Prometheus metrics on a registry of its own, and how to expose them.

``render`` gives the exposition text, which the HTTP API serves at ``/metrics``;
``SubmissionCounter`` counts the tasks the store records, whoever submitted them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)


class DispatcherMetrics:
    """Counters and gauges of one dispatcher process (prefix ``wq_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.submitted = Counter(
            "wq_tasks_submitted",
            "Tasks recorded in the task store since this dispatcher serve started, whoever "
            "submitted them (HTTP API, CLI, Python, schedules), by task type; the same on every "
            "replica of one store (aggregate with max, not sum).",
            ["task_type"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "wq_task_outcomes",
            "Results this dispatcher recorded, by task type and outcome (succeeded, failed, "
            "retrying, dead); duplicates are not counted.",
            ["task_type", "outcome"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "wq_duplicate_results",
            "Results for tasks that already had an outcome (a task that ran twice).",
            registry=self.registry,
        )
        self.pruned = Counter(
            "wq_pruned",
            "Rows the retention sweep deleted: finished tasks (with their attempts), executors.",
            ["kind"],
            registry=self.registry,
        )
        self.queue_messages = Gauge(
            "wq_queue_messages",
            "Messages ready in each queue, as of the last probe.",
            ["queue"],
            registry=self.registry,
        )
        self.queue_consumers = Gauge(
            "wq_queue_consumers",
            "Consumers of each queue, as of the last probe.",
            ["queue"],
            registry=self.registry,
        )
        self.executors = Gauge(
            "wq_executors",
            "Executors recorded in the store, by state (running, lost, stopped).",
            ["state"],
            registry=self.registry,
        )


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition text of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# How far behind the clock the submissions are counted: a task's submitted_at is read before
# its row commits (and on the submitter's clock), so the newest seconds may still fill in.
SUBMISSION_LAG_S = 5.0


class _CountsSubmissions(Protocol):
    async def count_submitted(self, after: datetime, until: datetime) -> dict[str, int]: ...


class SubmissionCounter:
    """Keeps ``wq_tasks_submitted_total`` from the task store.

    A ``dispatcher submit`` is a process of its own that lives for a second: nothing could
    scrape a counter of its. What every entry point has in common is the store, so the
    ``dispatcher serve`` that reads it counts every task recorded there since it started, a
    window at a time, ``lag_s`` behind its clock.
    """

    def __init__(
        self,
        store: _CountsSubmissions,
        metrics: DispatcherMetrics,
        clock: Callable[[], datetime],
        *,
        lag_s: float = SUBMISSION_LAG_S,
    ) -> None:
        self._store = store
        self._counter = metrics.submitted
        self._clock = clock
        self._lag = timedelta(seconds=lag_s)
        self._counted_until = clock()

    async def count(self) -> None:
        """Add the tasks submitted since the last count (up to ``lag_s`` ago)."""
        until = self._clock() - self._lag
        if until <= self._counted_until:
            return
        counts = await self._store.count_submitted(self._counted_until, until)
        for task_type, n in counts.items():
            self._counter.labels(task_type=task_type).inc(n)
        self._counted_until = until
