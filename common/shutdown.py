"""Signal handling for long-running commands: first SIGTERM/SIGINT stops gently, second at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from common.errors import WorkQueueError
from common.logging import get_logger

log = get_logger(__name__)


def install_stop_handlers(stop: asyncio.Event) -> None:
    """Set ``stop`` on the first SIGTERM or SIGINT; cancel the running task on the second."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("shutdown_requested", signal=name)
            stop.set()
        elif main_task is not None:
            log.warning("shutdown_forced", signal=name)
            main_task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


# Longest a shutdown step that talks to the broker may take: a stop must not wait for a
# broker that is away (a container is killed after its grace period).
SHUTDOWN_STEP_TIMEOUT_S = 3.0


class Connection(Protocol):
    """What a shutdown step needs to know of a client's robust connection."""

    @property
    def is_closed(self) -> bool: ...

    async def close(self) -> object: ...


async def while_reachable(
    step: Callable[[], Awaitable[object]],
    *,
    connection: Connection,
    what: str,
    errors: tuple[type[Exception], ...] = (WorkQueueError,),
    timeout: float = SHUTDOWN_STEP_TIMEOUT_S,
) -> None:
    """Run a shutdown ``step`` that talks to the broker, unless the broker is away.

    Skipped at once while ``connection`` is reconnecting or closed, bounded by ``timeout``
    otherwise, and never raising the client's ``errors``: what the step would have told the
    broker, the broker learns from the closed connection anyway (a cancelled consumer,
    requeued deliveries).
    """
    if connection.is_closed or getattr(connection, "reconnecting", False):
        log.info("shutdown_step_skipped", step=what, reason="broker unreachable")
        return
    try:
        async with asyncio.timeout(timeout):
            await step()
    except TimeoutError:
        log.warning("shutdown_step_skipped", step=what, reason=f"no answer in {timeout:g}s")
    except errors as exc:
        log.info("shutdown_step_skipped", step=what, reason=str(exc) or type(exc).__name__)


async def close_quickly(
    connection: Connection, *, what: str, errors: tuple[type[Exception], ...] = ()
) -> None:
    """Close ``connection`` (ending any reconnect loop) within ``SHUTDOWN_STEP_TIMEOUT_S``."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_TIMEOUT_S):
            await connection.close()
    except TimeoutError:
        log.warning("shutdown_step_skipped", step=f"close {what}", reason="no answer")
    except errors as exc:
        log.info("shutdown_step_skipped", step=f"close {what}", reason=type(exc).__name__)
