"""A stub AMQP channel and delivery for the executor's settling code: no broker, every call kept.

``StubChannel`` stands in for an aio-pika channel with publisher confirms: each publish is kept
in ``events`` (with its exchange, routing key and message) or fails as the test asked, as a
real broker's nack, return or missing confirm would. ``StubDelivery`` is an incoming message
whose ack, nack and reject land in the same ``events`` list, so a test reads the order in which
a delivery was settled against what was published before it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq.exceptions

from common import TaskMessage, encode

Event = tuple[str, ...]


@dataclass
class Published:
    """One message a test's code published, and where to."""

    exchange: str
    routing_key: str
    message: aio_pika.Message


@dataclass
class StubChannel:
    """The parts of an aio-pika channel that the settler and admission use."""

    events: list[Event] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    # routing key -> the exception its publishes raise (the broker's nack, a return, ...)
    failures: dict[str, BaseException] = field(default_factory=dict)

    @property
    def default_exchange(self) -> StubExchange:
        return StubExchange(self, "")

    async def get_exchange(self, name: str, *, ensure: bool = True) -> StubExchange:
        return StubExchange(self, name)

    async def declare_queue(self, name: str, **_: Any) -> None:
        self.declared.append(name)

    def refuse(self, routing_key: str, how: str) -> None:
        """Make publishes to ``routing_key`` fail: ``nack``, ``unroutable`` or ``timeout``."""
        # A return carries the returned message; only its type matters to the code under test.
        returned = aiormq.exceptions.PublishError.__new__(aiormq.exceptions.PublishError)
        self.failures[routing_key] = {
            "nack": aiormq.exceptions.DeliveryError(None, None),  # type: ignore[arg-type]
            "unroutable": returned,
            "timeout": TimeoutError(),
        }[how]

    def published_to(self, routing_key: str) -> list[aio_pika.Message]:
        return [p.message for p in self.published if p.routing_key == routing_key]


@dataclass
class StubExchange:
    channel: StubChannel
    name: str

    async def publish(
        self, message: aio_pika.Message, routing_key: str, *, mandatory: bool, timeout: float
    ) -> None:
        assert mandatory, "every publish must be mandatory"
        failure = self.channel.failures.get(routing_key)
        if failure is not None:
            self.channel.events.append(("refused", routing_key))
            raise failure
        self.channel.events.append(("published", routing_key))
        self.channel.published.append(Published(self.name, routing_key, message))


@dataclass
class StubDelivery:
    """An incoming task message whose settlement is recorded in ``channel.events``."""

    channel: StubChannel
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = "wq.results"
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    timestamp: datetime | None = None
    app_id: str | None = "wq-dispatcher"
    priority: int | None = 0
    delivery_tag: int = 1
    consumer_tag: str | None = "wq.executor.test"
    routing_key: str | None = "task"
    fail_ack: bool = False

    async def ack(self, multiple: bool = False) -> None:
        if self.fail_ack:
            raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
        self.channel.events.append(("ack",))

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self.channel.events.append(("nack", "requeue" if requeue else "drop"))

    async def reject(self, requeue: bool = False) -> None:
        self.channel.events.append(("reject", "requeue" if requeue else "drop"))


def task_delivery(
    channel: StubChannel,
    task_type: str = "echo",
    params: dict[str, Any] | None = None,
    *,
    attempt: int = 1,
    redelivered: bool = False,
    headers: dict[str, Any] | None = None,
) -> StubDelivery:
    """A delivery of a valid task message, as a producer following docs/protocol.md sends it."""
    task = TaskMessage(
        task_id=uuid.uuid4(),
        task_type=task_type,
        params={"value": 1} if params is None else params,
        attempt=attempt,
        submitted_at=datetime(2026, 12, 1, 21, 0, tzinfo=UTC),
    )
    return StubDelivery(
        channel,
        encode(task),
        message_id=str(task.task_id),
        correlation_id=str(task.task_id),
        type=task_type,
        redelivered=redelivered,
        headers={"x-wq-attempt": attempt, **(headers or {})},
    )
