"""Celery on the same round trip: acks_late, prefetch multiplier 1, confirms on, rpc results.

The workers are ``celery worker --pool prefork --concurrency 1`` processes (Celery's default
pool, one slot each, like an executor with ``--concurrency 1``). The cheaper ``solo`` pool
stalls here for about 10 s at a time with ``confirm_publish``: a delivery that arrives while
the worker waits for its result's confirm sits in py-amqp's buffer until a timer wakes the
event loop. The client publishes every task with ``delay()`` (each publish
waits for its confirm) and then collects every result from the rpc backend.

The app is built at import from ``WQBENCH_AMQP_URL`` and ``WQBENCH_PREFIX``, because the
``celery`` command imports this module to find it.

    python -m bench.celery_peer roundtrip --amqp-url URL --n 10000 --k 2
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.result import ResultSet  # type: ignore[import-untyped]

from bench.broker import Probe
from bench.measure import Meter, build_parser, emit, new_prefix, stop_on_sigterm
from bench.processes import Services

_PREFIX = os.environ.get("WQBENCH_PREFIX", "wqbench.celery")
QUEUE = f"{_PREFIX}.celery"

app = Celery("wqbench", broker=os.environ.get("WQBENCH_AMQP_URL"), backend="rpc://")
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    # Results are persistent messages, as the executor's are.
    result_persistent=True,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")  # type: ignore[untyped-decorator]
def noop(ms: int = 0) -> None:
    """Do nothing (or sleep ``ms``)."""
    if ms:
        time.sleep(ms / 1000)


def _roundtrip(args: Any) -> dict[str, float]:
    probe = Probe(args.amqp_url)
    env = {**os.environ, "WQBENCH_AMQP_URL": args.amqp_url, "WQBENCH_PREFIX": _PREFIX}
    argv = ["-A", "bench.celery_peer", "worker", "--pool", "prefork", "--concurrency", "1"]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", QUEUE]
    argv += ["--loglevel", "WARNING"]
    try:
        with tempfile.TemporaryDirectory() as tmp, Services(Path(tmp)) as services:
            for i in range(args.k):
                services.python(f"celery{i}", "celery", [*argv, "-n", f"w{i}@%h"], env)
            probe.wait_for_consumers(QUEUE, args.k)
            meter = Meter(services.pids, args.broker_pid)
            meter.start()
            results = ResultSet([noop.delay() for _ in range(args.n)])
            submitted = time.perf_counter()
            # One join over the set: the rpc backend drains the reply queue once; a get()
            # per result would wait on the queue for each in turn (about 0.2 s apiece here).
            results.get(timeout=args.timeout)
            values: dict[str, float] = meter.stop(args.n)
            values["submit_s"] = submitted - meter.started_at
            values["worker_rss_mib"] = services.peak_rss_mib()
            services.check_alive()
            return values
    finally:
        probe.delete(queues=[QUEUE], exchanges=[QUEUE])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: re-executes itself with the app's environment set, then measures."""
    args = build_parser("bench.celery_peer").parse_args(argv)
    stop_on_sigterm()
    if args.figure != "roundtrip":
        raise SystemExit("bench.celery_peer: only the round trip is measured")
    if os.environ.get("WQBENCH_AMQP_URL") != args.amqp_url:
        env = {
            **os.environ,
            "WQBENCH_AMQP_URL": args.amqp_url,
            "WQBENCH_PREFIX": new_prefix("celery"),
        }
        os.execve(sys.executable, [sys.executable, "-m", "bench.celery_peer", *sys.argv[1:]], env)
    emit("celery", args.figure, _roundtrip(args))
    app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
