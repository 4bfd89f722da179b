"""What the executor knows about itself: identity, running tasks, counts, CPU and memory.

It feeds both the heartbeats (``executor.heartbeats``) and, when the endpoint is enabled, the
Prometheus metrics.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psutil

from common import ExecutorEvent, Heartbeat, Outcome, RunningTask, TaskMessage, TaskRegistry

if TYPE_CHECKING:
    # Only for annotations: an executor without a metrics endpoint never loads
    # prometheus_client (about 2 MiB of its idle memory, docs/benchmarks.md).
    from executor.metrics import ExecutorMetrics

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Monitor:
    """Running tasks and counters of one executor, and heartbeats built from them."""

    def __init__(
        self,
        *,
        name: str,
        slots: int,
        registry: TaskRegistry,
        metrics: ExecutorMetrics | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.name = name
        # None when the metrics endpoint is off: nothing would read them.
        self.metrics = metrics
        if metrics is not None:
            metrics.slots.set(slots)
        self._slots = slots
        self._clock = clock
        self._started_at = clock()
        self._task_types = [registry.get(name).describe() for name in registry.names()]
        self._running: dict[int, RunningTask] = {}
        self._processed = 0
        self._failed = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement

    @contextmanager
    def running(self, task: TaskMessage) -> Iterator[None]:
        """Count ``task`` as running (heartbeats, in-flight gauge) while the block runs."""
        key = id(task)
        self._running[key] = RunningTask(
            task_id=task.task_id,
            task_type=task.task_type,
            attempt=task.attempt,
            started_at=self._clock(),
        )
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            yield
        finally:
            del self._running[key]
            if self.metrics is not None:
                self.metrics.in_flight.dec()

    def settled(self, task_type: str, outcome: Outcome, *, duration_s: float | None) -> None:
        """Count an attempt once its outcome is safe with the broker."""
        self._processed += 1
        if outcome is not Outcome.SUCCEEDED:
            self._failed += 1
        if self.metrics is None:
            return
        self.metrics.tasks.labels(task_type=task_type, outcome=outcome.value).inc()
        if duration_s is not None:
            self.metrics.duration.labels(task_type=task_type).observe(duration_s)

    def heartbeat(self, event: ExecutorEvent) -> Heartbeat:
        """This executor's state now."""
        try:
            cpu: float | None = self._process.cpu_percent(None)
            rss: int | None = self._process.memory_info().rss
        except psutil.Error:
            cpu = rss = None
        return Heartbeat(
            event=event,
            executor=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=self._slots,
            started_at=self._started_at,
            sent_at=self._clock(),
            task_types=self._task_types,
            current_tasks=list(self._running.values()),
            processed=self._processed,
            failed=self._failed,
            cpu_percent=cpu,
            rss_bytes=rss,
        )
