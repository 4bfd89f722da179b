"""``executor``: run tasks from the queue, or list the task types a module registers."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from common import (
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    LogSettings,
    TaskRegistry,
    is_loopback,
    load_registry,
    load_settings,
)
from common import exit_codes as codes
from common.logging import configure, get_logger
from common.loop import run as run_loop
from common.readiness import ReadyFile
from common.shutdown import install_stop_handlers
from executor.consumer import Executor
from executor.monitor import Monitor
from executor.pools import parse_queues, plan_channels, queues_to_consume
from executor.settings import ExecutorSettings

if TYPE_CHECKING:
    from executor.metrics import ExecutorMetrics

log = get_logger(__name__)

_EPILOG = """\
environment:
  WQ_AMQP_URL                broker URL (default amqp://guest:guest@localhost:5672/)
  WQ_AMQP_PREFIX             prefix of queue and exchange names (default wq)
  WQ_EXECUTOR_TASKS          task module, same as --tasks
  WQ_EXECUTOR_CONCURRENCY    execution slots, same as --concurrency
  WQ_EXECUTOR_QUEUES         task queues to consume, same as --queues
  WQ_EXECUTOR_SHUTDOWN_GRACE seconds in-flight tasks get on SIGTERM (default 30)
  WQ_EXECUTOR_READY_FILE     file present while consuming, for health probes
  WQ_EXECUTOR_HEARTBEAT_INTERVAL  seconds between heartbeats to the dispatcher (10)
  WQ_EXECUTOR_METRICS_PORT   serve Prometheus /metrics on this port (default: none)
  WQ_EXECUTOR_METRICS_HOST   address /metrics binds to (default 127.0.0.1)
  WQ_LOG_LEVEL, WQ_LOG_FORMAT  logging (info; auto|json|console)
exit codes: 0 stopped cleanly, 2 bad arguments or configuration,
  69 broker unreachable, 70 internal error, 130 forced stop
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line, with help that explains each option."""
    parser = argparse.ArgumentParser(
        prog="executor",
        description="Run tasks from RabbitMQ: one task per execution slot, results reported "
        "to the task's reply queue before the task message is acknowledged.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="consume and run tasks until SIGTERM or Ctrl-C")
    run.add_argument("--tasks", help="task module, e.g. examples.tasks or pkg.mod:registry")
    run.add_argument("--concurrency", type=int, help="execution slots (default 1)")
    run.add_argument(
        "--queues",
        metavar="A,B",
        help="task queues to consume (default: those its task types declare; 'default' is "
        "the wq.tasks queue)",
    )
    run.add_argument(
        "--name",
        help="executor name in results and logs (default host.pid; in a container, its name)",
    )
    run.add_argument(
        "--path", default=".", help="directory to import the task module from (default .)"
    )
    tasks = commands.add_parser("tasks", help="list the task types a module registers")
    tasks.add_argument("--tasks", help="task module (as for run)")
    tasks.add_argument("--path", default=".", help="directory to import from (default .)")
    tasks.add_argument("--json", action="store_true", help="print params JSON Schemas")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        overrides = {
            key: value
            for key, value in (
                ("tasks", args.tasks),
                ("concurrency", getattr(args, "concurrency", None)),
                ("name", getattr(args, "name", None)),
                ("queues", getattr(args, "queues", None)),
            )
            if value is not None
        }
        settings = load_settings(ExecutorSettings, **overrides)
        configure(load_settings(LogSettings))
        if settings.tasks is None:
            raise ConfigError("no task module: pass --tasks or set WQ_EXECUTOR_TASKS")
        registry = load_registry(settings.tasks, search_path=args.path)
        if args.command == "tasks":
            return _print_tasks(registry, as_json=args.json)
        amqp = load_settings(AmqpSettings)
        queues = queues_to_consume(
            registry, parse_queues(settings.queues) if settings.queues else None
        )
        plan_channels(amqp.queue_type, queues, settings.concurrency)  # ConfigError if it cannot
    except ConfigError as exc:
        print(f"executor: {exc}", file=sys.stderr)
        return codes.USAGE
    name = settings.name or default_name()
    if settings.metrics_port is not None and not (
        settings.metrics_public or is_loopback(settings.metrics_host)
    ):
        print(
            f"executor: WQ_EXECUTOR_METRICS_HOST={settings.metrics_host} serves metrics, with no "
            "authentication, to other machines: set WQ_EXECUTOR_METRICS_PUBLIC=true if that is "
            "meant (a container network), or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return codes.USAGE
    if settings.metrics_port is None:
        return _run(settings, amqp, registry, name, queues, metrics=None)
    # Imported here, not at the top: prometheus_client and its HTTP server are about 2 MiB of
    # an idle executor's memory, which an executor without the endpoint does not need.
    from executor.metrics import ExecutorMetrics, serve_metrics

    metrics = ExecutorMetrics()
    try:
        server = serve_metrics(metrics, host=settings.metrics_host, port=settings.metrics_port)
    except OSError as exc:
        print(f"executor: cannot serve metrics: {exc}", file=sys.stderr)
        return codes.USAGE
    try:
        return _run(settings, amqp, registry, name, queues, metrics=metrics)
    finally:
        server.shutdown()


def _run(
    settings: ExecutorSettings,
    amqp: AmqpSettings,
    registry: TaskRegistry,
    name: str,
    queues: list[str],
    *,
    metrics: ExecutorMetrics | None,
) -> int:
    monitor = Monitor(
        name=name, slots=settings.concurrency, registry=registry, queues=queues, metrics=metrics
    )
    executor = Executor(
        amqp=amqp,
        registry=registry,
        name=name,
        concurrency=settings.concurrency,
        shutdown_grace=settings.shutdown_grace,
        ready_file=ReadyFile(settings.ready_file),
        monitor=monitor,
        heartbeat_interval=settings.heartbeat_interval,
        queues=queues,
    )
    try:
        return run_loop(_serve(executor))
    except ConfigError as exc:  # WQ_EVENT_LOOP
        print(f"executor: {exc}", file=sys.stderr)
        return codes.USAGE


async def _serve(executor: Executor) -> int:
    stop = asyncio.Event()
    install_stop_handlers(stop)
    try:
        await executor.run(stop)
    except ConfigError as exc:
        log.error("configuration_error", error=str(exc))
        return codes.USAGE
    except BrokerUnavailable as exc:
        log.error("broker_unavailable", error=str(exc))
        return codes.BROKER_UNAVAILABLE
    except BrokerError as exc:
        log.error("broker_error", error=str(exc))
        return codes.BROKER_UNAVAILABLE
    except asyncio.CancelledError:
        return codes.INTERRUPTED
    return codes.OK


def _print_tasks(registry: TaskRegistry, *, as_json: bool) -> int:
    if as_json:
        schemas = {name: registry.get(name).params_schema() for name in registry.names()}
        print(json.dumps(schemas, indent=2))
    else:
        for name in registry.names():
            print(f"{name}({', '.join(registry.get(name).parameters)})")
    return codes.OK


def run() -> None:
    """Console-script entry point."""
    codes.exit_with(main)


def default_name() -> str:
    """The executor's name without ``WQ_EXECUTOR_NAME``: ``host.pid``, or in a container its name.

    A container's service runs as PID 1 with the container id as host name, so ``<id>.1`` says
    nothing. Docker's and Podman's DNS answer a reverse lookup of a container's address with
    its name on the network (``workqueue-executor-1.workqueue_default``): a compose replica is
    named as ``docker compose ps`` lists it, and without such an answer it is the host name.
    """
    host = socket.gethostname()
    if os.getpid() != 1:
        return f"{host}.{os.getpid()}"
    return _container_name(host) or host


def _container_name(host: str) -> str | None:
    try:
        address = socket.gethostbyname(host)
        found = socket.gethostbyaddr(address)[0]
    except OSError:  # no DNS, no record: the host name will do
        return None
    name = found.split(".", 1)[0]
    # Some networks name an address after itself (10-1-2-3): no better than the host name.
    if name in ("", host, "localhost") or name.replace("-", ".") == address:
        return None
    return name
