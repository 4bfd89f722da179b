"""The executor's AMQP side: consume the task queue, run what is admitted, settle deliveries.

``admission.py`` settles the deliveries that must not run; ``settling.py`` carries out the
decisions about the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog

from common import AmqpSettings, BrokerError, ExecutorEvent, Outcome, TaskRegistry
from common.logging import get_logger
from common.pika_link import (
    Channel,
    Incoming,
    Link,
    close_quickly,
    declare_task_queue,
    declare_topology,
    while_reachable,
)
from common.readiness import ReadyFile
from executor import timeouts
from executor.admission import Admission, Admitted
from executor.cancellations import Cancellations
from executor.decisions import Action, Decision, decide
from executor.heartbeats import HeartbeatSender
from executor.jobs import Job
from executor.monitor import Monitor
from executor.pools import (
    consumer_tag,
    foreign_queues,
    plan_channels,
    queues_to_consume,
    unconsumed_types,
)
from executor.progress import ProgressReporter
from executor.runner import Attempt, execute
from executor.settling import Settler, drop, give_back, return_to_queue
from executor.starts import StartReporter
from executor.threads import HandlerThreads

log = get_logger(__name__)

# How long start-up may take to read the cancellation stream to its end before giving up.
CATCH_UP_TIMEOUT_S = 30.0


class Executor:
    """Runs tasks from its task queues with ``concurrency`` slots of prefetch 1 each."""

    def __init__(
        self,
        *,
        amqp: AmqpSettings,
        registry: TaskRegistry,
        name: str,
        concurrency: int = 1,
        shutdown_grace: float = 30.0,
        ready_file: ReadyFile | None = None,
        monitor: Monitor | None = None,
        heartbeat_interval: float = 10.0,
        catch_up_timeout: float = CATCH_UP_TIMEOUT_S,
        queues: Sequence[str] | None = None,
    ) -> None:
        self._amqp = amqp
        # The queues to consume: those named, else those its task types declare.
        self._queues = queues_to_consume(registry, queues)
        self._plan = plan_channels(amqp.queue_type, self._queues, concurrency)
        # Consumer tag -> broker queue, for the x-wq-original-queue of a dead-lettered task.
        self._queue_of_tag = {
            consumer_tag(name, q): amqp.topology.task_queue_of(q) for q in self._queues
        }
        self._topology = amqp.topology
        self._registry = registry
        self._name = name
        self._concurrency = concurrency
        self._grace = shutdown_grace
        self._ready_file = ready_file or ReadyFile(None)
        self._settler_or_none: Settler | None = None
        self._admission_or_none: Admission | None = None
        self._in_flight: dict[asyncio.Task[Any], Incoming] = {}
        # Prefetch already limits deliveries to the slots; the semaphore keeps that true
        # even if the broker ever hands over more (a QoS change, a restored channel).
        self._slots = asyncio.Semaphore(concurrency)
        self._idle = asyncio.Event()
        self._idle.set()
        self._monitor = monitor or Monitor(
            name=name, slots=concurrency, registry=registry, queues=self._queues
        )
        self._heartbeat_interval = heartbeat_interval
        self._cancellations = Cancellations(executor=name, max_body_bytes=amqp.max_body_bytes)
        self._catch_up_timeout = catch_up_timeout
        self._progress_or_none: ProgressReporter | None = None
        self._threads = HandlerThreads()

    @property
    def _progress(self) -> ProgressReporter:
        assert self._progress_or_none is not None, "run() sets it up before consuming"
        return self._progress_or_none

    @property
    def _settler(self) -> Settler:
        assert self._settler_or_none is not None, "run() sets it up before consuming"
        return self._settler_or_none

    @property
    def _admission(self) -> Admission:
        assert self._admission_or_none is not None, "run() sets it up before consuming"
        return self._admission_or_none

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then let in-flight tasks finish within the grace."""
        # Two connections: a memory or disk alarm blocks publishing connections entirely,
        # and the consuming side must keep its heartbeats and acks flowing while it lasts.
        consuming = await _connect(self._amqp, name=f"executor {self._name} consume")
        publishing: Link | None = None
        beating: asyncio.Task[None] | None = None
        try:
            publishing = await _connect(self._amqp, name=f"executor {self._name} publish")
            heartbeats = await self._open_publishing(publishing)
            queues = await self._open_consuming(consuming, stop)
            if queues is None:  # stopped before it could start consuming
                return
            consumers = await self._consume(queues, _broker_version(consuming))
            await heartbeats.send(ExecutorEvent.STARTED)
            beating = asyncio.create_task(heartbeats.run(self._heartbeat_interval))
            self._ready_file.set()
            self._ready_file.follow(consuming)
            await stop.wait()
            await self._stop(consuming, publishing, consumers, heartbeats, beating)
        finally:
            await self._close(consuming, publishing, beating)

    async def _open_publishing(self, publishing: Link) -> HeartbeatSender:
        """The confirm channel and everything that publishes on it; returns the heartbeats."""
        channel = await publishing.channel(confirms=True)
        self._settler_or_none = Settler(
            channel, amqp=self._amqp, executor=self._name, queue_of_tag=self._queue_of_tag
        )
        heartbeats = HeartbeatSender(
            channel,
            self._monitor,
            queue=self._topology.executors_queue,
            timeout=self._amqp.confirm_timeout,
        )
        self._progress_or_none = ProgressReporter(
            self._settler.publish, queue=self._topology.progress_queue, executor=self._name
        )
        self._starts = StartReporter(
            self._settler.publish,
            queue=self._topology.progress_queue,
            executor=self._name,
            delivery_limit=self._amqp.delivery_limit,
            verdict_timeout=self._amqp.confirm_timeout,
            max_body_bytes=self._amqp.max_body_bytes,
        )
        self._admission_or_none = Admission(
            self._settler,
            registry=self._registry,
            amqp=self._amqp,
            executor=self._name,
            cancellations=self._cancellations,
            monitor=self._monitor,
            starts=self._starts,
        )
        return heartbeats

    async def _open_consuming(
        self, consuming: Link, stop: asyncio.Event
    ) -> list[tuple[str, str, Channel]] | None:
        """The task queues (name, broker name, channel), on channels whose prefetch adds up to
        the slots, once cancels are known; None if stopped first."""
        queues: list[tuple[str, str, Channel]] = []
        for plan in self._plan:
            channel = await consuming.channel()
            # Prefetch = slots: the broker never hands this executor a task it has no free
            # slot for, so a waiting task goes to an idle executor instead (fair dispatch).
            await channel.set_qos(prefetch_count=plan.prefetch, global_=plan.shared)
            if not queues:
                await declare_topology(channel, self._topology)
            for name in plan.queues:
                declared = await declare_task_queue(channel, self._topology, name)
                queues.append((name, declared, channel))
        await self._starts.listen(consuming, self._topology)
        # Every cancel published while this executor was offline is known before its
        # first task, so a cancelled task waiting in the queue is never started.
        caught_up = await self._cancellations.follow(
            consuming,
            self._topology,
            publish=self._settler.publish,
            timeout=self._catch_up_timeout,
            stop=stop,
        )
        return queues if caught_up else None

    async def _consume(
        self, queues: list[tuple[str, str, Channel]], broker_version: str
    ) -> list[tuple[Channel, str]]:
        """Start consuming every queue; returns each queue's channel with its consumer tag."""
        arguments = timeouts.consumer_arguments(self._registry, broker_version)
        consumers = []
        for name, declared, channel in queues:
            tag = await channel.consume(
                declared,
                self._on_message,
                consumer_tag=consumer_tag(self._name, name),
                arguments=dict(arguments),
            )
            consumers.append((channel, tag))
        log.info(
            "executor_started",
            executor=self._name,
            queue=",".join(declared for _, declared, _ in queues),
            queues=self._queues,
            concurrency=self._concurrency,
            task_types=self._registry.names(),
            broker_version=broker_version,
        )
        _warn_about_routing(self._registry, self._queues)
        timeouts.report(self._registry, arguments, self._amqp.consumer_timeout)
        return consumers

    async def _stop(
        self,
        consuming: Link,
        publishing: Link,
        consumers: list[tuple[Channel, str]],
        heartbeats: HeartbeatSender,
        beating: asyncio.Task[None],
    ) -> None:
        """Take no more tasks, let the running ones finish, then send the last heartbeat.

        Steps that talk to the broker are skipped while it is away: the stop ends within the
        grace period, broker or no broker.
        """
        self._ready_file.stop_following()
        # Forgotten first, so that a reconnect during the drain does not consume again.
        for channel, tag in consumers:
            channel.forget(tag)
        for channel, tag in consumers:
            await while_reachable(
                partial(channel.cancel, tag),
                connection=consuming,
                what="cancel a task consumer",
            )
        await self._drain()
        await while_reachable(
            lambda: heartbeats.stop(beating),
            connection=publishing,
            what="last heartbeat",
        )
        beating.cancel()

    async def _close(
        self,
        consuming: Link,
        publishing: Link | None,
        beating: asyncio.Task[None] | None,
    ) -> None:
        """Close whatever ``run`` opened, however far it got."""
        if beating is not None:
            beating.cancel()
        self._ready_file.clear()
        await close_quickly(consuming, what="consuming connection")
        if publishing is not None:
            await close_quickly(publishing, what="publishing connection")
        self._threads.close()
        log.info("executor_stopped", executor=self._name)

    async def _drain(self) -> None:
        if self._in_flight:
            log.info("executor_draining", in_flight=len(self._in_flight), grace_s=self._grace)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self._grace)
        except TimeoutError:
            log.warning("executor_grace_expired", in_flight=len(self._in_flight))
            for task, message in list(self._in_flight.items()):
                # Back to the queue for another executor; a result this run may still
                # produce is a duplicate the dispatcher ignores.
                await give_back(message)
                task.cancel()

    async def _on_message(self, message: Incoming) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight[task] = message
        self._idle.clear()
        # Every line about this delivery names the executor (several share one log stream in
        # compose); the delivery tag is debug detail, in `task_received` and on failures.
        try:
            with structlog.contextvars.bound_contextvars(executor=self._name):
                async with self._slots:
                    await self._handle(message)
        except BrokerError as exc:
            log.warning("delivery_unsettled", delivery_tag=message.delivery_tag, error=str(exc))
            await return_to_queue(message)
        except Exception:
            # A bug, not bad input: keep the message (dead-lettered) rather than loop on it.
            log.exception("delivery_handling_failed", delivery_tag=message.delivery_tag)
            await drop(message)
        finally:
            del self._in_flight[task]
            if not self._in_flight:
                self._idle.set()

    async def _handle(self, message: Incoming) -> None:
        job = await self._admission.job_for(message)
        if job is None:
            return
        with structlog.contextvars.bound_contextvars(
            task_id=str(job.task.task_id), task_type=job.task.task_type, attempt=job.task.attempt
        ):
            log.debug(
                "task_received",
                delivery_tag=message.delivery_tag,
                queue=message.routing_key,
                redelivered=bool(message.redelivered),
            )
            admitted = await self._admission.admit(message, job)
            if admitted is not Admitted.SETTLED:
                await self._run(message, job, admitted)

    async def _run(self, message: Incoming, job: Job, admitted: Admitted) -> None:
        began = time.perf_counter()
        rerun = admitted is not Admitted.FIRST_RUN
        if admitted is not Admitted.COUNTED_RERUN:
            await self._starts.started(job, redelivered=rerun)
        context = self._progress.context_for(job)
        try:
            with (
                self._monitor.running(job.task),
                self._cancellations.tracking(job.task.task_id, job.task.attempt, context),
            ):
                attempt = await execute(job, run_in_thread=self._threads.run, context=context)
        finally:
            context.close()
        decision = decide(job, attempt, executor=self._name, redelivered=rerun)
        duration_ms = round((time.perf_counter() - began) * 1000, 3)
        _log_outcome(attempt, decision, duration_ms)
        await self._settler.carry_out(message, decision, error=attempt.error)
        if decision.result is not None:
            outcome, duration_s = decision.result.outcome, duration_ms / 1000
            self._monitor.settled(job.task.task_type, outcome, duration_s=duration_s)


