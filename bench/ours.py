"""This project: the dispatcher's Python API in this process, executors as real processes.

Tasks go through ``dispatcher.client.open_dispatcher`` and ``submit_many`` (recorded in the
SQLite store, published with pipelined confirms); ``python -m executor run --tasks
bench.tasks --concurrency 1`` runs them; a task counts once its result is recorded in the
store.

    python -m bench.ours roundtrip --amqp-url URL --n 10000 --k 2
    python -m bench.ours roundtrip --amqp-url URL --n 10000 --k 2 --queues 4

``--queues Q`` spreads the tasks round-robin over Q task queues (the default one and Q - 1
named ones), every executor consuming all of them: the price of an executor pool on several
queues against one.

``--swept ROWS`` fills the store with ROWS failed tasks finished a day ago before the round
trip, and runs the retention sweep ``dispatcher serve`` runs (one hour's retention) beside it,
on the dispatcher's own store: the round trip while a sweep of a large store goes on. The
result adds the rows it deleted during the round trip.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic import SecretStr

from bench.broker import Probe
from bench.measure import (
    Meter,
    build_parser,
    emit,
    new_prefix,
    own_peak_rss_mib,
    percentile,
    stop_on_sigterm,
)
from bench.processes import Services, peak_rss_mib, service_env
from bench.retention import fill
from bench.workload import backlog_span, fairness_durations, ideal_makespan_s
from common import DEFAULT_QUEUE, AmqpSettings, LogSettings
from common.logging import configure
from common.loop import run as run_loop
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.retention import sweep
from dispatcher.service import Dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store

SYSTEMS = ("ours",)
_POLL_S = 0.02

Measure = Callable[["Run"], Awaitable[dict[str, float]]]


class Run:
    """One run's dispatcher, store, executors and settings."""

    def __init__(
        self, args: Any, prefix: str, dispatcher: Dispatcher, store: Path, services: Services
    ) -> None:
        self.args = args
        self.queues = queue_names(args.queues)
        self.prefix = prefix
        self.dispatcher = dispatcher
        self.store = store
        self.services = services
        self._db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, check_same_thread=False)

    def recorded(self) -> int:
        """Tasks whose result the dispatcher has recorded (read from the store file)."""
        # The store's schema is the dispatcher's business; the smoke test notices a change.
        row = self._db.execute("SELECT count(*) FROM tasks WHERE state = 'succeeded'").fetchone()
        return int(row[0])

    async def wait_recorded(self, count: int) -> None:
        """Poll the store until ``count`` results are recorded."""
        # Another process's thread writes the store: there is no event to wait on here.
        while self.recorded() < count:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)

    def close(self) -> None:
        """Close the read-only store connection."""
        self._db.close()

    def request(self, i: int, params: dict[str, Any] | None = None) -> TaskRequest:
        """The ``i``-th task of a run, on its queue (round-robin over the run's queues)."""
        return TaskRequest("noop", params or {}, queue=self.queues[i % len(self.queues)])


def queue_names(count: int) -> list[str]:
    """The default task queue and ``count - 1`` named ones."""
    return [DEFAULT_QUEUE, *(f"bench{i}" for i in range(1, count))]


def _executor(services: Services, name: str, env: dict[str, str]) -> None:
    argv = ["run", "--tasks", "bench.tasks", "--concurrency", "1", "--name", name]
    services.python(name, "executor", argv, env)


