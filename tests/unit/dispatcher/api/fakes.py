"""Fakes and test task types the in-process API tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from dispatcher.amqp.queue_depths import QueueDepth
from tests.unit.dispatcher.fakes import (
    FakeCancelPublisher,
    FakePublisher,
    registry,
    succeeded,
    word_count,
)

__all__ = ["FakeCancelPublisher", "FakePublisher", "registry", "succeeded", "word_count"]

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


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
