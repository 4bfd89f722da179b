"""The heartbeat and progress consumers: record what decodes, drop the rest, always ack.

Oversized bodies are dropped before the handler, by the size check ``consume_side_queue``
puts in front of it.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from structlog.testing import capture_logs
from structlog.typing import EventDict

from common import (
    STARTED_TYPE,
    ExecutorEvent,
    Heartbeat,
    ProgressMessage,
    PublishRejected,
    StartNotice,
    StartVerdict,
    Verdict,
    decode_verdict,
)
from common.pika_link import Channel, Incoming
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


async def _no_start(notice: StartNotice) -> StartVerdict:
    raise AssertionError("not a start notice")


class ReplyChannel:
    """Records what is published on it (verdicts)."""

    def __init__(self) -> None:
        self.published: list[tuple[bytes, str, Any]] = []

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, *, timeout: float
    ) -> None:
        assert exchange == ""  # the default exchange: the reply queue's name routes
        self.published.append((body, routing_key, properties))


def _replies() -> Channel:
    return cast(Channel, ReplyChannel())


class Delivery:
    """The part of an incoming message the handlers use."""

    def __init__(self, body: bytes, type: str = "t", reply_to: str | None = None) -> None:
        self.body = body
        self.type = type
        self.reply_to = reply_to
        self.message_id = "m-1"
        self.acks = 0

    async def ack(self) -> None:
        self.acks += 1


def _incoming(
    body: bytes, type: str = "t", reply_to: str | None = None
) -> tuple[Delivery, Incoming]:
    delivery = Delivery(body, type, reply_to)
    return delivery, cast(Incoming, delivery)


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
        progress_handler(record, _no_start, _replies()), log_oversized_progress, body
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
        progress_handler(broken, _no_start, _replies()), log_oversized_progress, body.encode()
    )

    assert delivery.acks == 1
    assert [line["event"] for line in logs] == ["side_message_dropped"]


def _verdict(notice: StartNotice) -> StartVerdict:
    return StartVerdict(
        task_id=notice.task_id, attempt=notice.attempt, verdict=Verdict.GIVE_UP, runs=6
    )


def _start_notice() -> StartNotice:
    return StartNotice(
        task_id=uuid.uuid4(),
        task_type="t",
        attempt=2,
        executor="e-1",
        delivery_limit=5,
        started_at=datetime.now(UTC),
    )


async def test_a_start_notice_is_told_by_its_type_and_counted() -> None:
    counted: list[StartNotice] = []

    async def record_start(notice: StartNotice) -> StartVerdict:
        counted.append(notice)
        return _verdict(notice)

    async def no_progress(report: ProgressMessage) -> bool:
        raise AssertionError("not a progress report")

    notice = _start_notice()
    delivery, message = _incoming(notice.model_dump_json().encode(), STARTED_TYPE)
    replies = ReplyChannel()
    await progress_handler(no_progress, record_start, cast(Channel, replies))(message)

    assert counted == [notice]
    assert delivery.acks == 1
    assert replies.published == []  # no reply_to: no verdict sent


async def test_a_start_notice_with_a_reply_to_gets_its_verdict_there() -> None:
    async def record_start(notice: StartNotice) -> StartVerdict:
        return _verdict(notice)

    notice = _start_notice()
    body = notice.model_dump_json().encode()
    delivery, message = _incoming(body, STARTED_TYPE, reply_to="wq.verdicts.e-1.abc")
    replies = ReplyChannel()
    await progress_handler(_no_start_progress, record_start, cast(Channel, replies))(message)

    ((reply, routing_key, properties),) = replies.published
    assert routing_key == "wq.verdicts.e-1.abc"
    assert properties.correlation_id == "m-1"
    assert decode_verdict(reply) == _verdict(notice)
    assert delivery.acks == 1


class GoneReplyQueue:
    """A publishing channel on which every verdict comes back unroutable."""

    async def publish(self, *_: Any, **__: Any) -> None:
        raise PublishRejected("unroutable", detail="no queue for 'wq.verdicts.e-1.abc'")


async def test_a_verdict_that_cannot_be_sent_is_logged_as_such_and_the_notice_acked() -> None:
    async def record_start(notice: StartNotice) -> StartVerdict:
        return _verdict(notice)

    body = _start_notice().model_dump_json().encode()
    delivery, message = _incoming(body, STARTED_TYPE, reply_to="wq.verdicts.e-1.abc")
    with capture_logs() as logs:
        await progress_handler(_no_start_progress, record_start, cast(Channel, GoneReplyQueue()))(
            message
        )

    assert delivery.acks == 1
    assert [line["event"] for line in logs] == ["start_recorded", "verdict_not_sent"]
    assert logs[1]["reply_to"] == "wq.verdicts.e-1.abc"


async def test_a_start_notice_that_does_not_decode_is_acked_and_logged() -> None:
    delivery, message = _incoming(b'{"task_id": "nope"}', STARTED_TYPE)
    with capture_logs() as logs:
        await progress_handler(_no_start_progress, _no_start, _replies())(message)

    assert delivery.acks == 1
    assert [line["event"] for line in logs] == ["progress_dropped"]


async def _no_start_progress(report: ProgressMessage) -> bool:
    raise AssertionError("not a progress report")
