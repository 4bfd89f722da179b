"""Running sync handlers off the event loop, with soft and hard time limits.

Handlers run on long-lived daemon threads that the event loop reuses: an idle thread takes the
next attempt, and a new one starts only when none is idle, so a process keeps at most as many
threads as it ever ran attempts at once (the executor's slots) and starts no thread per task.

Time limits are exceptions raised inside the handler's thread with ``PyThreadState_SetAsyncExc``,
which delivers them at the thread's next bytecode: possibly after the handler has returned. So a
thread that was ever sent one is retired: it finishes the attempt it was on, then exits, and is
never handed another. A handler abandoned at its hard limit keeps its thread, which takes no
slot and, being a daemon, cannot keep the process from exiting.

Every attempt runs in a copy of the caller's context (log lines keep the task id); what a
handler leaves in ``threading.local`` is seen by later attempts on the same thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any

from common import SoftTimeLimitExceeded, TimeLimitExceeded

# The only exceptions this module raises asynchronously, hence the only late ones to expect.
_INTERRUPTS = (SoftTimeLimitExceeded, TimeLimitExceeded)


class HandlerThreads:
    """Reusable handler threads for one event loop; ``run`` fits the runner's ``RunInThread``."""

    def __init__(self) -> None:
        # Touched only on the event loop's thread, so no lock: handler threads report back with
        # call_soon_threadsafe and never touch it themselves.
        self._idle: list[_HandlerThread] = []
        self._closed = False

    async def run(
        self,
        fn: Callable[[], Any],
        *,
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
    ) -> Any:
        """Run ``fn`` on a handler thread and await its value.

        At ``soft_time_limit`` the thread gets ``SoftTimeLimitExceeded`` raised inside it; at
        ``time_limit`` it gets ``TimeLimitExceeded`` too, and this coroutine stops waiting and
        raises ``TimeLimitExceeded`` whether or not the thread has stopped.
        """
        loop = asyncio.get_running_loop()
        attempt = _Attempt(fn, contextvars.copy_context(), loop, loop.create_future())
        thread = self._take_idle() or _HandlerThread(self._finished)
        thread.start(attempt)
        soft = (
            loop.call_later(soft_time_limit, thread.interrupt, attempt, SoftTimeLimitExceeded)
            if soft_time_limit is not None
            else None
        )
        try:
            # No shield: at the hard limit the future is cancelled, and whatever the abandoned
            # handler returns later is dropped instead of being an exception nobody retrieves.
            async with asyncio.timeout(time_limit) as limit:
                return await attempt.future
        except TimeoutError:
            if not limit.expired():
                raise  # the handler's own timeout (a socket's, say): an ordinary error
            thread.interrupt(attempt, TimeLimitExceeded)
            raise TimeLimitExceeded(time_limit or 0) from None
        finally:
            if soft is not None:
                soft.cancel()

    def close(self) -> None:
        """Let the idle threads exit; busy ones exit when their attempt is over.

        Attempts run after this still work, each on a thread that exits when it is done.
        """
        self._closed = True
        while self._idle:
            self._idle.pop().release()

    def _take_idle(self) -> _HandlerThread | None:
        while self._idle:
            thread = self._idle.pop()  # the most recently used: its stack is still warm
            if not thread.retired:
                return thread
            thread.release()
        return None

    def _finished(self, thread: _HandlerThread, attempt: _Attempt) -> None:
        """On the loop: settle the attempt's future and take the thread back unless retired."""
        if thread.attempt is not attempt:
            return  # reported twice: an interrupt surfaced while the thread reported it
        # From here on no interrupt is sent for this attempt, so the thread may be reused.
        thread.attempt = None
        assert attempt.outcome is not None, "a thread reports an attempt once it has an outcome"
        value, error = attempt.outcome
        if not attempt.future.done():
            if error is None:
                attempt.future.set_result(value)
            else:
                attempt.future.set_exception(error)
        if thread.retired or self._closed:
            thread.release()
        else:
            self._idle.append(thread)


class _Attempt:
    """One call of a handler: what to run, and what came of it."""

    __slots__ = ("context", "fn", "future", "loop", "outcome", "reported", "started")

    def __init__(
        self,
        fn: Callable[[], Any],
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn, self.context, self.loop, self.future = fn, context, loop, future
        self.started = False
        self.reported = False
        self.outcome: tuple[Any, BaseException | None] | None = None

    def run(self, late: BaseException | None) -> None:
        """Call the handler once and keep its value or exception."""
        if late is not None or self.started:
            # An interrupt surfaced in our code, before the handler began (the thread was slow
            # to wake) or as it returned: it is the attempt's outcome, and the handler never
            # runs twice.
            self.outcome = (None, late or SoftTimeLimitExceeded())
            return
        self.started = True
        try:
            value = self.context.run(self.fn)
        except BaseException as exc:  # the handler's outcome, whatever it is
            self.outcome = (None, exc)
        else:
            self.outcome = (value, None)


class _HandlerThread:
    """A daemon thread that runs the attempts the loop hands it, one at a time."""

    def __init__(self, finished: Callable[[_HandlerThread, _Attempt], None]) -> None:
        self._finished = finished
        # The loop writes these three; the thread only reads them.
        self.attempt: _Attempt | None = None
        self.retired = False
        self._released = False
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="wq-task", daemon=True)
        self._thread.start()

    def start(self, attempt: _Attempt) -> None:
        self.attempt = attempt
        self._wakeups.put(None)

    def release(self) -> None:
        """Let the thread exit once it is idle; the loop will send it nothing more."""
        self._released = True
        self._wakeups.put(None)

    def interrupt(self, attempt: _Attempt, error: type[BaseException]) -> None:
        """Raise ``error`` inside the thread if it is still running ``attempt``, and retire it."""
        # Only while the handler has not returned: once the thread has kept the outcome, an
        # exception sent now would land in this module's code. The check narrows that window
        # but cannot close it (the GIL may pass to the thread between the check and the call),
        # which is why the thread is retired first and its loop catches a late interrupt.
        if self.attempt is attempt and attempt.outcome is None:
            self.retired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread.ident or 0), ctypes.py_object(error)
            )

    def _serve(self) -> None:
        """The thread's life: attempts until released, surviving interrupts that land late."""
        late: BaseException | None = None
        while True:
            try:
                while not self._released:
                    self._step(late)
                return
            except _INTERRUPTS as exc:
                # Sent while the handler ran, surfaced in our code: this thread is retired
                # already, and the next steps report its attempt and wait for the release.
                late = exc

    def _wait_for_work(self) -> None:
        # Its own frame, so that profiles (bench/profile.py) can tell an idle thread by name.
        self._wakeups.get()

    def _step(self, late: BaseException | None) -> None:
        attempt = self.attempt
        if attempt is None or attempt.reported:
            self._wait_for_work()
            return
        if attempt.outcome is None:
            attempt.run(late)
        try:
            attempt.loop.call_soon_threadsafe(self._finished, self, attempt)
        except RuntimeError:  # the loop closed while the handler ran: nobody is waiting
            self._released = True
            return
        attempt.reported = True
