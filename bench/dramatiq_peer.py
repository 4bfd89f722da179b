"""Dramatiq on the same round trip: one thread per process, prefetch 1, confirms on.

Dramatiq has no result backend over AMQP, so the task sends its result the Dramatiq way:
the ``noop`` actor enqueues a ``reply`` message (a confirmed publish, before Dramatiq acks
the task), and this process collects the replies from that queue with pika. The workers are
``dramatiq --processes K --threads 1`` with ``dramatiq_queue_prefetch=1``; the client sends
with ``noop.send()`` (each publish waits for its confirm).

The broker is built at import from ``WQBENCH_AMQP_URL`` and ``WQBENCH_PREFIX``, because the
``dramatiq`` command imports this module to find the actors.

    python -m bench.dramatiq_peer roundtrip --amqp-url URL --n 10000 --k 2
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.broker import Probe
from bench.measure import Meter, build_parser, emit, new_prefix, stop_on_sigterm
from bench.processes import Services

_PREFIX = os.environ.get("WQBENCH_PREFIX", "wqbench.dramatiq")
TASK_QUEUE = f"{_PREFIX}.dramatiq"
REPLY_QUEUE = f"{_PREFIX}.dramatiq-replies"

broker = RabbitmqBroker(
    url=os.environ.get("WQBENCH_AMQP_URL", "amqp://guest:guest@localhost:5672/"),
    confirm_delivery=True,
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=REPLY_QUEUE, max_retries=0)
def reply(ms: int = 0) -> None:
    """The result message; never run, only collected."""


@dramatiq.actor(queue_name=TASK_QUEUE, max_retries=0)
def noop(ms: int = 0) -> None:
    """Do nothing (or sleep ``ms``), then report with a confirmed publish."""
    if ms:
        time.sleep(ms / 1000)
    reply.send()


def _reply_channel(connection: pika.BlockingConnection, done: threading.Event) -> Any:
    # Dramatiq declares the reply queue when the first reply is sent; wait for it.
    while not done.is_set():
        channel = connection.channel()
        try:
            channel.queue_declare(REPLY_QUEUE, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            time.sleep(0.02)
            continue
        channel.basic_qos(prefetch_count=64)
        return channel
    return None


def _collect(url: str, expected: int, done: threading.Event) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = _reply_channel(connection, done)
    if channel is None:
        connection.close()
        return
    received = 0
    for method, _, _ in channel.consume(REPLY_QUEUE, inactivity_timeout=1):
        if method is None:
            if done.is_set():
                break
            continue
        channel.basic_ack(method.delivery_tag)
        received += 1
        if received >= expected:
            break
    done.set()
    connection.close()


def _all_queues() -> list[str]:
    # Dramatiq declares a delay (.DQ) and a dead-letter (.XQ) queue next to each queue.
    return [f"{q}{suffix}" for q in (TASK_QUEUE, REPLY_QUEUE) for suffix in ("", ".DQ", ".XQ")]


def _roundtrip(args: Any) -> dict[str, float]:
    probe = Probe(args.amqp_url)
    env = {**os.environ, "dramatiq_queue_prefetch": "1"}
    argv = ["bench.dramatiq_peer", "--processes", str(args.k), "--threads", "1"]
    argv += ["--queues", TASK_QUEUE]
    try:
        with tempfile.TemporaryDirectory() as tmp, Services(Path(tmp)) as services:
            services.python("dramatiq", "dramatiq", argv, env)
            probe.wait_for_consumers(TASK_QUEUE, args.k)
            done = threading.Event()
            collector = threading.Thread(target=_collect, args=(args.amqp_url, args.n, done))
            collector.start()
            meter = Meter(services.pids, args.broker_pid)
            meter.start()
            for _ in range(args.n):
                noop.send()
            submitted = time.perf_counter()
            finished = done.wait(timeout=args.timeout)
            values: dict[str, float] = meter.stop(args.n)
            done.set()
            collector.join()
            if not finished:
                raise TimeoutError("not every reply arrived")
            values["submit_s"] = submitted - meter.started_at
            values["worker_rss_mib"] = services.peak_rss_mib()
            services.check_alive()
            return values
    finally:
        broker.close()
        probe.delete(queues=_all_queues())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: re-executes itself with the broker's environment set, then measures."""
    args = build_parser("bench.dramatiq_peer").parse_args(argv)
    stop_on_sigterm()
    if args.figure != "roundtrip":
        raise SystemExit("bench.dramatiq_peer: only the round trip is measured")
    if os.environ.get("WQBENCH_AMQP_URL") != args.amqp_url:
        env = {**os.environ, "WQBENCH_AMQP_URL": args.amqp_url}
        env["WQBENCH_PREFIX"] = new_prefix("dramatiq")
        os.execve(sys.executable, [sys.executable, "-m", "bench.dramatiq_peer", *sys.argv[1:]], env)
    emit("dramatiq", args.figure, _roundtrip(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
