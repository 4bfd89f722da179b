"""Signal handling for long-running commands: first SIGTERM/SIGINT stops gently, second at once."""

from __future__ import annotations

import asyncio
import signal

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
