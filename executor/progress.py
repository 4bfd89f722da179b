"""Progress reports: from a handler's task context to the progress queue (aio-pika).

Progress is advisory: reports are transient, published without waiting on the task, and a
lost one is only a stale percentage. The context rate-limits them before they reach the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from common import (
    EXECUTOR_APP_ID,
    ProgressMessage,
    ProgressUpdate,
    TaskContext,
    WorkQueueError,
    encode,
    progress_properties,
)
from common.logging import get_logger
from common.pika_link import Publish
from executor.jobs import Job

log = get_logger(__name__)


class ProgressReporter:
    """Builds each attempt's task context and publishes the progress it reports."""

    def __init__(self, publish: Publish, *, queue: str, executor: str) -> None:
        self._publish = publish
        self._queue = queue
        self._executor = executor
        # Publishes in flight, referenced so that they are not garbage-collected.
        self._sends: set[asyncio.Task[None]] = set()

    def context_for(self, job: Job) -> TaskContext:
        """The attempt's context; reports cross from the handler's thread to the loop."""
        loop = asyncio.get_running_loop()

        def report(update: ProgressUpdate) -> None:
            loop.call_soon_threadsafe(self._send, job, update)

        def schedule(delay: float, flush: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(loop.call_later, delay, flush)

        return TaskContext(job.task.task_id, job.task.attempt, report=report, schedule=schedule)

    def _send(self, job: Job, update: ProgressUpdate) -> None:
        report = ProgressMessage(
            task_id=job.task.task_id,
            task_type=job.task.task_type,
            attempt=job.task.attempt,
            executor=self._executor,
            percent=update.percent,
            note=update.note,
            reported_at=datetime.now(UTC),
        )
        send = asyncio.create_task(self._publish_one(report))
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)

    async def _publish_one(self, report: ProgressMessage) -> None:
        properties = progress_properties(report, app_id=EXECUTOR_APP_ID)
        try:
            await self._publish("", self._queue, encode(report), properties)
        except WorkQueueError as exc:
            # Advisory: the task's outcome does not depend on it, and the next report may land.
            log.warning("progress_not_published", task_id=str(report.task_id), error=str(exc))
