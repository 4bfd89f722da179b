"""Message-level AMQP plumbing of the executor: copies for retry and dead-letter queues.

Pure functions from an incoming message's properties to the outgoing message's; the consumer
publishes them.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from common import DELIVERIES_HEADER, DELIVERY_COUNT_HEADER

# Headers RabbitMQ adds when dead-lettering; a fresh copy starts without them.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")  # fmt: skip


def run_number(headers: dict[str, Any] | None, *, redelivered: bool) -> int:
    """Which run of the task this delivery would be (1 for a fresh task).

    Classic queues do not count redeliveries, so an executor that receives a redelivered
    message does not run it: it republishes a copy whose ``x-wq-deliveries`` header counts
    the runs that may already have happened (the earlier deliveries that were not settled),
    and acks the original. A handler that kills its executor therefore uses up its runs.
    """
    counted = (headers or {}).get(DELIVERIES_HEADER)
    earlier = counted if type(counted) is int and counted >= 0 else 0  # bool is no count
    return earlier + 1 + (1 if redelivered else 0)


def quorum_run_number(headers: dict[str, Any] | None) -> int:
    """Which run this delivery is on a quorum queue, which counts returns itself."""
    returned = (headers or {}).get(DELIVERY_COUNT_HEADER)
    return (returned if type(returned) is int and returned >= 0 else 0) + 1


def copy_message(
    message: AbstractIncomingMessage,
    *,
    body: bytes | None = None,
    headers: dict[str, Any] | None = None,
    expiration_s: float | None = None,
) -> aio_pika.Message:
    """A persistent copy of ``message`` with the same identity, for republishing."""
    merged = {k: v for k, v in (message.headers or {}).items() if k not in _BROKER_HEADERS}
    merged.update(headers or {})
    return aio_pika.Message(
        message.body if body is None else body,
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
        # Retries, counted redeliveries and dead-letter copies keep the task's priority.
        priority=message.priority,
        expiration=expiration_s,
    )
