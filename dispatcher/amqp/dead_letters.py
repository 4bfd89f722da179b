"""The dead-letter queue as operators use it: list, replay and purge.

Listing takes messages without acking them and returns them all at the end, so nothing
leaves the queue; a replay publishes the next attempt of the same task id and only then
acks the dead copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

from common import (
    DEFAULT_QUEUE,
    BrokerError,
    DeadLetterHeaders,
    MessageError,
    TaskMessage,
    Topology,
    decode_task,
    encode,
    task_id_from_properties,
    task_properties,
)
from common.pika_link import Channel, Incoming, Link, declare_task_queue
from dispatcher.store.protocol import TaskStore


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message in the dead-letter queue, as an operator reads it."""

    task_id: UUID | None
    task_type: str | None
    reason: str
    error_kind: str | None
    error: str | None
    attempts: int | None
    dead_at: str | None
    # The broker queue it was dead-lettered from (wq.tasks, wq.tasks.reports, ...).
    original_queue: str | None = None


def describe(message: Incoming) -> DeadLetter:
    """What a dead message says about itself (our headers, else RabbitMQ's x-death)."""
    reasons = DeadLetterHeaders.from_headers(message.headers or {})
    return DeadLetter(
        task_id=task_id_from_properties(message.message_id, message.correlation_id),
        task_type=message.type,
        reason=str(reasons.reason or "rejected by the broker (see x-death)"),
        error_kind=reasons.error_kind,
        error=reasons.error,
        attempts=reasons.attempts,
        dead_at=reasons.dead_at,
        original_queue=reasons.original_queue,
    )


