"""Task types the integration tests run in real executor processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import TaskRegistry

registry = TaskRegistry()


@registry.task()
def echo(value: object = None) -> object:
    """Return the value unchanged."""
    return value


@registry.task()
def sleep_ms(ms: int, marker: str | None = None) -> dict[str, int]:
    """Sleep; when ``marker`` is a path, append this pid to it first (the task started)."""
    if marker:
        with Path(marker).open("a") as out:
            out.write(f"{os.getpid()}\n")
    time.sleep(ms / 1000)
    return {"slept_ms": ms, "pid": os.getpid()}


@registry.task()
def spin_ms(ms: int) -> int:
    """Burn CPU in pure Python (holding the GIL between switches) for ``ms`` milliseconds."""
    deadline = time.perf_counter() + ms / 1000
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins


@registry.task()
def fail(message: str = "boom") -> None:
    """Always raise."""
    raise RuntimeError(message)
