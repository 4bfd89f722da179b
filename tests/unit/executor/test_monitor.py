"""The executor's monitor: heartbeat counts, CPU and memory; Prometheus metrics when enabled."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psutil
import pytest

from common import ExecutorEvent, Outcome, TaskMessage, TaskRegistry
from executor.metrics import ExecutorMetrics
from executor.monitor import Monitor, _rss_bytes

REPO = Path(__file__).resolve().parents[3]
_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.task("echo")(lambda value: value)
    return registry


def _task() -> TaskMessage:
    return TaskMessage(task_id=uuid4(), task_type="echo", submitted_at=_NOW)


def test_heartbeat_counts_running_and_settled_tasks_without_metrics() -> None:
    monitor = Monitor(name="e1", slots=2, registry=_registry(), clock=lambda: _NOW)

    with monitor.running(_task()):
        running = monitor.heartbeat(ExecutorEvent.HEARTBEAT)
    monitor.settled("echo", Outcome.SUCCEEDED, duration_s=0.5)
    monitor.settled("echo", Outcome.FAILED, duration_s=None)
    after = monitor.heartbeat(ExecutorEvent.HEARTBEAT)

    assert monitor.metrics is None
    assert [t.task_type for t in running.current_tasks] == ["echo"]
    assert (after.current_tasks, after.processed, after.failed) == ([], 2, 1)
    assert [t.name for t in after.task_types] == ["echo"]


def test_metrics_follow_running_and_settled_tasks_when_enabled() -> None:
    metrics = ExecutorMetrics()
    monitor = Monitor(name="e1", slots=2, registry=_registry(), metrics=metrics)
    value = metrics.registry.get_sample_value

    with monitor.running(_task()):
        assert value("wq_executor_tasks_in_flight") == 1
    monitor.settled("echo", Outcome.SUCCEEDED, duration_s=0.5)
    monitor.settled("echo", Outcome.FAILED, duration_s=None)

    assert value("wq_executor_tasks_in_flight") == 0
    assert value("wq_executor_slots") == 2
    labels = {"task_type": "echo", "outcome": "succeeded"}
    assert value("wq_executor_tasks_total", labels) == 1
    assert value("wq_executor_tasks_total", {**labels, "outcome": "failed"}) == 1
    assert value("wq_executor_task_duration_seconds_count", {"task_type": "echo"}) == 1


def test_heartbeat_reports_cpu_since_the_last_one_with_one_core_as_100() -> None:
    monitor = Monitor(name="e1", slots=1, registry=_registry())
    # As if half a second of CPU had gone by in one second of wall time.
    monitor._cpu_mark = (time.process_time() - 0.5, time.monotonic() - 1.0)

    first = monitor.heartbeat(ExecutorEvent.HEARTBEAT).cpu_percent

    assert first is not None
    assert 45 <= first <= 55


def test_heartbeat_reports_the_resident_memory_psutil_sees() -> None:
    monitor = Monitor(name="e1", slots=1, registry=_registry())

    rss = monitor.heartbeat(ExecutorEvent.HEARTBEAT).rss_bytes

    assert rss is not None
    assert abs(rss - psutil.Process().memory_info().rss) < 2**20


def test_resident_memory_comes_from_psutil_where_there_is_no_proc(tmp_path: Path) -> None:
    rss = _rss_bytes(tmp_path / "no-proc" / "statm")

    assert rss is not None
    assert abs(rss - psutil.Process().memory_info().rss) < 2**20


@pytest.mark.parametrize("module", ["prometheus_client", "psutil"])
def test_executor_command_line_does_not_load(module: str) -> None:
    # The metrics endpoint is optional and /proc gives the heartbeat's memory figure; these
    # modules would only add to every executor's memory (docs/benchmarks.md). A fresh
    # interpreter, since this test process has imported everything already.
    code = f"import sys, executor.cli; print({module!r} in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip

    assert loaded.stdout.strip() == "False"


def _monitor(metrics: ExecutorMetrics) -> Monitor:
    registry = TaskRegistry()
    registry.task("a")(lambda: None)
    registry.task("b")(lambda: None)
    return Monitor(name="e1", slots=2, registry=registry, metrics=metrics)


def test_settled_attempts_are_counted_by_task_type_and_outcome() -> None:
    metrics = ExecutorMetrics()
    monitor = _monitor(metrics)

    for task_type, outcome in [
        ("a", Outcome.SUCCEEDED),
        ("a", Outcome.SUCCEEDED),
        ("a", Outcome.FAILED),
        ("b", Outcome.SUCCEEDED),
    ]:
        monitor.settled(task_type, outcome, duration_s=0.002)
    monitor.settled("b", Outcome.DEAD, duration_s=None)

    def tasks(task_type: str, outcome: str) -> float | None:
        labels = {"task_type": task_type, "outcome": outcome}
        return metrics.registry.get_sample_value("wq_executor_tasks_total", labels)

    def durations(task_type: str) -> float | None:
        labels = {"task_type": task_type}
        name = "wq_executor_task_duration_seconds_count"
        return metrics.registry.get_sample_value(name, labels)

    assert (tasks("a", "succeeded"), tasks("a", "failed")) == (2, 1)
    assert (tasks("b", "succeeded"), tasks("b", "dead")) == (1, 1)
    assert (durations("a"), durations("b")) == (3, 1)
    heartbeat = monitor.heartbeat(ExecutorEvent.HEARTBEAT)
    assert (heartbeat.processed, heartbeat.failed) == (5, 2)
