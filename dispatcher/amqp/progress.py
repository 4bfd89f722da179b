"""Consuming the progress queue: decode, record the latest, ack (aio-pika).

Progress is advisory: a report that cannot be decoded or stored is dropped with a log line,
never requeued, so it cannot hold up the queue or the results.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage

from common import MessageError, ProgressMessage, StoreError, decode_progress
from common.logging import get_logger

log = get_logger(__name__)

RecordProgress = Callable[[ProgressMessage], Awaitable[bool]]


def progress_handler(
    record: RecordProgress,
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that records each report and acks it, whatever happens.

    It parses any body: ``consume_side_queue`` drops the oversized ones before it.
    """

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            report = decode_progress(message.body)
            recorded = await record(report)
        except (MessageError, StoreError) as exc:
            log.warning("progress_dropped", message_id=message.message_id, error=str(exc))
        else:
            log.debug(
                "progress_recorded" if recorded else "progress_ignored",
                task_id=str(report.task_id),
                percent=report.percent,
            )
        await message.ack()

    return on_message


def log_oversized_progress(message: AbstractIncomingMessage) -> None:
    """Log a report dropped unread for its size, as one that does not decode."""
    error = f"progress body of {len(message.body)} bytes is over the limit"
    log.warning("progress_dropped", message_id=message.message_id, error=error)
