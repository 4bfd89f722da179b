"""Which tasks are cancelled: the executor's reading of the cancellation stream.

Every executor reads the whole stream from its first retained notice (a stream is read, not
consumed, so each executor sees every notice), keeps the cancelled task ids in memory, and
tells the running attempts of those tasks. Before consuming tasks it catches up: it appends a
marker of its own and waits until it reads it back, so every notice published before it
started, while it was offline, is known before its first task.
https://www.rabbitmq.com/docs/streams#consuming
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from uuid import UUID, uuid4

from common import (
    CANCEL_TYPE,
    EXECUTOR_APP_ID,
    MARKER_TYPE,
    BrokerError,
    CancelNotice,
    MessageError,
    MessageProperties,
    PublishRejected,
    TaskContext,
    Topology,
    check_body_size,
    decode_cancel,
    marker_properties,
)
from common.logging import get_logger
from common.pika_link import Incoming, Link, Publish

log = get_logger(__name__)

# Stream consumers must have a prefetch; notices are small, so read them in large windows.
_PREFETCH = 500
# Credit goes back with one ``multiple`` ack per this many notices rather than one per notice:
# a week of notices is read at every start-up, and per-message acks were a third of its cost.
_ACK_EVERY = _PREFETCH // 5
# Waits before consuming the stream again when it cannot be consumed yet (about 30 s in all).
_CONSUME_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


class Cancellations:
    """The set of cancelled task ids, and the contexts of the attempts running now."""

    def __init__(self, *, executor: str, max_body_bytes: int) -> None:
        self._executor = executor
        self._max_body_bytes = max_body_bytes
        # Per cancelled task, the last attempt cancelled (None: every attempt).
        self._cancelled: dict[UUID, int | None] = {}
        self._running: dict[UUID, list[tuple[int, TaskContext]]] = {}
        self._markers: dict[str, asyncio.Event] = {}
        self._read = 0  # stream messages read so far: how catching up shows progress
        self._caught_up = False

    def is_cancelled(self, task_id: UUID, attempt: int) -> bool:
        """Whether a cancel read from the stream covers ``attempt`` of ``task_id``."""
        if task_id not in self._cancelled:
            return False
        last = self._cancelled[task_id]
        return last is None or attempt <= last

    @contextmanager
    def tracking(self, task_id: UUID, attempt: int, context: TaskContext) -> Iterator[TaskContext]:
        """Tell ``context`` when its attempt is cancelled while the block runs."""
        contexts = self._running.setdefault(task_id, [])
        entry = (attempt, context)
        contexts.append(entry)
        if self.is_cancelled(task_id, attempt):
            context.cancel()
        try:
            yield context
        finally:
            contexts.remove(entry)
            if not contexts:
                del self._running[task_id]

    def note(self, notice: CancelNotice) -> None:
        """Remember a cancel; a running attempt it covers is told at once."""
        known = notice.task_id in self._cancelled
        last = self._cancelled.get(notice.task_id)
        if known and (last is None or (notice.attempt is not None and notice.attempt <= last)):
            return  # covered already
        self._cancelled[notice.task_id] = notice.attempt
        running = [
            context
            for attempt, context in self._running.get(notice.task_id, [])
            if self.is_cancelled(notice.task_id, attempt)
        ]
        for context in running:
            context.cancel()
        # While catching up, the backlog of notices is summed up in one line at its end.
        log_line = log.info if self._caught_up or running else log.debug
        log_line(
            "task_cancel_received",
            task_id=str(notice.task_id),
            executor=self._executor,
            running=bool(running),
        )

    async def follow(
        self,
        connection: Link,
        topology: Topology,
        *,
        publish: Publish,
        timeout: float,
        stop: asyncio.Event,
    ) -> bool:
        """Read the stream from its start; True once caught up with its end, False if stopped.

        The robust channel re-consumes from the start after a reconnect: reading a notice
        twice changes nothing. A stream another client is still creating (``stream_not_found``,
        seen as ``INTERNAL_ERROR``) is tried again with backoff; publishing blocked by a memory
        or disk alarm is waited out, however long it lasts, until ``stop`` is set.

        Raises:
            BrokerError: the stream could not be consumed after every retry, or reading it
                stalled before the marker.
        """
        for delay in (*_CONSUME_BACKOFF_S, None):
            try:
                await self._consume(connection, topology)
                break
            except BrokerError as exc:
                if delay is None:
                    raise BrokerError(f"cannot read {topology.cancel_stream}: {exc}") from exc
                log.warning(
                    "cancellations_retrying",
                    stream=topology.cancel_stream,
                    error=str(exc),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
        return await self._catch_up(topology, publish=publish, timeout=timeout, stop=stop)

    async def _consume(self, connection: Link, topology: Topology) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=_PREFETCH)
        await channel.declare_queue(
            topology.cancel_stream,
            durable=True,
            arguments=dict(topology.cancel_stream_arguments()),
        )
        await channel.consume(
            topology.cancel_stream,
            self._on_message,
            consumer_tag=f"wq.executor.{self._executor}.cancellations",
            arguments={"x-stream-offset": "first"},
        )

    async def _catch_up(
        self, topology: Topology, *, publish: Publish, timeout: float, stop: asyncio.Event
    ) -> bool:
        marker = f"{self._executor}.{uuid4()}"
        seen = self._markers[marker] = asyncio.Event()
        properties = marker_properties(marker, at=datetime.now(UTC), app_id=EXECUTOR_APP_ID)
        try:
            if not await self._publish_marker(topology, publish, properties, stop):
                return False
            await self._read_until(seen, stalled_after=timeout)
        except (BrokerError, TimeoutError) as exc:
            log.error("cancellations_unavailable", stream=topology.cancel_stream, error=str(exc))
            raise BrokerError(
                f"could not read {topology.cancel_stream} to its end (nothing read for "
                f"{timeout:g}s); not consuming tasks, since a cancelled one could run"
            ) from exc
        finally:
            del self._markers[marker]
        self._caught_up = True
        log.info("cancellations_caught_up", cancelled=len(self._cancelled), read=self._read)
        return True

    async def _publish_marker(
        self,
        topology: Topology,
        publish: Publish,
        properties: MessageProperties,
        stop: asyncio.Event,
    ) -> bool:
        """Append the marker; an unconfirmed one (an alarm) is sent again until it lands."""
        while not stop.is_set():
            try:
                await publish("", topology.cancel_stream, b"{}", properties)
                return True
            except PublishRejected as exc:
                if exc.reason != "timeout":
                    raise
                # A memory or disk alarm blocks every publisher until it clears: wait for it
                # rather than exit and be restarted into the same alarm.
                log.warning(
                    "cancellations_waiting",
                    reason="publishing is blocked (a memory or disk alarm?): waiting for it "
                    "to clear before consuming tasks",
                )
        return False

    async def _read_until(self, seen: asyncio.Event, *, stalled_after: float) -> None:
        """Wait for ``seen`` while the stream is being read; ``TimeoutError`` once it stalls.

        A long stream takes as long as it takes: only a reader that reads nothing for
        ``stalled_after`` seconds gives up. The marker sits at a fixed offset, so progress
        always ends.
        """
        while not seen.is_set():
            read_before = self._read
            try:
                async with asyncio.timeout(stalled_after):
                    await seen.wait()
            except TimeoutError:
                if self._read == read_before:
                    raise

    async def _on_message(self, message: Incoming) -> None:
        self._read += 1
        if message.type == CANCEL_TYPE:
            self._read_notice(message)
        elif message.type == MARKER_TYPE and message.message_id in self._markers:
            self._markers[message.message_id].set()
        # Acks only return credit to a stream consumer (the notice stays in the stream), so
        # one ``multiple`` ack per batch does; the tail of a batch keeps the rest of the credit.
        if message.delivery_tag % _ACK_EVERY == 0:
            # A channel gone meanwhile is consumed again from the stream's start.
            with contextlib.suppress(BrokerError):
                await message.ack(multiple=True)

    def _read_notice(self, message: Incoming) -> None:
        try:
            check_body_size(message.body, self._max_body_bytes, what="cancel notice")
            self.note(decode_cancel(message.body))
        except MessageError as exc:
            log.warning("cancel_notice_rejected", message_id=message.message_id, error=str(exc))
        except Exception:
            # A bug, not bad input: skip the notice rather than stop reading the stream, which
            # would keep every later cancel from every executor that reads it.
            log.exception("cancel_notice_rejected", message_id=message.message_id)
