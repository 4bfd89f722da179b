"""The task context: what a running handler can learn (cancel) and tell (progress) about its task.

The executor sets one context per attempt in a context variable; handlers read it with
``current_task_context()``. A handler called outside an executor (a unit test, a script) gets
a detached context that is never cancelled and reports nowhere, so it runs unchanged.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from common.errors import TaskCancelled
from common.messages import MAX_PROGRESS_NOTE

# A tight loop reporting progress sends at most one report per interval; the latest report
# inside an interval is sent when it ends, so the last word is never lost.
DEFAULT_PROGRESS_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """One progress report of a handler: percent done (0-100) and an optional note."""

    percent: float
    note: str | None = None


Report = Callable[[ProgressUpdate], None]
Schedule = Callable[[float, Callable[[], None]], None]

_current: ContextVar[TaskContext | None] = ContextVar("wq_task_context", default=None)


class TaskContext:
    """The running attempt of one task, as its handler sees it. Thread-safe.

    Args:
        task_id: the task's id (None for a detached context).
        attempt: the attempt number.
        report: called with each progress update that passes the rate limit.
        schedule: ``schedule(delay, fn)`` runs ``fn`` after ``delay`` seconds, to send the
            latest update held back by the rate limit.
        min_interval: seconds between two reports.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        task_id: UUID | None = None,
        attempt: int = 1,
        *,
        report: Report | None = None,
        schedule: Schedule | None = None,
        min_interval: float = DEFAULT_PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self._report = report
        self._schedule = schedule
        self._min_interval = min_interval
        self._clock = clock
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._last_sent: float | None = None
        self._pending: ProgressUpdate | None = None
        self._flush_scheduled = False

    @property
    def cancelled(self) -> bool:
        """Whether a cancel of this task was requested."""
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if a cancel was requested: the outcome is ``cancelled``."""
        if self._cancelled.is_set():
            raise TaskCancelled(self.task_id)

    def wait_for_cancel(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a cancel request; whether one came.

        For sync handlers that pause between steps; it blocks, so async handlers poll
        ``cancelled`` instead.
        """
        return self._cancelled.wait(timeout)

    def progress(self, percent: float, note: str | None = None) -> None:
        """Report how far the task has got; rate-limited, so call it as often as you like.

        Raises:
            ValueError: ``percent`` is not a number from 0 to 100, or ``note`` is too long.
        """
        update = _validated(percent, note)
        with self._lock:
            if self._report is None:
                return
            now = self._clock()
            if self._last_sent is None or now - self._last_sent >= self._min_interval:
                self._last_sent, self._pending = now, None
                send: ProgressUpdate | None = update
                delay = None
            else:
                send, self._pending = None, update
                delay = None
                if not self._flush_scheduled and self._schedule is not None:
                    self._flush_scheduled = True
                    delay = self._min_interval - (now - self._last_sent)
            report = self._report
        if send is not None:
            report(send)
        if delay is not None and self._schedule is not None:
            self._schedule(delay, self._flush)

    def cancel(self) -> None:
        """Mark the task cancelled (the executor calls this; handlers see ``cancelled``)."""
        self._cancelled.set()

    def close(self) -> None:
        """Stop reporting: the attempt is over, and its result supersedes any progress."""
        with self._lock:
            self._report, self._pending = None, None

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            update, self._pending, report = self._pending, None, self._report
            if update is not None and report is not None:
                self._last_sent = self._clock()
        if update is not None and report is not None:
            report(update)


def current_task_context() -> TaskContext:
    """The context of the attempt running in this thread or coroutine (detached if none)."""
    context = _current.get()
    return context if context is not None else TaskContext()


@contextmanager
def running_in(context: TaskContext) -> Iterator[TaskContext]:
    """Make ``context`` the current one for the code inside (and threads it copies into)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def _validated(percent: float, note: str | None) -> ProgressUpdate:
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise ValueError(f"progress percent must be a number, not {type(percent).__name__}")
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise ValueError(f"progress percent must be from 0 to 100, not {percent!r}")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_PROGRESS_NOTE):
        raise ValueError(f"progress note must be a string of at most {MAX_PROGRESS_NOTE} chars")
    return ProgressUpdate(float(percent), note)
