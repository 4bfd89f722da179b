"""The heartbeat and progress consumers: record what decodes, drop the rest, always ack.

Oversized bodies are dropped before the handler, by the size check ``consume_side_queue``
puts in front of it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage
from structlog.testing import capture_logs
from structlog.typing import EventDict

from common import ExecutorEvent, Heartbeat, ProgressMessage
from dispatcher.amqp.side_queues import (
    Handler,
    Oversized,
    heartbeat_handler,
    log_oversized_heartbeat,
    log_oversized_progress,
    progress_handler,
    size_limited,
)

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


async def _behind_size_check(
    handler: Handler, oversized: Oversized, body: bytes, *, limit: int = LIMIT
) -> tuple[Delivery, list[EventDict]]:
    """Hand ``body`` to ``handler`` behind the size check of ``consume_side_queue``.

    Returns the delivery and what was logged.
    """
    delivery, message = _incoming(body)
    with capture_logs() as logs:
        await size_limited(handler, max_body_bytes=limit, oversized=oversized)(message)
    return delivery, logs


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
    await heartbeat_handler(record)(message)
    assert [h.executor for h in recorded] == ["e-1"]
    assert delivery.acks == 1


async def test_oversized_heartbeat_is_dropped_unparsed_and_acked() -> None:
    recorded: list[Heartbeat] = []

    async def record(heartbeat: Heartbeat) -> None:
        recorded.append(heartbeat)

    body = _heartbeat(host="h" * LIMIT)
    assert len(body) > LIMIT
    delivery, logs = await _behind_size_check(
        heartbeat_handler(record), log_oversized_heartbeat, body
    )
    assert recorded == []
    assert delivery.acks == 1
    error = f"heartbeat body of {len(body)} bytes is over the limit"
    assert logs == [{"event": "heartbeat_rejected", "error": error, "log_level": "warning"}]


async def test_a_heartbeat_of_exactly_the_limit_is_recorded() -> None:
    recorded: list[Heartbeat] = []

    async def record(heartbeat: Heartbeat) -> None:
        recorded.append(heartbeat)

    body = _heartbeat()
    delivery, _ = await _behind_size_check(
        heartbeat_handler(record), log_oversized_heartbeat, body, limit=len(body)
    )
    assert [h.executor for h in recorded] == ["e-1"]
    assert delivery.acks == 1


async def test_malformed_heartbeat_is_dropped_and_acked() -> None:
    async def record(heartbeat: Heartbeat) -> None:
        raise AssertionError("nothing to record")

    delivery, message = _incoming(b"{not json")
    await heartbeat_handler(record)(message)
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
    delivery, logs = await _behind_size_check(
        progress_handler(record), log_oversized_progress, body
    )
    assert recorded == []
    assert delivery.acks == 1
    error = f"progress body of {len(body)} bytes is over the limit"
    assert logs == [
        {"event": "progress_dropped", "message_id": "m-1", "error": error, "log_level": "warning"}
    ]


async def test_a_heartbeat_that_trips_a_bug_is_acked_and_logged_once() -> None:
    async def broken(heartbeat: Heartbeat) -> None:
        raise RuntimeError("a bug in recording")

    delivery, logs = await _behind_size_check(
        heartbeat_handler(broken), log_oversized_heartbeat, _heartbeat()
    )

    assert delivery.acks == 1
    assert [line["event"] for line in logs] == ["side_message_dropped"]


async def test_a_progress_report_that_trips_a_bug_is_acked_and_logged_once() -> None:
    async def broken(report: ProgressMessage) -> bool:
        raise RuntimeError("a bug in recording")

    body = ProgressMessage(
        task_id=uuid.uuid4(),
        task_type="t",
        executor="e-1",
        percent=5,
        reported_at=datetime.now(UTC),
    ).model_dump_json()

    delivery, logs = await _behind_size_check(
        progress_handler(broken), log_oversized_progress, body.encode()
    )

    assert delivery.acks == 1
    assert [line["event"] for line in logs] == ["side_message_dropped"]
