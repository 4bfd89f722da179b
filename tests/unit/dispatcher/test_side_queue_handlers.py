"""The heartbeat and progress consumers: record what decodes, drop the rest, always ack."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

from common import ExecutorEvent, Heartbeat, ProgressMessage
from dispatcher.heartbeats import heartbeat_handler
from dispatcher.progress import progress_handler

LIMIT = 4096


class Delivery:
    """The part of an incoming message the handlers use."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.message_id = "m-1"
        self.acks = 0

    async def ack(self) -> None:
        self.acks += 1


def _incoming(body: bytes) -> tuple[Delivery, AbstractIncomingMessage]:
    delivery = Delivery(body)
    return delivery, cast(AbstractIncomingMessage, delivery)


def _heartbeat(**changes: Any) -> bytes:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "event": ExecutorEvent.HEARTBEAT,
        "executor": "e-1",
        "host": "h",
        "pid": 1,
        "slots": 1,
        "started_at": now,
        "sent_at": now,
    }
    return Heartbeat(**(fields | changes)).model_dump_json().encode()


async def test_heartbeat_is_recorded_and_acked() -> None:
    recorded: list[Heartbeat] = []

    async def record(heartbeat: Heartbeat) -> None:
        recorded.append(heartbeat)

    delivery, message = _incoming(_heartbeat())
    await heartbeat_handler(record, max_body_bytes=LIMIT)(message)
    assert [h.executor for h in recorded] == ["e-1"]
    assert delivery.acks == 1


async def test_oversized_heartbeat_is_dropped_unparsed_and_acked() -> None:
    recorded: list[Heartbeat] = []

    async def record(heartbeat: Heartbeat) -> None:
        recorded.append(heartbeat)

    body = _heartbeat(host="h" * LIMIT)
    assert len(body) > LIMIT
    delivery, message = _incoming(body)
    await heartbeat_handler(record, max_body_bytes=LIMIT)(message)
    assert recorded == []
    assert delivery.acks == 1


async def test_malformed_heartbeat_is_dropped_and_acked() -> None:
    async def record(heartbeat: Heartbeat) -> None:
        raise AssertionError("nothing to record")

    delivery, message = _incoming(b"{not json")
    await heartbeat_handler(record, max_body_bytes=LIMIT)(message)
    assert delivery.acks == 1


async def test_oversized_progress_is_dropped_unparsed_and_acked() -> None:
    recorded: list[ProgressMessage] = []

    async def record(report: ProgressMessage) -> bool:
        recorded.append(report)
        return True

    # Padded past the limit with an unknown field: only the size check can refuse it.
    report = ProgressMessage(
        task_id=uuid.uuid4(),
        task_type="t",
        executor="e-1",
        percent=50,
        reported_at=datetime.now(UTC),
    ).model_dump(mode="json")
    body = json.dumps(report | {"padding": "p" * LIMIT}).encode()
    delivery, message = _incoming(body)
    await progress_handler(record, max_body_bytes=LIMIT)(message)
    assert recorded == []
    assert delivery.acks == 1
