"""What the executor knows about itself: identity, running tasks, counts, CPU and memory.

It feeds both the heartbeats (``executor.heartbeats``) and the Prometheus metrics.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import psutil
from prometheus_client import Counter, Histogram

from common import ExecutorEvent, Heartbeat, Outcome, RunningTask, TaskMessage, TaskRegistry
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
        self.metrics = metrics or ExecutorMetrics()
        self.metrics.slots.set(slots)
        self._slots = slots
        self._clock = clock
        self._started_at = clock()
        self._task_types = [registry.get(name).describe() for name in registry.names()]
        self._running: dict[int, RunningTask] = {}
        self._processed = 0
        self._failed = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement
        # labels() validates and looks up its arguments under a lock at every call (about
        # 10 us); task types and outcomes are few, so each labelled child is looked up once.
        self._counters: dict[tuple[str, Outcome], Counter] = {}
        self._durations: dict[str, Histogram] = {}

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
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            del self._running[key]
            self.metrics.in_flight.dec()

    def settled(self, task_type: str, outcome: Outcome, *, duration_s: float | None) -> None:
        """Count an attempt once its outcome is safe with the broker."""
        self._processed += 1
        if outcome is not Outcome.SUCCEEDED:
            self._failed += 1
        self._counter(task_type, outcome).inc()
        if duration_s is not None:
            self._duration(task_type).observe(duration_s)

    def _counter(self, task_type: str, outcome: Outcome) -> Counter:
        try:
            return self._counters[task_type, outcome]
        except KeyError:
            counter = self.metrics.tasks.labels(task_type=task_type, outcome=outcome.value)
            return self._counters.setdefault((task_type, outcome), counter)

    def _duration(self, task_type: str) -> Histogram:
        try:
            return self._durations[task_type]
        except KeyError:
            histogram = self.metrics.duration.labels(task_type=task_type)
            return self._durations.setdefault(task_type, histogram)

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
