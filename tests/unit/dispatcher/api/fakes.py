"""Fakes and test task types the in-process API tests share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from pydantic import Field

from common import (
    BrokerError,
    CancelNotice,
    PublishRejected,
    TaskMessage,
    TaskRegistry,
    WorkQueueError,
)
from dispatcher.broker_monitor import QueueDepth

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

registry = TaskRegistry()


@registry.task()
def word_count(text: str, top: Annotated[int, Field(ge=1, le=10)] = 3) -> int:
    """Count the words of a text."""
    return len(text.split())


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[TaskMessage] = []
        self.refuse: Callable[[TaskMessage], bool] = lambda task: False

    async def publish(self, tasks: Sequence[TaskMessage]) -> list[WorkQueueError | None]:
        outcomes: list[WorkQueueError | None] = []
        for task in tasks:
            if self.refuse(task):
                outcomes.append(PublishRejected("timeout", task_id=task.task_id))
            else:
                self.published.append(task)
                outcomes.append(None)
        return outcomes


class FakeCancelPublisher:
    """Records cancel notices; while ``down``, fails as an unreachable broker would."""

    def __init__(self) -> None:
        self.notices: list[CancelNotice] = []
        self.down = False

    async def publish_cancel(self, notice: CancelNotice) -> None:
        if self.down:
            raise BrokerError("not connected to RabbitMQ")
        self.notices.append(notice)


class FakeBroker:
    def __init__(self) -> None:
        self.connected = True

    def is_connected(self) -> bool:
        return self.connected

    async def queue_depths(self) -> list[QueueDepth]:
        return [QueueDepth("wq.tasks", 3, 2)]


class Clock:
    """Each reading is one millisecond after the last: listing order is submission order."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def client_of(app: Any) -> httpx.AsyncClient:
    """An httpx client that calls ``app`` in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