async def _with_dispatcher(
    args: Any, workers: int, measure: Measure, *, consume_results: bool = True
) -> dict[str, float]:
    prefix = new_prefix(args.system)
    amqp = AmqpSettings(url=SecretStr(args.amqp_url), prefix=prefix, confirm_timeout=60)
    topology = amqp.topology
    probe = Probe(args.amqp_url)
    try:
        with tempfile.TemporaryDirectory() as tmp, Services(Path(tmp)) as services:
            store = Path(tmp) / "tasks.sqlite3"
            with (Path(tmp) / "dispatcher.log").open("w") as log:
                _configure_logging(log)
                settings = DispatcherSettings(store=store)
                if getattr(args, "swept", 0):
                    open_store(store).close()  # the schema, then the rows to sweep
                    await asyncio.to_thread(fill, store, args.swept, "failed")
                async with open_dispatcher(
                    amqp, settings, consume_results=consume_results
                ) as dispatcher:
                    queues = queue_names(args.queues)
                    env = service_env(args.amqp_url, prefix, WQ_EXECUTOR_QUEUES=",".join(queues))
                    for i in range(workers):
                        _executor(services, f"executor{i}", env)
                    for queue in queues if workers else ():
                        await asyncio.to_thread(
                            probe.wait_for_consumers, topology.task_queue_of(queue), workers
                        )
                    run = Run(args, prefix, dispatcher, store, services)
                    try:
                        values = await asyncio.wait_for(measure(run), args.timeout)
                    finally:
                        run.close()
                    services.check_alive()
                    return values
    finally:
        named = [topology.task_queue_of(q) for q in queue_names(args.queues)[1:]]
        probe.delete(queues=[*topology.every_queue(), *named], exchanges=[topology.task_exchange])


def _configure_logging(stream: TextIO) -> None:
    # As the service runs: info level, JSON lines (to a file rather than a pipe).
    configure(LogSettings(level="info", format="json"), stream=stream)


async def _roundtrip(run: Run) -> dict[str, float]:
    n = run.args.n
    meter = Meter(run.services.pids, run.args.broker_pid)
    swept = getattr(run.args, "swept", 0)
    sweeping = asyncio.create_task(_sweep(run.dispatcher)) if swept else None
    meter.start()
    await run.dispatcher.submit_many(run.request(i) for i in range(n))
    submitted = time.perf_counter()
    await run.wait_recorded(n)
    values = meter.stop(n)
    if sweeping is not None:
        sweeping.cancel()
        registry = run.dispatcher.metrics.registry
        values["swept_rows"] = registry.get_sample_value("wq_pruned_total", {"kind": "tasks"}) or 0
    values["submit_s"] = submitted - meter.started_at
    values["worker_rss_mib"] = run.services.peak_rss_mib()
    values["driver_rss_mib"] = own_peak_rss_mib()
    return values


async def _sweep(dispatcher: Dispatcher) -> None:
    """What ``dispatcher serve`` does every retention interval, back to back (the
    dispatcher's metrics count the rows deleted)."""
    while True:
        await sweep(
            dispatcher.store,
            datetime.now(UTC),
            retention=timedelta(hours=1),
            executor_retention=timedelta(0),
            metrics=dispatcher.metrics,
        )
        await asyncio.sleep(0)


async def _submit(run: Run) -> dict[str, float]:
    meter = Meter([], run.args.broker_pid)
    meter.start()
    await run.dispatcher.submit_many(TaskRequest("noop") for _ in range(run.args.n))
    return meter.stop(run.args.n)


