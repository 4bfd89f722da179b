"""Raw baselines: an aio-pika producer and result collector driving ``bench.raw_worker``.

The producer publishes with confirms (a window of them in flight, or one at a time for the
latency figure) and ``mandatory``; the collector consumes the results queue and acks; the
workers are raw pika or raw aio-pika. No store, no models, no logging.

    python -m bench.raw roundtrip --amqp-url URL --system raw-pika --n 10000 --k 2
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractExchange, AbstractIncomingMessage

from bench.broker import Probe
from bench.measure import Meter, build_parser, emit, new_prefix, percentile, stop_on_sigterm
from bench.processes import Services, peak_rss_mib, service_env
from bench.workload import (
    RawNames,
    backlog_span,
    fairness_durations,
    ideal_makespan_s,
    raw_task,
    raw_task_properties,
)
from common.loop import run as run_loop

SYSTEMS = ("raw-pika", "raw-aio-pika", "raw-pika-asyncio")
_RESULT_PREFETCH = 64


class RawClient:
    """Producer and result collector on two connections, as the dispatcher has."""

    def __init__(self, url: str, names: RawNames) -> None:
        self._url = url
        self._names = names
        self._connections: list[AbstractConnection] = []
        self._exchange: AbstractExchange | None = None
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.received = 0
        self.expected = math.inf
        self.done = asyncio.Event()

    async def open(self, *, collect: bool = True) -> None:
        """Connect, declare the protocol's topology, and start collecting results."""
        names = self._names
        connection = await aio_pika.connect(self._url)
        self._connections.append(connection)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(
            names.tasks, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for name in (f"{names.tasks}.dead", f"{names.results}.dead"):
            await channel.declare_queue(name, durable=True)
        for name in (names.tasks, names.results):
            await channel.declare_queue(name, durable=True, arguments=names.arguments(name))
        tasks = await channel.get_queue(names.tasks, ensure=False)
        await tasks.bind(self._exchange, "task")
        if collect:
            consuming = await aio_pika.connect(self._url)
            self._connections.append(consuming)
            channel = await consuming.channel()
            await channel.set_qos(prefetch_count=_RESULT_PREFETCH)
            results = await channel.get_queue(names.results, ensure=False)
            await results.consume(self._on_result)

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        sent = self.sent_at.pop(message.correlation_id or "", None)
        if sent is not None:
            self.latencies.append(time.perf_counter() - sent)
        await message.ack()
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    @property
    def prefix(self) -> str:
        """The run's name prefix."""
        return self._names.prefix

    async def wait_received(self, count: int) -> None:
        """Wait until ``count`` results have been collected."""
        while self.received < count:  # noqa: ASYNC110 (a threshold per call; polling is simpler)
            await asyncio.sleep(0.01)

    async def publish(self, params: dict[str, Any]) -> None:
        """Publish one task and wait for its confirm."""
        assert self._exchange is not None
        task_id, body = raw_task("noop", params)
        properties = raw_task_properties(task_id, "noop", self._names.results)
        self.sent_at[task_id] = time.perf_counter()
        await self._exchange.publish(
            aio_pika.Message(body, **properties), routing_key="task", mandatory=True
        )

    async def publish_many(self, params: Sequence[dict[str, Any]], window: int) -> None:
        """Publish with up to ``window`` confirms in flight."""
        slots = asyncio.Semaphore(window)

        async def one(p: dict[str, Any]) -> None:
            async with slots:
                await self.publish(p)

        await asyncio.gather(*(one(p) for p in params))

    async def close(self) -> None:
        """Close both connections."""
        for connection in self._connections:
            await connection.close()


def _worker_args(args: Any, prefix: str) -> list[str]:
    client = args.system.removeprefix("raw-")
    worker_args = ["--client", client, "--amqp-url", args.amqp_url, "--prefix", prefix]
    return [*worker_args, "--prefetch", str(args.prefetch)]


async def _with_workers(
    args: Any, workers: int, measure: Callable[[RawClient, Services], Any], *, collect: bool = True
) -> dict[str, float]:
    names = RawNames(new_prefix(args.system))
    client = RawClient(args.amqp_url, names)
    probe = Probe(args.amqp_url)
    try:
        with tempfile.TemporaryDirectory() as tmp, Services(Path(tmp)) as services:
            await client.open(collect=collect)
            env = service_env(args.amqp_url, names.prefix)
            for i in range(workers):
                services.python(
                    f"worker{i}", "bench.raw_worker", _worker_args(args, names.prefix), env
                )
            if workers:
                await asyncio.to_thread(probe.wait_for_consumers, names.tasks, workers)
            values: dict[str, float] = await asyncio.wait_for(
                measure(client, services), args.timeout
            )
            services.check_alive()
            return values
    finally:
        await client.close()
        probe.delete(queues=names.queues, exchanges=[names.tasks])


async def _roundtrip(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    client.expected = args.n
    meter = Meter(services.pids, args.broker_pid)
    meter.start()
    await client.publish_many([{}] * args.n, args.window)
    await client.done.wait()
    return {**meter.stop(args.n), "worker_rss_mib": services.peak_rss_mib()}


async def _submit(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    meter = Meter([], args.broker_pid)
    meter.start()
    await client.publish_many([{}] * args.n, args.window)
    return meter.stop(args.n)


async def _latency(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    client.expected = args.n
    meter = Meter(services.pids, args.broker_pid)
    meter.start()
    pending = []
    for i in range(args.n):
        await asyncio.sleep(max(0.0, meter.started_at + i / args.rate - time.perf_counter()))
        pending.append(asyncio.create_task(client.publish({})))
    await asyncio.gather(*pending)
    await client.done.wait()
    ms = [s * 1000 for s in client.latencies]
    values = meter.stop(args.n)
    return {**values, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def _fairness(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    durations = fairness_durations(args.n)
    client.expected = args.n
    began = time.perf_counter()
    await client.publish_many([{"ms": d} for d in durations], args.window)
    await client.done.wait()
    makespan = time.perf_counter() - began
    ideal = ideal_makespan_s(durations, args.k)
    return {"makespan_s": makespan, "ideal_s": ideal, "vs_ideal": makespan / ideal}


async def _backlog(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    """Queue the backlog with no worker running, then time part of the drain."""
    await client.publish_many([{}] * args.backlog, args.window)
    client.sent_at.clear()
    for i in range(args.k):
        env = service_env(args.amqp_url, client.prefix)
        services.python(f"worker{i}", "bench.raw_worker", _worker_args(args, client.prefix), env)
    first, window = backlog_span(args.backlog)
    await client.wait_received(first)
    began = time.perf_counter()
    await client.wait_received(first + window)
    seconds = time.perf_counter() - began
    return {"rate": window / seconds, "window": window, "backlog": args.backlog}


async def _idle(args: Any, client: RawClient, services: Services) -> dict[str, float]:
    await asyncio.sleep(1.0)
    return {"idle_rss_mib": peak_rss_mib(services.pids[0])}


async def run(args: Any) -> dict[str, float]:
    """Measure ``args.figure`` with the raw baseline."""
    figures = {
        "roundtrip": (_roundtrip, args.k),
        "submit": (_submit, 0),
        "latency": (_latency, args.k),
        "fairness": (_fairness, args.k),
        "backlog": (_backlog, 0),
        "idle": (_idle, 1),
    }
    if args.figure not in figures:
        raise SystemExit(f"bench.raw: no raw baseline for {args.figure}")
    measure, workers = figures[args.figure]
    return await _with_workers(
        args, workers, lambda c, s: measure(args, c, s), collect=args.figure != "submit"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run one figure and print its result line."""
    args = build_parser("bench.raw", SYSTEMS).parse_args(argv)
    stop_on_sigterm()
    emit(args.system, args.figure, run_loop(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
