"""Sending heartbeats to ``wq.executors``: at start, every interval, and at a clean stop.

Heartbeats are advisory: transient messages, and a failed send is logged and skipped, never
allowed to disturb the tasks. They are sent from the event loop, which handlers never block
(sync handlers run in threads), so a busy executor keeps reporting.
"""

from __future__ import annotations

import asyncio
import contextlib

from common import EXECUTOR_APP_ID, ExecutorEvent, WorkQueueError, encode, heartbeat_properties
from common.logging import get_logger
from common.pika_link import Channel
from executor.monitor import Monitor

log = get_logger(__name__)


class HeartbeatSender:
    """Publishes the monitor's heartbeats on a channel with publisher confirms."""

    def __init__(self, channel: Channel, monitor: Monitor, *, queue: str, timeout: float) -> None:
        self._channel = channel
        self._monitor = monitor
        self._queue = queue
        self._timeout = timeout

    async def send(self, event: ExecutorEvent) -> bool:
        """Send one heartbeat; False (and a warning) if the broker did not take it."""
        heartbeat = self._monitor.heartbeat(event)
        properties = heartbeat_properties(heartbeat, app_id=EXECUTOR_APP_ID)
        try:
            await self._channel.publish(
                "", self._queue, encode(heartbeat), properties, timeout=self._timeout
            )
        except WorkQueueError as exc:
            log.warning("heartbeat_not_sent", heartbeat_event=event.value, error=str(exc))
            return False
        log.debug(
            "heartbeat_sent", heartbeat_event=event.value, running=len(heartbeat.current_tasks)
        )
        return True

    async def run(self, interval: float) -> None:
        """Send a heartbeat every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.send(ExecutorEvent.HEARTBEAT)

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Cancel the periodic sender ``task``, then say goodbye."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.send(ExecutorEvent.STOPPED)
