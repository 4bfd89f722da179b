"""Handler threads: reused between attempts, retired once interrupted, limits raised inside."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
import time
from collections.abc import Iterator

import pytest

from common import SoftTimeLimitExceeded, TimeLimitExceeded
from executor.threads import HandlerThreads

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
def threads() -> Iterator[HandlerThreads]:
    pool = HandlerThreads()
    yield pool
    pool.close()


@pytest.fixture(autouse=True)
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException | None]]:
    """Fail a test whose handler threads die of an exception (a late interrupt, say)."""
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    yield errors
    assert errors == []


def _thread(ident: int) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.ident == ident]
    return thread


def _wait_until_interrupted(seen: list[str], *, until: threading.Event) -> str:
    """A handler that keeps going through its interrupts, noting each, until told to stop."""
    while not until.is_set():
        try:
            until.wait(0.001)
        except (SoftTimeLimitExceeded, TimeLimitExceeded) as exc:
            seen.append(type(exc).__name__)
    return "stopped"


async def test_sequential_attempts_reuse_one_thread(threads: HandlerThreads) -> None:
    idents = [await threads.run(threading.get_ident) for _ in range(3)]

    assert len(set(idents)) == 1
    assert idents[0] != threading.get_ident()
    assert _thread(idents[0]).daemon


async def test_a_new_thread_starts_only_when_none_is_idle(threads: HandlerThreads) -> None:
    both_running = threading.Barrier(2, timeout=5)

    def meet() -> int:
        both_running.wait()
        return threading.get_ident()

    first, second = await asyncio.gather(threads.run(meet), threads.run(meet))
    after = {await threads.run(threading.get_ident) for _ in range(4)}

    assert first != second
    assert after <= {first, second}


async def test_each_attempt_runs_in_a_copy_of_the_callers_context(
    threads: HandlerThreads,
) -> None:
    def read_then_set() -> str:
        seen = request_id.get()
        request_id.set("set by the handler")
        return seen

    request_id.set("r-1")
    first = await threads.run(read_then_set)
    request_id.set("r-2")
    second = await threads.run(read_then_set)

    assert (first, second) == ("r-1", "r-2")
    assert request_id.get() == "r-2"


async def test_the_handlers_exception_propagates_and_the_thread_is_reused(
    threads: HandlerThreads,
) -> None:
    ident = await threads.run(threading.get_ident)

    def fail() -> None:
        raise LookupError("no rate")

    with pytest.raises(LookupError, match="no rate"):
        await threads.run(fail)
    assert await threads.run(threading.get_ident) == ident


async def test_a_cancelled_wait_leaves_the_handler_running_and_its_thread_reusable(
    threads: HandlerThreads,
) -> None:
    release, finished = threading.Event(), threading.Event()

    def wait_for_release() -> int:
        release.wait(5)
        finished.set()
        return threading.get_ident()

    waiting = asyncio.ensure_future(threads.run(wait_for_release))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not finished.is_set()
    release.set()
    for _ in range(500):
        if threads._idle:
            break
        await asyncio.sleep(0.01)

    assert finished.is_set()
    assert len(threads._idle) == 1
    assert await threads.run(lambda: "next") == "next"


@pytest.mark.parametrize("time_limit", [None, 5.0])
async def test_the_handlers_own_timeout_is_not_its_hard_limit(
    threads: HandlerThreads, time_limit: float | None
) -> None:
    def read_from_a_slow_socket() -> None:
        raise TimeoutError("timed out")

    with pytest.raises(TimeoutError, match="timed out") as raised:
        await threads.run(read_from_a_slow_socket, time_limit=time_limit)
    assert not isinstance(raised.value, TimeLimitExceeded)


async def test_soft_limit_raises_inside_the_handler(threads: HandlerThreads) -> None:
    def clean_up_when_told() -> str:
        try:
            while True:
                threading.Event().wait(0.001)
        except SoftTimeLimitExceeded:
            return "cleaned up"

    assert await threads.run(clean_up_when_told, soft_time_limit=0.05) == "cleaned up"


async def test_an_uncaught_soft_limit_is_the_attempts_exception(threads: HandlerThreads) -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.wait(0.001):
            pass

    try:
        with pytest.raises(SoftTimeLimitExceeded):
            await threads.run(spin, soft_time_limit=0.05, time_limit=5)
    finally:
        stop.set()


async def test_hard_limit_stops_waiting_while_the_handler_keeps_going(
    threads: HandlerThreads,
) -> None:
    seen: list[str] = []
    stop = threading.Event()
    began = time.monotonic()

    try:
        with pytest.raises(TimeLimitExceeded):
            await threads.run(
                lambda: _wait_until_interrupted(seen, until=stop),
                soft_time_limit=0.05,
                time_limit=0.15,
            )
        assert time.monotonic() - began < 2
        for _ in range(500):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert seen == ["SoftTimeLimitExceeded", "TimeLimitExceeded"]
    finally:
        stop.set()


async def test_an_interrupted_thread_is_not_reused_and_exits(threads: HandlerThreads) -> None:
    def interrupted() -> threading.Thread:
        try:
            while True:
                threading.Event().wait(0.001)
        except SoftTimeLimitExceeded:
            return threading.current_thread()

    thread = await threads.run(interrupted, soft_time_limit=0.05)
    next_ones = {await threads.run(threading.current_thread) for _ in range(3)}

    assert thread not in next_ones
    thread.join(timeout=5)
    assert not thread.is_alive()


async def test_a_late_interrupt_in_an_idle_thread_does_not_break_the_next_attempt(
    threads: HandlerThreads,
) -> None:
    idle_ident = await threads.run(threading.get_ident)
    idle = _thread(idle_ident)
    # What the soft limit does when its timer fires just as the handler returns: the thread
    # is marked retired and the exception lands after it went back to waiting for work.
    (handler_thread,) = threads._idle
    handler_thread.retired = True
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(idle_ident), ctypes.py_object(SoftTimeLimitExceeded)
    )

    assert await threads.run(lambda: "fine") == "fine"
    assert await threads.run(threading.get_ident) != idle_ident
    idle.join(timeout=5)
    assert not idle.is_alive()


async def test_interrupts_landing_anywhere_never_lose_an_attempt(threads: HandlerThreads) -> None:
    """Soft limits as long as the handler: the interrupt lands in it, after it, or not at all."""

    def about_a_millisecond() -> str:
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        return "done"

    outcomes = set()
    for _ in range(200):
        try:
            outcomes.add(await threads.run(about_a_millisecond, soft_time_limit=0.001))
        except SoftTimeLimitExceeded:
            outcomes.add("interrupted")

    assert outcomes <= {"done", "interrupted"}
    assert await threads.run(lambda: "still fine") == "still fine"


async def test_close_lets_the_idle_threads_exit() -> None:
    threads = HandlerThreads()
    thread = _thread(await threads.run(threading.get_ident))

    threads.close()

    thread.join(timeout=5)
    assert not thread.is_alive()
