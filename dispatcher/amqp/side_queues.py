"""The advisory side queues, heartbeats and progress (with start notices), each on a channel.

A channel per queue: a flood on one cannot slow the results consumer, and its prefetch is its
own. Both are advisory and repeated: every message is acked whatever happens to it (one that
cannot be decoded or recorded is logged and dropped, never requeued), since the next one
supersedes it, so it can hold up neither the queue nor the results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping

from common import (
    DISPATCHER_APP_ID,
    STARTED_TYPE,
    Heartbeat,
    MessageError,
    ProgressMessage,
    StartNotice,
    StartVerdict,
    StoreError,
    WorkQueueError,
    decode_heartbeat,
    decode_progress,
    decode_start,
    encode,
    verdict_properties,
)
from common.logging import get_logger
from common.pika_link import Channel, Incoming, Link, OnMessage

log = get_logger(__name__)

Handler = OnMessage
# Logs a message dropped unread for its size, under the event its queue's handler logs for
# a message it cannot decode.
Oversized = Callable[[Incoming], None]
Stop = Callable[[], Awaitable[None]]

# The executor waits for a verdict only so long itself (``verdict_timeout``).
_REPLY_CONFIRM_TIMEOUT_S = 5.0


async def consume_side_queue(
    link: Link,
    name: str,
    arguments: Mapping[str, str | int],
    handler: Handler,
    *,
    max_body_bytes: int,
    oversized: Oversized,
    prefetch: int,
    consumer_tag: str,
) -> Stop:
    """Declare ``name`` with ``arguments`` and consume it with ``handler`` on a channel of its
    own; returns how to stop.

    A body over ``max_body_bytes`` never reaches ``handler``: ``oversized`` logs it, and it
    is acked. ``BrokerError`` if the broker is away.
    """
    channel = await link.channel()
    await channel.set_qos(prefetch_count=prefetch)
    await channel.declare_queue(name, durable=True, arguments=arguments)
    on_message = size_limited(handler, max_body_bytes=max_body_bytes, oversized=oversized)
    await channel.consume(name, on_message, consumer_tag=consumer_tag)

    async def stop() -> None:
        await channel.cancel(consumer_tag)
        await channel.close()

    return stop


def size_limited(handler: Handler, *, max_body_bytes: int, oversized: Oversized) -> Handler:
    """``handler`` for bodies up to ``max_body_bytes``; a larger one is logged and acked.

    Whatever ``handler`` raises, the message is acked (and the error logged once): left
    unacked, one message that trips a bug would hold the queue's prefetch for good, and be
    redelivered into the same bug at every restart.
    """

    async def on_message(message: Incoming) -> None:
        # Anyone with publish rights can write to the queue: size is checked before the body
        # is parsed, as for every other queue the dispatcher reads.
        if len(message.body) > max_body_bytes:
            oversized(message)
            await message.ack()
            return
        try:
            await handler(message)
        except Exception:
            log.exception("side_message_dropped", message_id=message.message_id)
            with contextlib.suppress(Exception):  # a lost channel has requeued it already
                await message.ack()

    return on_message


# Heartbeats, from wq.executors

RecordHeartbeat = Callable[[Heartbeat], Awaitable[None]]


def heartbeat_handler(
    record: RecordHeartbeat,
) -> Handler:
    """A consumer callback that records a heartbeat, then acks it whatever happened.

    It parses any body: ``consume_side_queue`` drops the oversized ones before it.
    """

    async def on_message(message: Incoming) -> None:
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


def log_oversized_heartbeat(message: Incoming) -> None:
    """Log a heartbeat dropped unread for its size, as one that does not decode."""
    error = f"heartbeat body of {len(message.body)} bytes is over the limit"
    log.warning("heartbeat_rejected", error=error)


# Progress reports and start notices, from wq.progress

RecordProgress = Callable[[ProgressMessage], Awaitable[bool]]
RecordStart = Callable[[StartNotice], Awaitable[StartVerdict]]


def progress_handler(
    record: RecordProgress, record_start: RecordStart, replies: Channel
) -> Handler:
    """A consumer callback that records each report or start notice and acks it, whatever.

    A start notice is told by its AMQP ``type``; one with a ``reply_to`` gets its verdict
    there, correlated by its ``message_id``, published on ``replies`` (a confirm channel of
    the publishing connection: a publish during a resource alarm blocks its whole
    connection, which must not be the one results arrive on). It parses any body:
    ``consume_side_queue`` drops the oversized ones before it.
    """

    async def on_message(message: Incoming) -> None:
        try:
            if message.type == STARTED_TYPE:
                notice = decode_start(message.body)
                verdict = await record_start(notice)
                log.debug(
                    "start_recorded", task_id=str(notice.task_id), verdict=verdict.verdict.value
                )
                if message.reply_to:
                    await _reply(replies, message, verdict)
            else:
                report = decode_progress(message.body)
                recorded = await record(report)
                log.debug(
                    "progress_recorded" if recorded else "progress_ignored",
                    task_id=str(report.task_id),
                    percent=report.percent,
                )
        except (MessageError, StoreError, WorkQueueError) as exc:
            log.warning("progress_dropped", message_id=message.message_id, error=str(exc))
        await message.ack()

    return on_message


async def _reply(replies: Channel, message: Incoming, verdict: StartVerdict) -> None:
    """Send ``verdict`` to the start notice's ``reply_to`` (an executor's own queue).

    The start is recorded already: a verdict that cannot be sent is logged as such, and the
    executor, having no answer, runs the task after its verdict timeout.
    """
    assert message.reply_to is not None
    properties = verdict_properties(message.message_id, app_id=DISPATCHER_APP_ID)
    try:
        await replies.publish(
            "", message.reply_to, encode(verdict), properties, timeout=_REPLY_CONFIRM_TIMEOUT_S
        )
    except WorkQueueError as exc:
        log.warning(
            "verdict_not_sent",
            task_id=str(verdict.task_id),
            reply_to=message.reply_to,
            error=str(exc),
        )


def log_oversized_progress(message: Incoming) -> None:
    """Log a report dropped unread for its size, as one that does not decode."""
    error = f"progress body of {len(message.body)} bytes is over the limit"
    log.warning("progress_dropped", message_id=message.message_id, error=error)