async def list_dead(channel: Channel, topology: Topology, *, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead messages, oldest first; the queue is left as it was."""
    held: list[Incoming] = []
    try:
        while len(held) < limit:
            message = await channel.get(topology.task_dead_queue)
            if message is None:
                break
            held.append(message)
        return [describe(message) for message in held]
    finally:
        # Requeued messages go back to their original positions in the queue.
        for message in reversed(held):
            await message.nack(requeue=True)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay did."""

    replayed: list[UUID]
    skipped: list[str]


async def replay(
    channel: Channel,
    topology: Topology,
    store: TaskStore,
    *,
    task_ids: Sequence[UUID] | None,
    reply_to: str,
    app_id: str,
    confirm_timeout: float,
    progress: Callable[[int], object] | None = None,
    via: str = "cli",
) -> ReplayReport:
    """Publish the next attempt of dead tasks (all, or those in ``task_ids``), then ack them.

    A message whose body is not a valid task cannot be replayed and stays in the queue.
    """
    wanted = set(task_ids) if task_ids is not None else None
    # Visit each message at most once: the ones kept are unacked and do not come back.
    remaining = await _dead_count(channel, topology)
    kept: list[Incoming] = []
    report = ReplayReport(replayed=[], skipped=[])
    replay_one = partial(
        _replay_one,
        channel,
        topology,
        store,
        reply_to=reply_to,
        app_id=app_id,
        confirm_timeout=confirm_timeout,
        cause=f"replayed from the dead letters ({via})",
    )
    try:
        for _ in range(remaining):
            message = await channel.get(topology.task_dead_queue)
            if message is None:
                break
            task = _replayable(message, wanted, report, topology)
            if task is None:
                kept.append(message)
                continue
            replayed = await replay_one(message, task)
            if replayed is None:
                kept.append(message)
                report.skipped.append(
                    f"{task.task_id}: not dead in the task store any more (retried by hand, or "
                    "another copy of it ran): left in the queue"
                )
                continue
            report.replayed.append(replayed)
            if progress is not None:
                progress(1)
    finally:
        for message in reversed(kept):
            await message.nack(requeue=True)
    return report


async def _replay_one(
    channel: Channel,
    topology: Topology,
    store: TaskStore,
    message: Incoming,
    task: TaskMessage,
    *,
    reply_to: str,
    app_id: str,
    confirm_timeout: float,
    cause: str,
) -> UUID | None:
    """Record, publish and mark queued the task's next attempt, then ack the dead copy.

    None, with nothing published, when the store says the task is no longer dead.
    """
    retry = task.model_copy(update={"attempt": task.attempt + 1})
    # Recorded before it is published, as a submission is: a fast result must find
    # the task open, not still dead (it would be ignored as a duplicate).
    if not await store.record_replay(retry, datetime.now(UTC), cause=cause):
        return None
    properties = task_properties(retry, reply_to=message.reply_to or reply_to, app_id=app_id)
    if retry.queue != DEFAULT_QUEUE:  # back to its own queue, which may have been deleted
        await declare_task_queue(channel, topology, retry.queue)
    await channel.publish(
        topology.task_exchange,
        topology.routing_key_of(retry.queue),
        encode(retry),
        properties,
        timeout=confirm_timeout,
    )
    await store.mark_queued([retry.task_id], datetime.now(UTC))
    await message.ack()
    return retry.task_id


def _replayable(
    message: Incoming,
    wanted: set[UUID] | None,
    report: ReplayReport,
    topology: Topology,
) -> TaskMessage | None:
    task_id = task_id_from_properties(message.message_id, message.correlation_id)
    if wanted is not None and task_id not in wanted:
        return None
    try:
        task = decode_task(message.body)
    except MessageError as exc:
        report.skipped.append(f"{task_id or message.message_id}: not a valid task ({exc})")
        return None
    # The queue it was dead-lettered from (an unknown or missing name: the default queue).
    original = DeadLetterHeaders.from_headers(message.headers or {}).original_queue
    return task.model_copy(update={"queue": topology.queue_named(original) or DEFAULT_QUEUE})


async def purge(
    channel: Channel, topology: Topology, task_ids: Sequence[UUID] | None = None
) -> int:
    """Delete every dead message, or only those of ``task_ids``; returns how many."""
    if task_ids is None:
        return await channel.purge(topology.task_dead_queue)
    wanted = set(task_ids)
    remaining = await _dead_count(channel, topology)
    kept: list[Incoming] = []
    purged = 0
    try:
        # Each message visited once, as a replay does: the kept ones stay unacked until the end.
        for _ in range(remaining):
            message = await channel.get(topology.task_dead_queue)
            if message is None:
                break
            if task_id_from_properties(message.message_id, message.correlation_id) in wanted:
                await message.ack()
                purged += 1
            else:
                kept.append(message)
    finally:
        for message in reversed(kept):
            await message.nack(requeue=True)
    return purged


async def _dead_count(channel: Channel, topology: Topology) -> int:
    counts = await channel.inspect_queue(topology.task_dead_queue)
    if counts is None:  # the 404 closed the channel
        raise BrokerError(f"the dead-letter queue {topology.task_dead_queue} does not exist")
    return counts.messages


class DeadLetterDesk:
    """The dead-letter queue's operations for ``dispatcher serve``'s HTTP API.

    Each runs on a channel of its own, on a connection the dispatcher already holds, one at
    a time: a listing holds the messages it reads until it returns them, and a replay or
    purge running meanwhile would miss them.
    """

    def __init__(
        self,
        connection: Callable[[], Link],
        topology: Topology,
        store: TaskStore,
        *,
        app_id: str,
        confirm_timeout: float,
    ) -> None:
        self._connection = connection
        self._topology = topology
        self._store = store
        self._app_id = app_id
        self._confirm_timeout = confirm_timeout
        self._one_at_a_time = asyncio.Lock()

    async def list(self, *, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead messages, oldest first; the queue is left as it was."""
        async with self._channel() as channel:
            return await list_dead(channel, self._topology, limit=limit)

    async def replay(self, task_ids: Sequence[UUID] | None, *, via: str) -> ReplayReport:
        """Replay the dead tasks in ``task_ids`` (None: all), as ``replay`` does."""
        async with self._channel() as channel:
            return await replay(
                channel,
                self._topology,
                self._store,
                task_ids=task_ids,
                reply_to=self._topology.results_queue,
                app_id=self._app_id,
                confirm_timeout=self._confirm_timeout,
                via=via,
            )

    async def purge(self, task_ids: Sequence[UUID] | None = None) -> int:
        """Delete every dead message (or those of ``task_ids``); how many there were."""
        async with self._channel() as channel:
            return await purge(channel, self._topology, task_ids)

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[Channel]:
        async with (
            self._one_at_a_time,
            self._connection().scratch_channel(confirms=True) as channel,
        ):
            yield channel
