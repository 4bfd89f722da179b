"""The dispatcher's use cases: submit tasks, record outcomes, look tasks up, wait for them.

Depends only on the ``Publisher`` and ``TaskStore`` protocols, so it is tested with fakes.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from uuid import UUID

from structlog.contextvars import bound_contextvars

from common import (
    ConfigError,
    JsonValue,
    ProgressMessage,
    ResultMessage,
    StartNotice,
    StartVerdict,
    TaskMessage,
    TaskNotScheduled,
    TaskRegistry,
    Verdict,
    WorkQueueError,
)
from common.logging import get_logger
from dispatcher.amqp.publisher import CancelPublisher, Publisher
from dispatcher.fleet import Fleet
from dispatcher.metrics import DispatcherMetrics
from dispatcher.queued_marks import QueuedMarks
from dispatcher.requests import (
    CancelReport,
    Clock,
    RetryReport,
    Submission,
    TaskRequest,
    build_task,
    cancel_notice,
    utcnow,
)
from dispatcher.store.protocol import TaskStore
from dispatcher.store.query import TaskPosition, TaskQuery
from dispatcher.store.records import AttemptRecord, TaskRecord, TaskState
from dispatcher.waiters import Waiters

log = get_logger(__name__)

Progress = Callable[[int], object]

_BATCH = 500
# Most tasks one release pass claims and publishes.
RELEASE_BATCH = _BATCH


class Dispatcher:
    """Records tasks, publishes them, and records their outcomes."""

    def __init__(
        self,
        *,
        publisher: Publisher,
        store: TaskStore,
        registry: TaskRegistry | None = None,
        clock: Clock = utcnow,
        metrics: DispatcherMetrics | None = None,
        executor_lost_after: float = 60.0,
        cancel_publisher: CancelPublisher | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self._cancel_publisher = cancel_publisher
        self._unrecorded = UnrecordedStarts()
        self.max_body_bytes = max_body_bytes
        self._publisher = publisher
        self._store = store
        self._registry = registry
        self._clock = clock
        self.metrics = metrics or DispatcherMetrics()
        # Executors, their heartbeats and the task types they publish.
        self.fleet = Fleet(store, metrics=self.metrics, clock=clock, lost_after=executor_lost_after)
        # Callers of ``wait``, woken by the outcomes ``record_results`` writes.
        self._waiters = Waiters(store)
        # Marks as queued written after their submit returned.
        self._marks = QueuedMarks(store)

    async def submit(
        self,
        task_type: str,
        params: Mapping[str, JsonValue] | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        eta: datetime | None = None,
        countdown: float | None = None,
        queue: str | None = None,
    ) -> UUID:
        """Record and publish one task; returns its id once the broker has confirmed it.

        The record is durable before the publish; the mark as ``queued`` is written after the
        return (any later call sees it), so a submit waits for one store write, not two.

        A task due later (``eta`` or ``countdown``) is recorded as scheduled and returned at
        once; ``dispatcher serve`` publishes it when it is due. It goes to ``queue``, else to
        the task queue its type declares, else to ``default``.

        Raises:
            UnknownTaskType, InvalidParams: when a task module is loaded and refuses the task,
                or when its body would be over ``max_body_bytes``.
            PublishRejected, BrokerError: the task is recorded as submitted but not queued.
        """
        request = TaskRequest(
            task_type,
            params or {},
            idempotency_key=idempotency_key,
            priority=priority,
            eta=eta,
            countdown=countdown,
            queue=queue,
        )
        (task_id,) = await self.submit_many([request])
        return task_id

    async def submit_many(
        self, requests: Iterable[TaskRequest], *, progress: Progress | None = None
    ) -> list[UUID]:
        """Record and publish many tasks with pipelined confirms; returns their ids in order.

        Every task is validated before any is recorded. When some publishes fail, the others
        are still queued and the first failure is raised after the whole batch.
        """
        submission = await self.submit_all(requests, progress=progress)
        if submission.failure is not None:
            raise submission.failure
        return submission.task_ids

    async def submit_all(
        self, requests: Iterable[TaskRequest], *, progress: Progress | None = None
    ) -> Submission:
        """``submit_many`` that reports a publish failure instead of raising it.

        Callers that must name the recorded tasks even when the broker failed (the HTTP API
        answers 503 with their ids) use this.
        """
        requests = list(requests)
        tasks = await self._build_tasks(requests)
        with _about_one(tasks):
            await self.fleet.warn_unserved(tasks)
            now = self._clock()
            etas = [request.due_at(now) for request in requests]
            delayed = {i: eta for i, eta in enumerate(etas) if eta is not None}
            if delayed:
                return await self._submit_delayed(requests, tasks, delayed, progress)
            return await self._submit_due(requests, tasks, progress)

    async def _build_tasks(self, requests: list[TaskRequest]) -> list[TaskMessage]:
        """Validate every request, then build its task message."""
        if self._registry is None:  # no task module: the executors' published schemas
            await self.fleet.validate((r.task_type, r.params) for r in requests)
        limit, queue_of = self.max_body_bytes, self.fleet.queue_of
        return [
            build_task(
                r, self._registry, self._clock, max_body_bytes=limit, declared_queue=queue_of
            )
            for r in requests
        ]

    async def _submit_delayed(
        self,
        requests: list[TaskRequest],
        tasks: list[TaskMessage],
        delayed: dict[int, datetime],
        progress: Progress | None,
    ) -> Submission:
        """Schedule the delayed tasks, then submit the due ones; answers in request order."""
        scheduled = await self._store.add_scheduled(
            [tasks[i] for i in delayed],
            list(delayed.values()),
            [requests[i].idempotency_key for i in delayed],
        )
        log.info("tasks_scheduled", count=len(scheduled))
        if progress is not None:
            progress(len(scheduled))
        was_created = [tasks[i].task_id == id_ for i, id_ in zip(delayed, scheduled, strict=True)]
        if len(delayed) == len(requests):
            return Submission(scheduled, was_created)
        ids_of_delayed = dict(zip(delayed, zip(scheduled, was_created, strict=True), strict=True))
        due = [i for i in range(len(requests)) if i not in delayed]
        published = await self._submit_due(
            [requests[i] for i in due], [tasks[i] for i in due], progress
        )
        ids_of_due = dict(
            zip(due, zip(published.task_ids, published.created, strict=True), strict=True)
        )
        merged = [ids_of_delayed.get(i) or ids_of_due[i] for i in range(len(requests))]
        return Submission(
            [task_id for task_id, _ in merged], [new for _, new in merged], published.failure
        )

    async def _submit_due(
        self, requests: list[TaskRequest], tasks: list[TaskMessage], progress: Progress | None
    ) -> Submission:
        """Record, publish and mark queued the due tasks, ``_BATCH`` at a time."""
        keys = [request.idempotency_key for request in requests]
        ids: list[UUID] = []
        created: list[bool] = []
        failure: WorkQueueError | None = None
        for start in range(0, len(tasks), _BATCH):
            recorded, new, error = await self._submit_batch(
                tasks[start : start + _BATCH], keys[start : start + _BATCH]
            )
            ids.extend(recorded)
            created.extend(new)
            failure = failure or error
            if progress is not None:
                progress(len(recorded))
        log.info("tasks_published", count=len(tasks), failed=failure is not None)
        return Submission(ids, created, failure)

    async def _submit_batch(
        self, tasks: list[TaskMessage], keys: list[str | None]
    ) -> tuple[list[UUID], list[bool], WorkQueueError | None]:
        """Record and publish one batch; returns its ids, which are new, and its first failure."""
        recorded = await self._store.add_submitted(tasks, keys)
        created = [t.task_id == i for t, i in zip(tasks, recorded, strict=False)]
        batch = [t for t, i in zip(tasks, recorded, strict=False) if t.task_id == i]
        if len(batch) < len(recorded):
            log.info("tasks_deduplicated", count=len(recorded) - len(batch))
        outcomes = await self._publisher.publish(batch)
        confirmed = [t.task_id for t, error in zip(batch, outcomes, strict=True) if not error]
        # Not awaited: the record was durable before the publish, and the mark is ordered
        # before any later store call. If the process dies before it is written, the task
        # stays submitted and the outbox publishes it again (a duplicate run, one outcome).
        self._marks.add(confirmed, self._clock())
        failure: WorkQueueError | None = None
        # Not counted here: dispatcher serve counts submissions from the store, every entry
        # point's (dispatcher.metrics.SubmissionCounter).
        for task, error in zip(batch, outcomes, strict=True):
            if error is not None:
                log.error("task_not_published", task_id=str(task.task_id), error=str(error))
                failure = failure or error
        return recorded, created, failure

    async def republish_unconfirmed(self, *, older_than_s: float) -> int:
        """Publish again the tasks whose confirm never came (the outbox); returns how many.

        Their first publish may still have landed: the copy is a duplicate that the first
        recorded outcome absorbs, which is the price of never losing a submitted task.
        """
        cutoff = self._clock() - timedelta(seconds=older_than_s)
        tasks = await self._store.unconfirmed(cutoff, _BATCH)
        if not tasks:
            return 0
        outcomes = await self._publisher.publish(tasks)
        confirmed = [t.task_id for t, error in zip(tasks, outcomes, strict=True) if not error]
        await self._store.mark_queued(confirmed, self._clock())
        log.warning("tasks_republished", count=len(confirmed), failed=len(tasks) - len(confirmed))
        return len(confirmed)

    async def release_due(self, *, limit: int = RELEASE_BATCH) -> int:
        """Claim the delayed tasks and retries that are due, publish them; how many confirmed.

        The claim is atomic, so with several dispatcher replicas each task is published by
        exactly one. A publish that fails leaves the task submitted, for the outbox.
        """
        tasks = await self._store.claim_due(self._clock(), limit)
        return await self.publish_recorded(tasks) if tasks else 0

    async def publish_recorded(self, tasks: Sequence[TaskMessage]) -> int:
        """Publish tasks already recorded as submitted; returns how many were confirmed.

        Failures are logged and leave their tasks submitted, for the outbox to publish.
        """
        outcomes = await self._publisher.publish(tasks)
        confirmed = [t.task_id for t, error in zip(tasks, outcomes, strict=True) if not error]
        await self._store.mark_queued(confirmed, self._clock())
        for task, error in zip(tasks, outcomes, strict=True):
            if error is not None:
                log.error("task_not_published", task_id=str(task.task_id), error=str(error))
        with _about_one(tasks):
            log.info("tasks_published", count=len(tasks), failed=len(tasks) - len(confirmed))
        return len(confirmed)

    async def reschedule(
        self, task_id: UUID, *, eta: datetime | None = None, countdown: float | None = None
    ) -> TaskRecord:
        """Move a delayed task to another time (``eta``, or ``countdown`` seconds from now).

        Only while it is ``scheduled``: ``TaskNotScheduled`` otherwise (it was published
        already), ``TaskNotFound`` for an unknown id. A time not in the future makes it due.
        """
        request = TaskRequest("any", eta=eta, countdown=countdown)  # checks the time's range
        now = self._clock()
        due = request.due_at(now) or now
        record = await self._store.reschedule(task_id, due)
        if record is None:
            current = await self._store.get(task_id)  # TaskNotFound for an unknown id
            raise TaskNotScheduled(task_id, current.state.value)
        with bound_contextvars(task_id=str(task_id)):
            log.info("task_rescheduled", eta=due.isoformat())
        return record

    async def retry(self, task_ids: Sequence[UUID], *, via: str) -> RetryReport:
        """Run failed, dead or cancelled tasks again, each as its next attempt.

        Each is recorded as submitted, its attempt naming the cause (``via``: the entry
        point, such as ``cli`` or ``http``), then published to its own queue; one whose
        publish fails is left to the outbox. A task in another state is refused, not changed.
        """
        tasks = await self._store.retry_tasks(
            task_ids, self._clock(), cause=f"retried by hand ({via})"
        )
        if tasks:
            await self.publish_recorded(tasks)
        retried = {task.task_id for task in tasks}
        others = [task_id for task_id in dict.fromkeys(task_ids) if task_id not in retried]
        found = {record.task_id: record for record in await self._store.get_many(others)}
        refused = {
            task_id: (
                f"{found[task_id].state.value}: only failed, dead or cancelled tasks are retried"
                if task_id in found
                else "no such task"
            )
            for task_id in others
        }
        with _about_one(tasks):
            log.info("tasks_retried", count=len(tasks), refused=len(refused), via=via)
        return RetryReport([task.task_id for task in tasks], refused)

    @property
    def store(self) -> TaskStore:
        """The task store this dispatcher records in."""
        return self._store

    @property
    def registry(self) -> TaskRegistry | None:
        """The task types submissions are validated against, if any."""
        return self._registry

    @property
    def clock(self) -> Clock:
        """The dispatcher's clock."""
        return self._clock

    async def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome (the first per task id wins) and wake anyone waiting for it."""
        (recorded,) = await self.record_results([result])
        return recorded

    async def record_results(self, results: Sequence[ResultMessage]) -> list[bool]:
        """``record_result`` for each, in one store transaction; returns each one's flag."""
        # Read back only what someone waits for: a waiter takes the record, with no second read.
        watched = self._waiters.watched(r.task_id for r in results)
        written = await self._store.record_results(results, read_back=watched)
        for result, write in zip(results, written, strict=True):
            if write.recorded:
                labels = {"task_type": result.task_type, "outcome": result.outcome.value}
                self.metrics.outcomes.labels(**labels).inc()
            else:
                self.metrics.duplicates.inc()
            self._waiters.wake(result.task_id, write.record)
        return [write.recorded for write in written]

    async def get(self, task_id: UUID) -> TaskRecord:
        """The task's record, or ``TaskNotFound``."""
        return await self._store.get(task_id)

    async def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        return await self._store.get_many(task_ids)

    async def attempts(self, task_id: UUID) -> list[AttemptRecord]:
        """Every recorded attempt of the task, first to last; ``TaskNotFound`` if unknown."""
        attempts = await self._store.attempts(task_id)
        if not attempts:
            await self._store.get(task_id)  # raises TaskNotFound for an unknown id
        return attempts

    async def wait(self, task_id: UUID, *, timeout: float) -> TaskRecord:
        """Wait until the task has an outcome; ``TimeoutError`` after ``timeout`` seconds.

        An id the store does not know yet is waited for too: its record may arrive with its
        result (a task published by another client with ``reply_to`` set to the results queue).
        """
        return await self._waiters.wait(task_id, timeout=timeout)

    async def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Recorded tasks matching ``query``, newest first."""
        return await self._store.list_tasks(query)

    async def task_pages(self, query: TaskQuery) -> AsyncGenerator[list[TaskRecord], None]:
        """Every task ``query`` matches, newest first, a page of ``query.limit`` at a time;
        each page continues after the last one's final task, so pages never overlap."""
        while page := await self._store.list_tasks(query):
            yield page
            if len(page) < query.limit:
                return
            query = dataclasses.replace(query, after=TaskPosition.of(page[-1]))

    async def count_tasks(self, query: TaskQuery) -> int:
        """How many recorded tasks match ``query``'s filters."""
        return await self._store.count_tasks(query)

    async def ping_store(self) -> None:
        """Reach the task store; ``StoreError`` when it cannot be reached."""
        await self._store.ping()

    async def cancel(self, task_id: UUID, *, via: str = "python") -> CancelReport:
        """Cancel a task: it never starts if not started yet, and is told if it is running.

        The flag is recorded first, then a notice goes to the cancellation stream, which
        executors read from its start, so one offline now still skips the task. Asking again
        is safe: the first request's time is kept and the notice published again.

        Raises:
            TaskNotFound: no task has this id.
            PublishRejected, BrokerError: the flag is recorded, but executors were not told;
                ask again.
        """
        if self._cancel_publisher is None:
            raise ConfigError("this dispatcher was built without a cancel publisher")
        requested = await self._store.request_cancel(task_id, self._clock(), via=via)
        record = await self._store.get(task_id)
        with bound_contextvars(task_id=str(task_id)):
            if not requested:
                log.info("task_cancel_ignored", state=record.state.value)
            else:
                notice = cancel_notice(record, self._clock())
                await self._cancel_publisher.publish_cancel(notice)
                log.info("task_cancel_requested", state=record.state.value)
        return CancelReport.of(record, requested=requested)

    async def record_start(self, notice: StartNotice) -> StartVerdict:
        """Count a start of an attempt, and say whether it may run.

        Only deliveries that started count: a broker crash flags every waiting message
        redelivered, and counting those would dead-letter tasks that never ran. A start past
        its executor's delivery limit is given up (the executor dead-letters it); a task that
        already has its outcome is settled (the executor acks it without running it again).
        """
        runs = await self._store.record_start(notice)
        if runs is None:
            found = await self._store.get_many([notice.task_id])
            if found:  # another attempt, or one that needs no run: not counted
                record = found[0]
                settled = _settled(record, notice.attempt)
                verdict = Verdict.SETTLED if settled else Verdict.RUN
                return StartVerdict(
                    task_id=notice.task_id,
                    attempt=notice.attempt,
                    verdict=verdict,
                    runs=record.runs,
                )
            runs = self._unrecorded.count(notice)  # published around the dispatcher
        verdict = Verdict.RUN
        if runs > notice.delivery_limit:
            verdict = Verdict.GIVE_UP
            with bound_contextvars(task_id=str(notice.task_id)):
                log.warning(
                    "task_given_up", attempt=notice.attempt, runs=runs, limit=notice.delivery_limit
                )
        return StartVerdict(
            task_id=notice.task_id, attempt=notice.attempt, verdict=verdict, runs=runs
        )

    async def record_progress(self, report: ProgressMessage) -> bool:
        """Record a progress report (the latest in time wins; none after the outcome)."""
        return await self._store.record_progress(report)


