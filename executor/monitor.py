"""What the executor knows about itself: identity, running tasks, counts, CPU and memory.

It feeds both the heartbeats (``executor.heartbeats``) and, when the endpoint is enabled, the
Prometheus metrics.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common import ExecutorEvent, Heartbeat, Outcome, RunningTask, TaskMessage, TaskRegistry

if TYPE_CHECKING:
    # Only for annotations: an executor without a metrics endpoint never loads
    # prometheus_client (about 2 MiB of its idle memory, docs/benchmarks.md).
    from prometheus_client import Counter, Histogram

    from executor.metrics import ExecutorMetrics

Clock = Callable[[], datetime]

# Linux's own account of this process's memory, in pages: size, resident, shared, ...
_STATM = Path("/proc/self/statm")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rss_bytes(statm: Path = _STATM) -> int | None:
    """Resident memory of this process now, or None when it cannot be read."""
    try:
        resident_pages = int(statm.read_bytes().split()[1])
    except FileNotFoundError:
        return _rss_bytes_from_psutil()
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _rss_bytes_from_psutil() -> int | None:
    # Without /proc (macOS, Windows) psutil knows how; on Linux it is not loaded at all,
    # which saves about 0.5 MiB of every executor's memory (docs/benchmarks.md).
    import psutil

    try:
        return psutil.Process().memory_info().rss
    except psutil.Error:
        return None


class Monitor:
    """Running tasks and counters of one executor, and heartbeats built from them."""

    def __init__(
        self,
        *,
        name: str,
        slots: int,
        registry: TaskRegistry,
        queues: Sequence[str] = (),
        metrics: ExecutorMetrics | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.name = name
        self._queues = list(queues) or registry.queues()
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
        self._cpu_mark = (time.process_time(), time.monotonic())
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
        self._counter(self.metrics, task_type, outcome).inc()
        if duration_s is not None:
            self._duration(self.metrics, task_type).observe(duration_s)

    def _counter(self, metrics: ExecutorMetrics, task_type: str, outcome: Outcome) -> Counter:
        try:
            return self._counters[task_type, outcome]
        except KeyError:
            counter = metrics.tasks.labels(task_type=task_type, outcome=outcome.value)
            return self._counters.setdefault((task_type, outcome), counter)

    def _duration(self, metrics: ExecutorMetrics, task_type: str) -> Histogram:
        try:
            return self._durations[task_type]
        except KeyError:
            histogram = metrics.duration.labels(task_type=task_type)
            return self._durations.setdefault(task_type, histogram)

    def heartbeat(self, event: ExecutorEvent) -> Heartbeat:
        """This executor's state now."""
        return Heartbeat(
            event=event,
            executor=self.name,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=self._slots,
            started_at=self._started_at,
            sent_at=self._clock(),
            task_types=self._task_types,
            queues=self._queues,
            current_tasks=list(self._running.values()),
            processed=self._processed,
            failed=self._failed,
            cpu_percent=self._cpu_percent(),
            rss_bytes=_rss_bytes(),
        )

    def _cpu_percent(self) -> float:
        """CPU used by all this process's threads since the last call; 100 is one core.

        The same figure psutil's ``Process.cpu_percent(None)`` gives, from the standard library.
        """
        cpu, wall = time.process_time(), time.monotonic()
        last_cpu, last_wall = self._cpu_mark
        self._cpu_mark = (cpu, wall)
        if wall <= last_wall:
            return 0.0
        return round((cpu - last_cpu) / (wall - last_wall) * 100, 1)
