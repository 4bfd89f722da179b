"""The executor's counters and metrics as attempts settle."""

from __future__ import annotations

from common import ExecutorEvent, Outcome, TaskRegistry
from executor.monitor import Monitor


def _monitor() -> Monitor:
    registry = TaskRegistry()
    registry.task("a")(lambda: None)
    registry.task("b")(lambda: None)
    return Monitor(name="e1", slots=2, registry=registry)


def test_settled_attempts_are_counted_by_task_type_and_outcome() -> None:
    monitor = _monitor()

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
        return monitor.metrics.registry.get_sample_value("wq_executor_tasks_total", labels)

    def durations(task_type: str) -> float | None:
        labels = {"task_type": task_type}
        name = "wq_executor_task_duration_seconds_count"
        return monitor.metrics.registry.get_sample_value(name, labels)

    assert (tasks("a", "succeeded"), tasks("a", "failed")) == (2, 1)
    assert (tasks("b", "succeeded"), tasks("b", "dead")) == (1, 1)
    assert (durations("a"), durations("b")) == (3, 1)
    heartbeat = monitor.heartbeat(ExecutorEvent.HEARTBEAT)
    assert (heartbeat.processed, heartbeat.failed) == (5, 2)
