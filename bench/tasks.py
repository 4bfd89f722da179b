"""Task types the benchmarks run on the executor: a no-op, and a sleep for fairness."""

from __future__ import annotations

import time

from common import TaskRegistry

registry = TaskRegistry()


@registry.task("noop")
def noop(ms: int = 0) -> None:
    """Do nothing; with ``ms``, sleep that long first (the fairness workload)."""
    if ms:
        time.sleep(ms / 1000)
