"""A stub AMQP channel and delivery for the executor's settling code: no broker, every call kept.

``StubChannel`` stands in for the executor's confirm channel (``common.pika_link.Channel``):
each publish is kept in ``events`` (with its exchange, routing key and message) or fails as
the test asked, as a real broker's nack, return or missing confirm would. ``StubDelivery`` is
an incoming message whose ack, nack and reject land in the same ``events`` list, so a test
reads the order in which a delivery was settled against what was published before it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pika.spec import BasicProperties

from common import BrokerError, MessageProperties, PublishRejected, TaskMessage, encode

Event = tuple[str, ...]


@dataclass
class Published:
    """One message a test's code published, and where to."""

    exchange: str
    routing_key: str
    message: Sent


@dataclass
class Sent:
    """A published body and its properties (read as the message's attributes)."""

    body: bytes
    properties: MessageProperties

    def __getattr__(self, name: str) -> Any:
        return getattr(self.properties, name)


@dataclass
class StubChannel:
    """The parts of the executor's channel that the settler and admission use."""

    events: list[Event] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)
    # routing key -> the exception its publishes raise (the broker's nack, a return, ...)
    failures: dict[str, BaseException] = field(default_factory=dict)

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: MessageProperties,
        *,
        timeout: float,
    ) -> None:
        failure = self.failures.get(routing_key)
        if failure is not None:
            self.events.append(("refused", routing_key))
            raise failure
        self.events.append(("published", routing_key))
        self.published.append(Published(exchange, routing_key, Sent(body, properties)))

    async def declare_queue(self, name: str, **_: Any) -> None:
        self.declared.append(name)

    def refuse(self, routing_key: str, how: str) -> None:
        """Make publishes to ``routing_key`` fail: ``nack``, ``unroutable`` or ``timeout``."""
        self.failures[routing_key] = PublishRejected(how, detail="refused by the test")

    def published_to(self, routing_key: str) -> list[Sent]:
        return [p.message for p in self.published if p.routing_key == routing_key]


@dataclass
class StubDelivery:
    """An incoming task message whose settlement is recorded in ``channel.events``."""

    channel: StubChannel
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    type: str | None = None
    redelivered: bool = False
    headers: dict[str, Any] | None = field(default_factory=dict)
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

    @property
    def properties(self) -> BasicProperties:
        stamp = self.timestamp
        return BasicProperties(
            content_type=self.content_type,
            content_encoding=self.content_encoding,
            headers=self.headers,
            priority=self.priority,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            message_id=self.message_id,
            timestamp=None if stamp is None else int(stamp.timestamp()),
            type=self.type,
            app_id=self.app_id,
        )

    async def ack(self, multiple: bool = False) -> None:
        if self.fail_ack:
            raise BrokerError("the delivery's channel is gone (the broker requeued it)")
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