def _settled(record: TaskRecord, attempt: int) -> bool:
    """Whether ``attempt`` of the task needs no run: it has its outcome, or its retry is owed."""
    if record.state.is_final or record.attempt > attempt:
        return True
    return record.state is TaskState.RETRYING and record.attempt == attempt


class UnrecordedStarts:
    """Starts of tasks the store has no record of (a producer that bypasses the dispatcher).

    Counted in memory, the most recent ``capacity`` tasks, so that the delivery limit holds
    for them too; with several dispatcher replicas each counts the notices it consumes.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._runs: OrderedDict[tuple[UUID, int], int] = OrderedDict()

    def count(self, notice: StartNotice) -> int:
        """One more start of this task's attempt; how many so far."""
        key = (notice.task_id, notice.attempt)
        runs = self._runs.pop(key, 0) + 1
        self._runs[key] = runs
        if len(self._runs) > self._capacity:
            self._runs.popitem(last=False)
        return runs


def _about_one(tasks: Sequence[TaskMessage]) -> AbstractContextManager[None]:
    """Bind ``task_id`` while logging about exactly one task; a batch's lines carry ``count``.

    So that one filter on ``task_id`` finds a task's whole story, the dispatcher's side
    included (docs/operations.md, "Logs and metrics"), without a line per task of a batch.
    """
    if len(tasks) != 1:
        return nullcontext()
    return bound_contextvars(task_id=str(tasks[0].task_id))
