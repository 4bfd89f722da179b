"""Retention: finished tasks and silent executors are deleted once they are old enough.

``dispatcher serve`` sweeps every ``WQ_DISPATCHER_RETENTION_INTERVAL`` seconds; ``dispatcher
prune`` does the same by hand, with any cut-off and states. Either deletes a batch at a time,
each in a short transaction of its own, oldest first: a sweep never holds a long lock, and
replicas sweeping together skip each other's rows (PostgreSQL) or take turns (SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from common.logging import get_logger
from dispatcher.metrics import DispatcherMetrics
from dispatcher.store.protocol import SyncTaskStore, TaskStore
from dispatcher.store.records import TaskState

log = get_logger(__name__)

# Every state a task ends in: only those are ever pruned.
FINAL_STATES: Final = tuple(state for state in TaskState if state.is_final)
PRUNE_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep deleted."""

    tasks: int
    executors: int


async def sweep(
    store: TaskStore,
    now: datetime,
    *,
    retention: timedelta,
    executor_retention: timedelta,
    metrics: DispatcherMetrics,
) -> Swept:
    """Delete finished tasks older than ``retention`` and executors silent for longer than
    ``executor_retention``; a zero duration keeps them all."""
    tasks = 0
    if retention > timedelta(0):
        while True:
            pruned = await store.prune_tasks(now - retention, FINAL_STATES, PRUNE_BATCH)
            tasks += pruned
            metrics.pruned.labels(kind="tasks").inc(pruned)
            if pruned < PRUNE_BATCH:
                break
    executors = 0
    if executor_retention > timedelta(0):
        executors = await store.prune_executors(now - executor_retention)
        metrics.pruned.labels(kind="executors").inc(executors)
    if tasks or executors:
        log.info("retention_pruned", tasks=tasks, executors=executors)
    return Swept(tasks, executors)


def prune(
    store: SyncTaskStore,
    before: datetime,
    states: Sequence[TaskState],
    *,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Delete every task in ``states`` finished before ``before``; how many. For the CLI."""
    total = 0
    while True:
        pruned = store.prune_tasks(before, states, PRUNE_BATCH)
        total += pruned
        if progress is not None and pruned:
            progress(pruned)
        if pruned < PRUNE_BATCH:
            return total
