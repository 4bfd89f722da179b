"""Running sync handlers off the event loop, with soft and hard time limits.

One daemon thread per attempt rather than a pool: a handler abandoned at its hard limit keeps
no pool slot and cannot keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
from collections.abc import Callable
from typing import Any

from common import SoftTimeLimitExceeded, TimeLimitExceeded


async def run_in_thread(
    fn: Callable[[], Any],
    *,
    soft_time_limit: float | None = None,
    time_limit: float | None = None,
) -> Any:
    """Run ``fn`` in a new thread and await its value.

    At ``soft_time_limit`` the thread gets ``SoftTimeLimitExceeded`` raised inside it; at
    ``time_limit`` it gets ``TimeLimitExceeded`` too, and this coroutine stops waiting and
    raises ``TimeLimitExceeded`` whether or not the thread has stopped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()  # log lines in the handler keep the task id

    def target() -> None:
        try:
            value = context.run(fn)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, value, None)

    thread = threading.Thread(target=target, name="wq-task", daemon=True)
    thread.start()
    soft = (
        loop.call_later(soft_time_limit, _interrupt, thread, future, SoftTimeLimitExceeded)
        if soft_time_limit is not None
        else None
    )
    try:
        async with asyncio.timeout(time_limit):
            return await asyncio.shield(future)
    except TimeoutError:
        _interrupt(thread, future, TimeLimitExceeded)
        raise TimeLimitExceeded(time_limit or 0) from None
    finally:
        if soft is not None:
            soft.cancel()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _interrupt(
    thread: threading.Thread, future: asyncio.Future[Any], error: type[BaseException]
) -> None:
    """Raise ``error`` inside ``thread`` at its next bytecode, unless it already finished."""
    if future.done() or thread.ident is None or not thread.is_alive():
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(error)
    )
