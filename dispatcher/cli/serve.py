"""``dispatcher serve``: record results, run the outbox and the scheduler, serve the API.

The one place the long-running dispatcher is wired: the connections, the loops beside the
results consumer, and the HTTP API's context.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from common import AmqpSettings, BrokerError, BrokerUnavailable, TaskRegistry, WorkQueueError
from common import exit_codes as codes
from common.logging import get_logger
from common.loop import run as run_loop
from common.readiness import ReadyFile
from common.shutdown import install_stop_handlers
from dispatcher.amqp.broker_monitor import AmqpBrokerMonitor
from dispatcher.amqp.dead_letters import DeadLetterDesk
from dispatcher.amqp.management import ManagementApi, vhost_of
from dispatcher.api.app import create_app
from dispatcher.api.auth import check_bind
from dispatcher.api.context import ApiContext
from dispatcher.api.server import bind, serve_api
from dispatcher.cli.command import Command, Wiring
from dispatcher.client import open_dispatcher
from dispatcher.retention import sweep
from dispatcher.schedules import ScheduleBook, run_due
from dispatcher.service import Dispatcher
from dispatcher.settings import DispatcherSettings

log = get_logger(__name__)

_SCHEDULER_BATCH = 500

_SERVE_DESCRIPTION = """\
Record results from the results queue, re-publish unconfirmed tasks (the outbox), and serve
the HTTP API on WQ_DISPATCHER_HTTP_HOST:WQ_DISPATCHER_HTTP_PORT (default 127.0.0.1:8080;
port 0 picks a free one, logged as http_api_listening):

  POST /tasks              submit a task {task_type, params, idempotency_key, priority,
                           eta | countdown}; a task due later answers state scheduled
  POST /tasks/batch        submit tasks {tasks: [...]}, all validated before any is recorded
  GET  /tasks              list: state, task_type, submitted_after/before, limit, cursor
  GET  /tasks/{id}         a task's state, result or error, attempt, timestamps, executor,
                           priority, eta, cancel request and progress
  GET  /tasks/{id}/result  ?wait=SECONDS: 200 with an outcome, 202 without one yet
  POST /tasks/{id}/cancel  202 requested, 200 cancelled or already_final; 503: recorded,
                           executors not told, ask again
  GET, POST /schedules     list or create cron schedules (409 if the name is taken)
  GET, DELETE /schedules/{name}, POST /schedules/{name}/pause|resume
  GET  /executors          executors: state, last heartbeat, running tasks, load (?state=)
  GET  /queues             messages and consumers per queue
  GET  /task-types         task types from WQ_DISPATCHER_TASKS and from executors, with
                           their params' JSON Schema
  GET  /metrics            Prometheus metrics (text format)
  GET  /health/live        liveness (never needs the token)
  GET  /health/ready       readiness: broker connected and store reachable
  GET  /docs, /openapi.json  the API's documentation

