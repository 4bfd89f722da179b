"""The dispatcher's Prometheus metrics on a registry of its own, and how to expose them.

``render`` gives the exposition text, which the HTTP API serves at ``/metrics``.
"""

from __future__ import annotations

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
            "Tasks this dispatcher published and the broker confirmed, by task type.",
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