async def _latency(run: Run) -> dict[str, float]:
    """Each task's latency, and where it went: the phases of a latency profile.

    ``submit``: in ``submit()`` (record written, publish confirmed, marked queued);
    ``to_start``: from there to the executor's ``started_at``; ``run``: ``started_at`` to
    ``finished_at`` (both the executor's clock, the same machine's); ``report``: from
    ``finished_at`` to ``wait()`` returning (the result confirmed, consumed, recorded).
    """
    latencies: list[float] = []
    phases: dict[str, list[float]] = {name: [] for name in _PHASES}

    async def one() -> None:
        began = time.perf_counter()
        began_at = datetime.now(UTC)
        task_id = await run.dispatcher.submit("noop")
        submitted = time.perf_counter()
        record = await run.dispatcher.wait(task_id, timeout=60)
        ended = time.perf_counter()
        latencies.append(ended - began)
        if record.started_at is None or record.finished_at is None:
            return
        submitted_at = began_at + timedelta(seconds=submitted - began)
        ended_at = began_at + timedelta(seconds=ended - began)
        phases["submit"].append(submitted - began)
        phases["to_start"].append((record.started_at - submitted_at).total_seconds())
        phases["run"].append((record.finished_at - record.started_at).total_seconds())
        phases["report"].append((ended_at - record.finished_at).total_seconds())

    meter = Meter(run.services.pids, run.args.broker_pid)
    meter.start()
    pending = []
    for i in range(run.args.n):
        await asyncio.sleep(max(0.0, meter.started_at + i / run.args.rate - time.perf_counter()))
        pending.append(asyncio.create_task(one()))
    await asyncio.gather(*pending)
    ms = [s * 1000 for s in latencies]
    values = meter.stop(run.args.n)
    for name, seconds in phases.items():
        if seconds:
            values[f"{name}_p50_ms"] = percentile([s * 1000 for s in seconds], 50)
            values[f"{name}_p99_ms"] = percentile([s * 1000 for s in seconds], 99)
    return {**values, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


_PHASES = ("submit", "to_start", "run", "report")


async def _fairness(run: Run) -> dict[str, float]:
    durations = fairness_durations(run.args.n)
    began = time.perf_counter()
    await run.dispatcher.submit_many(run.request(i, {"ms": d}) for i, d in enumerate(durations))
    await run.wait_recorded(run.args.n)
    makespan = time.perf_counter() - began
    ideal = ideal_makespan_s(durations, run.args.k)
    return {"makespan_s": makespan, "ideal_s": ideal, "vs_ideal": makespan / ideal}


async def _backlog(run: Run) -> dict[str, float]:
    """Queue the backlog with no executor running, then time part of the drain."""
    backlog = run.args.backlog
    await run.dispatcher.submit_many(TaskRequest("noop") for _ in range(backlog))
    env = service_env(run.args.amqp_url, run.prefix)
    for i in range(run.args.k):
        _executor(run.services, f"executor{i}", env)
    first, window = backlog_span(backlog)
    await run.wait_recorded(first)
    began = time.perf_counter()
    await run.wait_recorded(first + window)
    seconds = time.perf_counter() - began
    return {"rate": window / seconds, "window": window, "backlog": backlog}


async def _idle(run: Run) -> dict[str, float]:
    await asyncio.sleep(1.0)
    serve_store = str(run.store.parent / "serve.sqlite3")
    env = service_env(run.args.amqp_url, run.prefix, WQ_DISPATCHER_STORE=serve_store)
    run.services.python("dispatcher", "dispatcher", ["serve", "--no-http"], env)
    # Idle means started and consuming: this process's own result consumer makes one.
    probe, results_queue = Probe(run.args.amqp_url), AmqpSettings(prefix=run.prefix).topology
    await asyncio.to_thread(probe.wait_for_consumers, results_queue.results_queue, 2)
    await asyncio.sleep(0.5)
    executor_pid, dispatcher_pid = run.services.pids
    return {
        "idle_rss_mib": peak_rss_mib(executor_pid),
        "dispatcher_idle_rss_mib": peak_rss_mib(dispatcher_pid),
    }


async def run_figure(args: Any) -> dict[str, float]:
    """Measure ``args.figure`` with this project."""
    figures: dict[str, tuple[Measure, int, bool]] = {
        "roundtrip": (_roundtrip, args.k, True),
        "submit": (_submit, 0, False),
        "latency": (_latency, args.k, True),
        "fairness": (_fairness, args.k, True),
        "backlog": (_backlog, 0, True),
        "idle": (_idle, 1, True),
    }
    measure, workers, consume = figures[args.figure]
    return await _with_dispatcher(args, workers, measure, consume_results=consume)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one figure and print its result line."""
    parser = build_parser("bench.ours", SYSTEMS)
    parser.add_argument(
        "--queues", type=int, default=1, help="task queues to spread tasks over (default 1)"
    )
    parser.add_argument(
        "--swept", type=int, default=0, help="roundtrip: rows to sweep beside it (default 0)"
    )
    args = parser.parse_args(argv)
    if args.swept and args.figure != "roundtrip":
        parser.error("--swept goes with the roundtrip figure")
    if args.queues < 1:
        parser.error("--queues is 1 or more")
    stop_on_sigterm()
    emit(args.system, args.figure, run_loop(run_figure(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
