"""The executor's Prometheus metrics, on a registry of its own, and the /metrics endpoint."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from common.logging import get_logger

log = get_logger(__name__)

# From a few milliseconds to ten minutes: the range of task durations worth telling apart.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ExecutorMetrics:
    """Counters, histogram and gauges of one executor process (prefix ``wq_executor_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.tasks = Counter(
            "wq_executor_tasks",
            "Attempts this executor settled, by task type and outcome "
            "(succeeded, failed, retrying, dead).",
            ["task_type", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "wq_executor_task_duration_seconds",
            "How long handlers ran, by task type.",
            ["task_type"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "wq_executor_tasks_in_flight",
            "Tasks running right now.",
            registry=self.registry,
        )
        self.slots = Gauge(
            "wq_executor_slots", "Execution slots of this executor.", registry=self.registry
        )


def serve_metrics(metrics: ExecutorMetrics, *, host: str, port: int) -> WSGIServer:
    """Serve ``/metrics`` on a daemon thread; returns the server (``shutdown()`` stops it).

    A thread, not the event loop: a scrape never waits for the loop, nor the loop for a scrape.
    """
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    log.info("metrics_serving", host=host, port=server.server_port)
    return server