def _log_outcome(attempt: Attempt, decision: Decision, duration_ms: float) -> None:
    """The one summary line of a task that ran."""
    if attempt.error is None:
        log.info("task_succeeded", duration_ms=duration_ms)
    elif decision.result is not None and decision.result.outcome is Outcome.CANCELLED:
        log.info("task_cancelled", duration_ms=duration_ms)
    else:
        # What happens next only when it is news: a final failure is simply acked.
        then: dict[str, object] = {}
        if decision.action is not Action.ACK:
            then["then"] = decision.action.value
        if decision.retry_in_s is not None:
            then["retry_in_s"] = decision.retry_in_s
        log.warning(
            "task_failed",
            duration_ms=duration_ms,
            error_kind=attempt.error.kind.value,
            error=attempt.error.message,
            error_type=attempt.error.type,
            **then,
            traceback=attempt.error.traceback,
        )


def _warn_about_routing(registry: TaskRegistry, queues: Sequence[str]) -> None:
    """Say so at start-up when the queues consumed and the task types' queues disagree."""
    foreign = foreign_queues(registry, queues)
    if foreign:
        log.warning(
            "executor_queue_without_task_types",
            queues=foreign,
            task_types=registry.names(),
            hint="no task type of this executor routes to these queues: a task submitted to "
            "one by name whose type this executor lacks is dead-lettered (unknown_task_type)",
        )
    unconsumed = unconsumed_types(registry, queues)
    if unconsumed:
        log.warning(
            "executor_task_types_not_consumed",
            task_types=unconsumed,
            hint="these types route to queues this executor does not consume (--queues)",
        )


def _broker_version(connection: Link) -> str:
    version = connection.server_properties.get("version", "")
    return version.decode(errors="replace") if isinstance(version, bytes) else str(version)


async def _connect(amqp: AmqpSettings, *, name: str) -> Link:
    """A robust connection named ``<prefix> <name>`` (as the management UI shows it)."""
    link = Link(amqp, name=name)
    await link.connect()
    return link
