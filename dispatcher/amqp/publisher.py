"""Publishing task messages (pipelined) and cancel notices with publisher confirms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from common import (
    DEFAULT_QUEUE,
    BrokerError,
    CancelNotice,
    PublishRejected,
    TaskMessage,
    Topology,
    WorkQueueError,
    cancel_properties,
    encode,
    task_properties,
)
from common.pika_link import Channel


class Publisher(Protocol):
    """Puts task messages on the task queue."""

    async def publish(self, tasks: Sequence[TaskMessage]) -> list[WorkQueueError | None]:
        """Publish and wait for every confirm; one entry per task, None where confirmed."""


class AmqpPublisher:
    """Publishes to the task exchange, keeping up to ``window`` confirms in flight.

    Each task goes to its ``queue``'s routing key; a named queue is declared (``declare``)
    before the first task is published to it, since ``mandatory`` refuses an unroutable one.
    """

    def __init__(
        self,
        channel: Channel,
        *,
        topology: Topology,
        declare: Callable[[str], Awaitable[object]],
        reply_to: str,
        app_id: str,
        confirm_timeout: float,
        window: int,
    ) -> None:
        self._channel = channel  # a confirm channel; tasks go to the topology's task exchange
        self._topology = topology
        self._declare = declare
        self._declared: set[str] = set()
        self._reply_to = reply_to
        self._app_id = app_id
        self._timeout = confirm_timeout
        self._window = asyncio.Semaphore(window)

    async def publish(self, tasks: Sequence[TaskMessage]) -> list[WorkQueueError | None]:
        # Waiting for each confirm before the next publish caps throughput at one round trip
        # per task; a window of outstanding confirms is several times faster (docs/benchmarks.md).
        return await asyncio.gather(*(self._publish_one(task) for task in tasks))

    async def _publish_one(self, task: TaskMessage) -> WorkQueueError | None:
        body = encode(task)
        properties = task_properties(task, reply_to=self._reply_to, app_id=self._app_id)
        routing_key = self._topology.routing_key_of(task.queue)
        async with self._window:
            try:
                if task.queue != DEFAULT_QUEUE:
                    await self._ensure_declared(task.queue)
                await self._channel.publish(
                    self._topology.task_exchange,
                    routing_key,
                    body,
                    properties,
                    timeout=self._timeout,
                )
            except PublishRejected as exc:
                exc.task_id = task.task_id
                return exc
            except WorkQueueError as exc:
                return exc
        return None

    async def _ensure_declared(self, queue: str) -> None:
        """Declare ``queue`` once (the robust channel re-declares it after a reconnect).

        Publishes racing to a new queue may each declare it: declaring is idempotent.
        """
        if queue in self._declared:
            return
        try:
            await self._declare(queue)
        except WorkQueueError:
            raise
        except Exception as exc:  # the channel or connection went away mid-declare
            raise BrokerError(f"cannot declare task queue {queue!r}: {exc!r}") from exc
        self._declared.add(queue)


class CancelPublisher(Protocol):
    """Appends cancel notices to the cancellation stream that every executor reads."""

    async def publish_cancel(self, notice: CancelNotice) -> None:
        """Publish and wait for the confirm; ``PublishRejected`` or ``BrokerError`` if not."""


class AmqpCancelPublisher:
    """Publishes cancel notices, persistent, with confirms and ``mandatory``."""

    def __init__(
        self, channel: Channel, *, stream: str, app_id: str, confirm_timeout: float
    ) -> None:
        self._channel = channel  # published to the default exchange: the stream's name routes
        self._stream = stream
        self._app_id = app_id
        self._timeout = confirm_timeout

    async def publish_cancel(self, notice: CancelNotice) -> None:
        properties = cancel_properties(notice, app_id=self._app_id)
        try:
            await self._channel.publish(
                "", self._stream, encode(notice), properties, timeout=self._timeout
            )
        except PublishRejected as exc:
            exc.task_id = notice.task_id
            raise
