"""Consuming executor heartbeats from ``wq.executors`` into the store (aio-pika).

Heartbeats are advisory and repeated every few seconds: one that cannot be decoded or
recorded is logged and dropped, never requeued, since the next one supersedes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from common import Heartbeat, MessageError, StoreError, decode_heartbeat
from common.logging import get_logger

log = get_logger(__name__)

RecordHeartbeat = Callable[[Heartbeat], Awaitable[None]]


def heartbeat_handler(
    record: RecordHeartbeat,
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that records a heartbeat, then acks it whatever happened.

    It parses any body: ``consume_side_queue`` drops the oversized ones before it.
    """

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            heartbeat = decode_heartbeat(message.body)
            await record(heartbeat)
        except MessageError as exc:
            log.warning("heartbeat_rejected", error=str(exc))
        except StoreError as exc:
            log.warning("heartbeat_not_recorded", error=str(exc))
        else:
            log.debug("heartbeat_recorded", executor=heartbeat.executor, kind=heartbeat.event.value)
        await message.ack()

    return on_message


def log_oversized_heartbeat(message: AbstractIncomingMessage) -> None:
    """Log a heartbeat dropped unread for its size, as one that does not decode."""
    error = f"heartbeat body of {len(message.body)} bytes is over the limit"
    log.warning("heartbeat_rejected", error=error)
