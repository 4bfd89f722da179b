"""Task types the integration tests run in real executor processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import (
    PermanentTaskError,
    SoftTimeLimitExceeded,
    TaskRegistry,
    current_task_context,
)

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
def soak(ms: int, runs: str) -> int:
    """Note this run (task id and attempt) in ``runs``/<pid>, then sleep: the soak counts runs."""
    context = current_task_context()
    assert context is not None
    with (Path(runs) / str(os.getpid())).open("a") as out:
        out.write(f"{context.task_id}\n")
    time.sleep(ms / 1000)
    return ms


@registry.task()
def spin_ms(ms: int) -> int:
    """Burn CPU in pure Python (holding the GIL between switches) for ``ms`` milliseconds."""
    deadline = time.perf_counter() + ms / 1000
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins


@registry.task(max_retries=0)
def fail(message: str = "boom") -> None:
    """Always raise (never retried)."""
    raise RuntimeError(message)


def _count_call(counter: str) -> int:
    with Path(counter).open("a+") as out:
        out.write(f"{os.getpid()}\n")
        out.seek(0)
        return len(out.read().split())


@registry.task(max_retries=3, retry_backoff=0.2)
def flaky(counter: str, failures: int) -> int:
    """Fail the first ``failures`` calls (counted in the file ``counter``), then succeed."""
    calls = _count_call(counter)
    if calls <= failures:
        raise ConnectionError(f"flaky call {calls} of {failures} failing")
    return calls


@registry.task(max_retries=3, retry_backoff=2.0)
def flaky_slow_backoff(counter: str, failures: int) -> int:
    """``flaky`` with retries 1 to 2 seconds apart."""
    return flaky(counter, failures)


@registry.task()
def refuse(reason: str = "bad input") -> None:
    """Raise a permanent error: never retried."""
    raise PermanentTaskError(reason)


@registry.task()
def crash(counter: str) -> None:
    """Kill the executor process mid-task, as a segfault or the OOM killer would."""
    _count_call(counter)
    os._exit(3)


@registry.task(soft_time_limit=0.5, time_limit=5)
def cooperative_overrun(seconds: float) -> str:
    """Busy-work past the soft limit, catch it, and return what was done so far."""
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            pass
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@registry.task(time_limit=1)
def hang(seconds: float) -> None:
    """Block in C (no bytecode runs) far past the hard limit."""
    time.sleep(seconds)


@registry.task()
def blow_up(size: int) -> str:
    """Return a result of ``size`` characters."""
    return "x" * size


@registry.task()
def await_cancel(
    marker: str, honour: bool = True, percent: float | None = None, timeout: float = 20
) -> str:
    """Leave a trace, report ``percent``, wait ``timeout`` s for a cancel; honour it or not."""
    Path(marker).write_text(f"{os.getpid()}\n")
    context = current_task_context()
    if percent is not None:
        context.progress(percent, "waiting for a cancel")
    cancelled = context.wait_for_cancel(timeout)
    if honour:
        context.raise_if_cancelled()
    return "cancel ignored" if cancelled else "never cancelled"
