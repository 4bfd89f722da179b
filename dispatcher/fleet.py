"""The executors the dispatcher knows of, and the task types they publish.

``Fleet`` records heartbeats, lists executors with their state (running, lost, stopped), keeps
the published task types and validates submissions against them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from common import (
    DEFAULT_QUEUE,
    Heartbeat,
    InvalidParams,
    JsonValue,
    StoreError,
    TaskMessage,
    TaskTypeInfo,
    UnknownTaskType,
)
from common.logging import get_logger
from dispatcher.metrics import DispatcherMetrics
from dispatcher.store.protocol import TaskStore
from dispatcher.store.records import ExecutorRecord, ExecutorState, TaskTypeRecord
from dispatcher.task_types import TaskTypeCatalog

log = get_logger(__name__)

# Routing warnings: how old the list of live executors may be, and how often to repeat one.
_LIVE_MAX_AGE = timedelta(seconds=5)
_WARN_EVERY = timedelta(seconds=60)
_MAX_WARNED = 10_000


class Fleet:
    """Executors and task types, as their heartbeats tell."""

    def __init__(
        self,
        store: TaskStore,
        *,
        metrics: DispatcherMetrics,
        clock: Callable[[], datetime],
        lost_after: float = 60.0,
        catalog: TaskTypeCatalog | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._lost_after = lost_after
        # Not `catalog or ...`: an empty catalog has no length, so it is falsy.
        self._catalog = catalog if catalog is not None else TaskTypeCatalog()
        # Digest of the task types each executor published last: the store is written only
        # when they change (an executor's first heartbeat, a deploy), not every heartbeat.
        self._published: dict[str, str] = {}
        # The digest whose refusal was logged last, per executor: logged once, not per beat.
        self._conflicts: dict[str, str] = {}
        self._reading: asyncio.Future[None] | None = None
        # Set while a heartbeat's task types are being published and the catalog reloaded:
        # a submit of a type not yet in the catalog waits for it rather than be refused.
        self._publishing: asyncio.Future[None] | None = None
        # The live executors as last read (for routing warnings), and when it was read.
        self._live: tuple[datetime, list[ExecutorRecord]] | None = None
        # When each (task type, queue) nobody serves was last warned about.
        self._warned: dict[tuple[str, str], datetime] = {}

    async def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Record an executor's heartbeat, and its task types when they changed.

        A type another live executor published keeps that executor's schema (a deploy takes
        over once the old executors have stopped or are lost): the refusal is logged once per
        change, and tried again with each heartbeat until it is taken.
        """
        await self._store.record_heartbeat(heartbeat)
        digest = _digest(heartbeat)
        if self._published.get(heartbeat.executor) == digest:
            return
        live_since = self._clock() - timedelta(seconds=self._lost_after)
        publishing = self._publishing = asyncio.get_running_loop().create_future()
        try:
            refused = await self._store.publish_task_types(
                heartbeat.task_types,
                published_by=heartbeat.executor,
                at=heartbeat.sent_at,
                live_since=live_since,
            )
            published = await self._store.list_task_types()
            self._catalog.load(published)
        finally:
            publishing.set_result(None)
            if self._publishing is publishing:
                self._publishing = None
        # Replicas of one executor publish the same types: refused, but no conflict at all.
        recorded = {record.name: record for record in published}
        refused = [
            t.name
            for t in heartbeat.task_types
            if t.name in refused and not _same_type(t, recorded.get(t.name))
        ]
        if refused:
            if self._conflicts.get(heartbeat.executor) != digest:
                self._conflicts[heartbeat.executor] = digest
                log.warning(
                    "task_types_conflict",
                    executor=heartbeat.executor,
                    task_types=refused,
                    reason="published by another executor that is still live",
                )
            return
        self._published[heartbeat.executor] = digest
        self._conflicts.pop(heartbeat.executor, None)
        log.info(
            "task_types_published",
            executor=heartbeat.executor,
            task_types=[t.name for t in heartbeat.task_types],
        )

    async def executors(self) -> list[ExecutorRecord]:
        """Every executor recorded, with its state as of now."""
        now = self._clock()
        records = await self._store.list_executors()
        return [record.with_state(now, lost_after=self._lost_after) for record in records]

    async def warn_unserved(self, tasks: Iterable[TaskMessage]) -> None:
        """Warn (``task_queue_unserved``) about tasks no live executor would run.

        That is a task whose queue no live executor consumes with its type: a deployment
        whose routing and pools disagree, caught before its tasks wait forever or die as
        ``unknown_task_type``. Only a warning, once a minute per type and queue, and only
        while some executor is live: an executor that starts later takes the task from its
        queue, so queueing work ahead of its pool stays possible.
        """
        pairs = {(task.task_type, task.queue) for task in tasks}
        live = await self._live_executors()
        if not live:
            return
        now = self._clock()
        if len(self._warned) > _MAX_WARNED:
            self._warned.clear()
        for task_type, queue in sorted(pairs):
            if any(_serves(executor, task_type, queue) for executor in live):
                continue
            last = self._warned.get((task_type, queue))
            if last is not None and now - last < _WARN_EVERY:
                continue
            self._warned[(task_type, queue)] = now
            log.warning(
                "task_queue_unserved",
                task_type=task_type,
                queue=queue,
                live_executors=len(live),
                hint="no live executor consumes this queue with this task type: start one "
                "(executor run --queues), or route the type elsewhere",
            )

    async def _live_executors(self) -> list[ExecutorRecord]:
        """The running executors, read from the store at most every few seconds."""
        now = self._clock()
        if self._live is None or now - self._live[0] > _LIVE_MAX_AGE:
            try:
                executors = await self.executors()
            except StoreError as exc:
                log.warning("executors_not_read", error=str(exc))
                return []
            running = [e for e in executors if e.state is ExecutorState.RUNNING]
            self._live = (now, running)
        return self._live[1]

    async def task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, with its params JSON Schema, by name."""
        return await self._store.list_task_types()

    async def task_queues(self) -> list[str]:
        """Every task queue an executor recorded consumes or a published type declares."""
        found = {q for e in await self.executors() for q in e.queues}
        found |= {
            q for t in await self.task_types() if isinstance(q := t.options.get("queue"), str)
        }
        return sorted(found)

    def checks_task_types(self) -> bool:
        """Whether submissions are checked: some executor has published its task types.

        As the last ``validate`` read them. Before any has (a fresh store), every type and
        params pass unchecked: the set of types is unknown.
        """
        return len(self._catalog) > 0

    def queue_of(self, task_type: str) -> str | None:
        """The task queue the executors that published ``task_type`` declared for it.

        Read from the catalog as the last ``validate`` left it (which refreshes it first).
        """
        return self._catalog.queue_of(task_type)

    async def validate(self, requests: Iterable[tuple[str, Mapping[str, JsonValue]]]) -> None:
        """Refuse unknown task types and invalid params against the published schemas.

        A type not in the catalog waits for a fresh read (a type just deployed); known types
        are checked against the catalog at once, and an old catalog is read again meanwhile,
        so no submit waits for the store while its types are known.

        Raises:
            UnknownTaskType, InvalidParams: as a local task module would.
        """
        requests = list(requests)
        if any(not self._catalog.knows(task_type) for task_type, _ in requests):
            await self._refresh()
        elif self._catalog.is_stale():
            self._read_catalog()
        # In a thread: a large batch against an elaborate schema must not stall the loop
        # (health checks, results) while it is checked.
        await asyncio.to_thread(self._validate_all, requests)

    def _validate_all(self, requests: list[tuple[str, Mapping[str, JsonValue]]]) -> None:
        for index, (task_type, params) in enumerate(requests):
            try:
                self._catalog.validate(task_type, params)
            except (UnknownTaskType, InvalidParams) as exc:
                exc.index = index  # which request of a batch: the HTTP API's location
                raise

    async def update_gauges(self) -> None:
        """Set the executors-by-state gauge from the store."""
        counts = Counter(record.state for record in await self.executors())
        for state in ExecutorState:
            self._metrics.executors.labels(state=state.value).set(counts[state])

    async def _refresh(self) -> None:
        # An unknown type reads the store again (a type just deployed), but at most once per
        # catalog age, so a producer sending garbage cannot turn submits into store reads.
        if self._publishing is not None:
            # The store may hold the type already (the task-types list shows it) while the
            # catalog waits for the read after it: wait for that, not a read of our own.
            await asyncio.shield(self._publishing)
            return
        if self._reading is None and not self._catalog.is_stale(max_age=1.0):
            return
        # Shielded: one caller cancelled (its timeout) does not cancel the others' read.
        await asyncio.shield(self._read_catalog())

    def _read_catalog(self) -> asyncio.Future[None]:
        """The read of the catalog under way, started if there is none: submits share it."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._load_catalog())
            self._reading.add_done_callback(_log_failed_read)
        return self._reading

    async def _load_catalog(self) -> None:
        try:
            self._catalog.load(await self._store.list_task_types())
        finally:
            self._reading = None


def _same_type(published: TaskTypeInfo, recorded: TaskTypeRecord | None) -> bool:
    """Whether a refused task type says exactly what the recorded one says."""
    return recorded is not None and (
        published.params_schema,
        published.description,
        published.options,
    ) == (recorded.params_schema, recorded.description, recorded.options)


def _serves(executor: ExecutorRecord, task_type: str, queue: str) -> bool:
    # An executor from before named queues lists none: it consumes the default queue.
    return task_type in executor.task_types and queue in (executor.queues or [DEFAULT_QUEUE])


def _log_failed_read(reading: asyncio.Future[None]) -> None:
    if not reading.cancelled() and (error := reading.exception()) is not None:
        log.warning("task_types_not_read", error=str(error))


def _digest(heartbeat: Heartbeat) -> str:
    text = json.dumps([t.model_dump(mode="json") for t in heartbeat.task_types], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
