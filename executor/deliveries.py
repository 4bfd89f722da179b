"""Message-level AMQP plumbing of the executor: the quorum run count, dead-letter copies.

Pure functions from an incoming message's properties to the outgoing message's; the consumer
publishes them.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from common import DELIVERY_COUNT_HEADER

# Headers RabbitMQ adds when dead-lettering; a fresh copy starts without them.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")  # fmt: skip


def quorum_run_number(headers: dict[str, Any] | None) -> int:
    """Which run this delivery is on a quorum queue, which counts returns itself."""
    returned = (headers or {}).get(DELIVERY_COUNT_HEADER)
    return (returned if type(returned) is int and returned >= 0 else 0) + 1


def copy_message(
    message: AbstractIncomingMessage,
    *,
    headers: dict[str, Any] | None = None,
) -> aio_pika.Message:
    """A persistent copy of ``message`` with the same identity, for republishing."""
    merged = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
    merged.update(headers or {})
    return aio_pika.Message(
        message.body,
        headers=merged,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        type=message.type,
        reply_to=message.reply_to,
        timestamp=message.timestamp,
        app_id=message.app_id,
        # A dead-letter copy keeps the task's priority, for its replay.
        priority=message.priority,
    )
