"""Fakes of the dispatcher's seams (publishers, the broker, an in-process HTTP client), and the
task module, time and result its unit tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import httpx
from pydantic import Field

from common import (
    CancelNotice,
    Outcome,
    PublishRejected,
    ResultMessage,
    TaskMessage,
    TaskRegistry,
    WorkQueueError,
)
from dispatcher.amqp.queue_depths import QueueDepth

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)

registry = TaskRegistry()


@registry.task()
def word_count(text: str, top: Annotated[int, Field(ge=1, le=10)] = 3) -> int:
    """Count the words of a text."""
    return len(text.split())


def succeeded(task_id: UUID) -> ResultMessage:
    """A ``word_count`` result for ``task_id``, started and finished at ``NOW``."""
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=Outcome.SUCCEEDED,
        result=2,
        executor="e1",
        started_at=NOW,
        finished_at=NOW,
    )


class FakePublisher:
    """Records what it is asked to publish; refuses the tasks ``refuse`` picks."""

    def __init__(self) -> None:
        self.published: list[TaskMessage] = []
        self.batches: list[int] = []
        self.refuse: Callable[[TaskMessage], bool] = lambda task: False

    async def publish(self, tasks: Sequence[TaskMessage]) -> list[WorkQueueError | None]:
        self.batches.append(len(tasks))
        outcomes: list[WorkQueueError | None] = []
        for task in tasks:
            if self.refuse(task):
                outcomes.append(PublishRejected("nack", task_id=task.task_id))
            else:
                self.published.append(task)
                outcomes.append(None)
        return outcomes


class FakeCancelPublisher:
    """Records cancel notices; raises ``fail`` instead while it is set."""

    def __init__(self) -> None:
        self.notices: list[CancelNotice] = []
        self.fail: WorkQueueError | None = None

    async def publish_cancel(self, notice: CancelNotice) -> None:
        if self.fail is not None:
            raise self.fail
        self.notices.append(notice)


class FakeBroker:
    def __init__(self) -> None:
        self.connected = True
        self.flowing = True

    def is_connected(self) -> bool:
        return self.connected

    def results_flowing(self) -> bool:
        return self.flowing

    async def queue_depths(self, task_queues: Iterable[str] = ()) -> list[QueueDepth]:
        return [
            QueueDepth("wq.tasks", 3, 2),
            *(QueueDepth(f"wq.tasks.{q}", 0, 1) for q in task_queues),
        ]


def client_of(app: Any) -> httpx.AsyncClient:
    """An httpx client that calls ``app`` in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