With WQ_DISPATCHER_HTTP_TOKEN set, every endpoint but /health/live requires the header
"Authorization: Bearer TOKEN". Binding to an address other than loopback without a token
is refused (exit code 2).
"""


def _add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="record results and serve the HTTP API until stopped",
        description=_SERVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--no-http", action="store_true", help="do not serve the HTTP API (results only)"
    )


def _run(wiring: Wiring, args: argparse.Namespace) -> int:
    """Serve until stopped (SIGTERM/SIGINT); returns the exit code."""
    registry = wiring.registry()
    amqp = wiring.amqp()
    settings = wiring.settings
    http = not args.no_http
    if http:
        check_bind(settings.http_host, settings.http_token, settings.http_read_token)
    # Bound before connecting: a port in use is a configuration error (exit 2), found first.
    sock = bind(settings.http_host, settings.http_port) if http else None
    try:
        return run_loop(_serve(amqp, settings, registry, sock))
    finally:
        if sock is not None:
            sock.close()


async def _serve(
    amqp: AmqpSettings,
    settings: DispatcherSettings,
    registry: TaskRegistry | None,
    sock: socket.socket | None,
) -> int:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    ready_file = ReadyFile(settings.ready_file)
    monitor = AmqpBrokerMonitor(amqp.topology)
    try:
        async with open_dispatcher(
            amqp,
            settings,
            registry=registry,
            ready_file=ready_file,
            monitor=monitor,
            monitor_executors=True,
        ) as dispatcher:
            log.info("dispatcher_serving", results_queue=amqp.topology.results_queue)
            book = ScheduleBook.of(dispatcher)
            loops = [
                # Re-publish tasks whose confirm never came.
                _every(
                    settings.outbox_interval,
                    stop,
                    partial(dispatcher.republish_unconfirmed, older_than_s=settings.outbox_age),
                    failed="outbox_sweep_failed",
                    wait_first=True,
                ),
                # Fire due cron schedules; a full batch means more may be due: go again at once.
                _every(
                    settings.scheduler_interval,
                    stop,
                    partial(_fire_due, dispatcher, book),
                    failed="scheduler_pass_failed",
                ),
                _every(
                    settings.retention_interval,
                    stop,
                    partial(_sweep_retention, dispatcher, settings),
                    failed="retention_sweep_failed",
                ),
            ]
            running = [asyncio.create_task(loop) for loop in loops]
            if sock is not None:
                context = ApiContext(
                    dispatcher=dispatcher,
                    broker=monitor,
                    schedules=book,
                    registry=registry,
                    dead=DeadLetterDesk(
                        monitor.connection,
                        amqp.topology,
                        dispatcher.store,
                        app_id=settings.app_id,
                        confirm_timeout=amqp.confirm_timeout,
                    ),
                    topology=amqp.topology,
                    management=_management(amqp, settings),
                )
                app = create_app(
                    context,
                    token=settings.http_token,
                    read_token=settings.http_read_token,
                    max_body_bytes=settings.http_max_body_bytes,
                )
                # The API stops first, so no submission arrives while the rest shuts down.
                await serve_api(app, sock, stop)
            await stop.wait()
            await asyncio.gather(*running)
    except BrokerUnavailable as exc:
        print(f"dispatcher: {exc}", file=sys.stderr)
        return codes.BROKER_UNAVAILABLE
    except BrokerError as exc:
        log.error("broker_error", error=str(exc))
        return codes.BROKER_UNAVAILABLE
    except asyncio.CancelledError:
        return codes.INTERRUPTED
    return codes.OK


async def _every(
    interval: float,
    stop: asyncio.Event,
    step: Callable[[], Awaitable[object]],
    *,
    failed: str,
    wait_first: bool = False,
) -> None:
    """Run ``step`` every ``interval`` seconds until ``stop``; log ``failed`` when it fails.

    A broker or store that is down for now is no reason to stop: the next pass tries again.
    """
    if wait_first:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    while not stop.is_set():
        try:
            await step()
        except WorkQueueError as exc:
            log.warning(failed, error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


def _management(amqp: AmqpSettings, settings: DispatcherSettings) -> ManagementApi | None:
    if settings.management_url is None:
        return None
    return ManagementApi(settings.management_url, vhost_of(amqp.url.get_secret_value()))


async def _fire_due(dispatcher: Dispatcher, book: ScheduleBook) -> None:
    while await run_due(dispatcher, book, limit=_SCHEDULER_BATCH) >= _SCHEDULER_BATCH:
        pass


async def _sweep_retention(dispatcher: Dispatcher, settings: DispatcherSettings) -> None:
    await sweep(
        dispatcher.store,
        datetime.now(UTC),
        retention=settings.retention,
        executor_retention=settings.executor_retention,
        metrics=dispatcher.metrics,
    )


SERVE = Command("serve", _add_parser, _run, logs=True)
