"""Message-level AMQP plumbing of the executor: the quorum run count, dead-letter copies.

Pure functions from an incoming message's properties to the outgoing message's; the consumer
publishes them.
"""

from __future__ import annotations

from typing import Any

from pika.spec import BasicProperties

from common import DELIVERY_COUNT_HEADER, PERSISTENT, MessageProperties
from common.pika_link import Incoming
from common.pika_properties import timestamp_of

# Headers RabbitMQ adds when dead-lettering; a fresh copy starts without them.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")  # fmt: skip


def quorum_run_number(headers: dict[str, Any] | None) -> int:
    """Which run this delivery is on a quorum queue, which counts returns itself."""
    returned = (headers or {}).get(DELIVERY_COUNT_HEADER)
    return (returned if type(returned) is int and returned >= 0 else 0) + 1


def copy_message(
    message: Incoming,
    *,
    headers: dict[str, Any] | None = None,
) -> tuple[bytes, MessageProperties]:
    """A persistent copy of ``message`` with the same identity, for republishing."""
    original: BasicProperties = message.properties
    merged = {k: v for k, v in (original.headers or {}).items() if k not in _BROKER_HEADERS}
    merged.update(headers or {})
    return message.body, MessageProperties(
        headers=merged,
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        delivery_mode=PERSISTENT,
        message_id=original.message_id,
        correlation_id=original.correlation_id,
        type=original.type,
        reply_to=original.reply_to,
        timestamp=timestamp_of(original),
        app_id=original.app_id,
        # A dead-letter copy keeps the task's priority, for its replay.
        priority=original.priority,
    )
