"""The asyncio Python API: ``open_dispatcher`` wires store, publisher and result consumer.

async with open_dispatcher(AmqpSettings(), DispatcherSettings()) as dispatcher:
    task_id = await dispatcher.submit("word_count", {"text": "to be or not to be"})
    record = await dispatcher.wait(task_id, timeout=30)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from common import AmqpSettings, TaskRegistry, WorkQueueError
from common.logging import get_logger
from common.pika_link import (
    Channel,
    Link,
    close_quickly,
    declare_results_queue,
    declare_task_queue,
    declare_topology,
    while_reachable,
)
from common.readiness import ReadyFile
from dispatcher.amqp.broker_monitor import AmqpBrokerMonitor
from dispatcher.amqp.publisher import AmqpCancelPublisher, AmqpPublisher
from dispatcher.amqp.queue_depths import read_queue_depths
from dispatcher.amqp.results import ResultRecorder
from dispatcher.amqp.side_queues import (
    consume_side_queue,
    heartbeat_handler,
    log_oversized_heartbeat,
    log_oversized_progress,
    progress_handler,
)
from dispatcher.metrics import DispatcherMetrics, SubmissionCounter
from dispatcher.service import RELEASE_BATCH, Dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.threaded import ThreadedTaskStore

log = get_logger(__name__)

_PROGRESS_PREFETCH = 50
_HEARTBEAT_PREFETCH = 16


@asynccontextmanager
async def open_dispatcher(
    amqp: AmqpSettings,
    settings: DispatcherSettings,
    *,
    registry: TaskRegistry | None = None,
    consume_results: bool | None = True,
    ready_file: ReadyFile | None = None,
    monitor_executors: bool = False,
    metrics: DispatcherMetrics | None = None,
    monitor: AmqpBrokerMonitor | None = None,
) -> AsyncIterator[Dispatcher]:
    """A connected ``Dispatcher``; with ``consume_results`` it also records incoming results.

    ``consume_results=None`` consumes only when no other dispatcher does: a short-lived
    process (``submit --wait``) must not take results that a running ``dispatcher serve``,
    perhaps with another store, would record.

    Publishing and consuming use separate connections: a memory or disk alarm blocks
    publishing connections, and results must keep flowing while it lasts.

    ``monitor_executors`` (``dispatcher serve``) also records executor heartbeats and keeps
    the queue-depth and executor gauges of ``metrics`` current.

    ``monitor``, when given, watches both connections (the HTTP API's readiness and queues).

    A dispatcher that records results also publishes what the store says is owed: delayed
    tasks whose eta has come and retries whose next attempt is due, every
    ``scheduler_interval`` seconds (any number of them may run: each task is claimed once).
    """
    identity = f"{socket.gethostname()}.{os.getpid()}"
    async with AsyncExitStack() as stack:
        store = ThreadedTaskStore(open_store(settings.store))
        stack.push_async_callback(store.close)
        publisher, cancels, replies, results_consumers = await _open_publishing(
            stack, amqp, settings, identity=identity, monitor=monitor
        )
        dispatcher = Dispatcher(
            publisher=publisher,
            store=store,
            registry=registry,
            metrics=metrics,
            executor_lost_after=settings.executor_lost_after,
            cancel_publisher=cancels,
            max_body_bytes=amqp.max_body_bytes,
        )
        if consume_results is None:
            consume_results = results_consumers == 0
        if consume_results:
            consuming, recorder = await _open_results_consumer(
                stack, amqp, settings, dispatcher, identity=identity, monitor=monitor
            )
            await _consume_side_queues(
                stack,
                amqp,
                dispatcher,
                consuming,
                replies,
                identity=identity,
                monitor_executors=monitor_executors,
            )
            releases = asyncio.create_task(_release_due(dispatcher, settings.scheduler_interval))
            stack.push_async_callback(_cancel, releases)
            if ready_file is not None:
                ready_file.set()
                ready_file.follow(consuming)
                stack.callback(ready_file.clear)
            watching = asyncio.create_task(
                _watch_results(
                    recorder, ready_file or ReadyFile(None), consuming, settings.results_stall_after
                )
            )
            stack.push_async_callback(_cancel, watching)
        log.info(
            "dispatcher_connected",
            broker=amqp.redacted_url(),
            store=settings.redacted_store(),
            consuming_results=consume_results,
        )
        yield dispatcher


async def _connect(
    stack: AsyncExitStack, amqp: AmqpSettings, name: str, monitor: AmqpBrokerMonitor | None
) -> Link:
    """A link closed with ``stack``, and watched by ``monitor`` if there is one."""
    link = Link(amqp, name=name)
    await link.connect()
    stack.push_async_callback(partial(close_quickly, link, what=name))
    if monitor is not None:
        monitor.watch(link)
    return link


async def _open_publishing(
    stack: AsyncExitStack,
    amqp: AmqpSettings,
    settings: DispatcherSettings,
    *,
    identity: str,
    monitor: AmqpBrokerMonitor | None,
) -> tuple[AmqpPublisher, AmqpCancelPublisher, Channel, int]:
    """The publishing link and its confirm channel (returned, for the verdicts), the
    topology, both publishers, and how many consumers the results queue had when declared."""
    topology = amqp.topology
    publishing = await _connect(stack, amqp, f"dispatcher {identity} publish", monitor)
    channel = await publishing.channel(confirms=True)
    declared = await declare_topology(channel, topology)
    publisher = AmqpPublisher(
        channel,
        topology=topology,
        declare=lambda queue: declare_task_queue(channel, topology, queue),
        reply_to=topology.results_queue,
        app_id=settings.app_id,
        confirm_timeout=amqp.confirm_timeout,
        window=settings.publish_window,
    )
    cancels = AmqpCancelPublisher(
        channel,
        stream=topology.cancel_stream,
        app_id=settings.app_id,
        confirm_timeout=amqp.confirm_timeout,
    )
    return publisher, cancels, channel, declared[topology.results_queue].consumers


async def _open_results_consumer(
    stack: AsyncExitStack,
    amqp: AmqpSettings,
    settings: DispatcherSettings,
    dispatcher: Dispatcher,
    *,
    identity: str,
    monitor: AmqpBrokerMonitor | None,
) -> tuple[Link, ResultRecorder]:
    """The consuming link (for the side queues to share), and the results recorder."""
    topology = amqp.topology
    consuming = await _connect(stack, amqp, f"dispatcher {identity} results", monitor)
    results_channel = await consuming.channel()
    await results_channel.set_qos(prefetch_count=settings.result_prefetch)
    await declare_results_queue(results_channel, topology)
    handler = ResultRecorder(
        dispatcher.record_results,
        max_body_bytes=amqp.max_body_bytes,
        dead_queue=topology.results_dead_queue,
        max_batch=settings.result_prefetch,
    )
    if monitor is not None:
        monitor.watch_results(handler, stalled_after=settings.results_stall_after)
    tag = await results_channel.consume(
        topology.results_queue, handler, consumer_tag=f"wq.dispatcher.{identity}"
    )
    stack.push_async_callback(
        partial(
            while_reachable,
            partial(results_channel.cancel, tag),
            connection=consuming,
            what="cancel the results consumer",
        )
    )
    return consuming, handler


async def _consume_side_queues(
    stack: AsyncExitStack,
    amqp: AmqpSettings,
    dispatcher: Dispatcher,
    consuming: Link,
    replies: Channel,
    *,
    identity: str,
    monitor_executors: bool,
) -> None:
    """Heartbeats and the gauges (with ``monitor_executors``), then progress (whose start
    verdicts go out on ``replies``, a channel of the publishing link)."""
    topology = amqp.topology
    if monitor_executors:
        stop = await consume_side_queue(
            consuming,
            topology.executors_queue,
            topology.executors_queue_arguments(),
            heartbeat_handler(dispatcher.fleet.record_heartbeat),
            max_body_bytes=amqp.max_body_bytes,
            oversized=log_oversized_heartbeat,
            prefetch=_HEARTBEAT_PREFETCH,
            consumer_tag=f"wq.dispatcher.{identity}.executors",
        )
        stack.push_async_callback(
            partial(while_reachable, stop, connection=consuming, what="stop the heartbeats")
        )
        gauges = asyncio.create_task(_update_gauges(dispatcher, consuming, amqp))
        stack.push_async_callback(_cancel, gauges)

    # Progress too, on a channel of its own: a flood cannot slow the results.
    stop_progress = await consume_side_queue(
        consuming,
        topology.progress_queue,
        topology.progress_queue_arguments(),
        progress_handler(dispatcher.record_progress, dispatcher.record_start, replies),
        max_body_bytes=amqp.max_body_bytes,
        oversized=log_oversized_progress,
        prefetch=_PROGRESS_PREFETCH,
        consumer_tag=f"wq.dispatcher.{identity}.progress",
    )
    stack.push_async_callback(
        partial(while_reachable, stop_progress, connection=consuming, what="stop the progress")
    )


# How often dispatcher serve reads queue depths and executor states into its gauges.
GAUGE_INTERVAL_S = 5.0


async def _update_gauges(dispatcher: Dispatcher, connection: Link, amqp: AmqpSettings) -> None:
    metrics = dispatcher.metrics
    submissions = SubmissionCounter(dispatcher.store, metrics, dispatcher.clock)
    while True:
        try:
            await submissions.count()
            # The queues declared at start-up: retry queues are left out of the gauges.
            fixed = [name for name, _ in amqp.topology.queue_declarations()]
            for depth in await read_queue_depths(connection, fixed):
                metrics.queue_messages.labels(queue=depth.name).set(depth.messages)
                metrics.queue_consumers.labels(queue=depth.name).set(depth.consumers)
            await dispatcher.fleet.update_gauges()
        except WorkQueueError as exc:
            log.warning("gauges_not_updated", error=str(exc))
        except Exception:
            # The gauges are advisory: a bug here must not stop them for good, nor end
            # ``dispatcher serve`` with a traceback at its next stop.
            log.exception("gauges_not_updated")
        await asyncio.sleep(GAUGE_INTERVAL_S)


async def _release_due(dispatcher: Dispatcher, interval: float) -> None:
    """Publish due delayed tasks and retries, every ``interval`` seconds, until cancelled."""
    while True:
        try:
            # A full batch means more may be due: go again at once.
            while await dispatcher.release_due() >= RELEASE_BATCH:
                pass
        except WorkQueueError as exc:
            # The broker or store is down for now; the next pass tries again, and nothing
            # is lost meanwhile: what is owed stays in the store.
            log.warning("release_pass_failed", error=str(exc))
        except Exception:
            log.exception("release_pass_failed")
        await asyncio.sleep(interval)


async def _watch_results(
    recorder: ResultRecorder,
    ready_file: ReadyFile,
    connection: Link,
    stalled_after: float,
) -> None:
    """Say when the results consumer stalls and recovers; no readiness file meanwhile."""
    stalled = False
    while True:
        await asyncio.sleep(min(5.0, stalled_after / 2))
        now_stalled = recorder.stalled(stalled_after)
        if now_stalled and not stalled:
            log.error("results_stalled", stalled_after_s=stalled_after)
            ready_file.clear()
        elif stalled and not now_stalled:
            log.info("results_flowing")
            if connection.is_ready:
                ready_file.set()
        stalled = now_stalled


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
