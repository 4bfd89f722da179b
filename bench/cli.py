"""``python -m bench``: run every benchmark side by side and print the table.

By default a private RabbitMQ node is started for the run (and stopped and deleted after);
``--amqp-url`` uses an existing broker instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.broker import BrokerStartError, private_broker
from bench.report import render
from bench.suite import jobs, plan_for, run_rounds


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the work-queue pair against raw pika/aio-pika, Celery and "
        "Dramatiq on one broker, side by side, and print the table (docs/benchmarks.md).",
    )
    parser.add_argument("--quick", action="store_true", help="N=1,000 and shorter runs")
    parser.add_argument(
        "--amqp-url", help="use this broker instead of starting a private RabbitMQ node"
    )
    parser.add_argument("--repeats", type=int, default=3, help="rounds for the median (3)")
    parser.add_argument(
        "--budget", type=float, default=15.0, help="minutes; no new round past it (15)"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip Celery and Dramatiq")
    parser.add_argument("--only", help="run only jobs whose key starts with this, e.g. rt.")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, runs in parallel: checks the scripts work; the figures mean nothing",
    )
    return parser


def machine_description(broker_version: str) -> str:
    """Cores, CPU model, Python and RabbitMQ versions: the table's context."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores ({model}), Python {platform.python_version()},"
        f" RabbitMQ {broker_version}, load average at start {load:.2f}"
    )


def _broker_version(url: str) -> str:
    code = (
        "import pika, sys; c = pika.BlockingConnection(pika.URLParameters(sys.argv[1]));"
        "print(c._impl.server_properties.get('version', b'?').decode()); c.close()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when a run failed, 0 otherwise)."""
    args = build_parser().parse_args(argv)
    plan = plan_for(quick=args.quick, smoke=args.smoke)
    selected = [j for j in jobs(plan, peers=not args.no_peers) if j.key.startswith(args.only or "")]
    began = time.monotonic()
    with ExitStack() as stack:
        if args.amqp_url:
            url, beam_pid, version = args.amqp_url, None, _broker_version(args.amqp_url)
        else:
            try:
                broker = stack.enter_context(private_broker())
            except BrokerStartError as exc:
                print(f"bench: {exc}", file=sys.stderr)
                return 69
            url, beam_pid, version = broker.url, broker.beam_pid, broker.version
        machine = machine_description(version)
        print(f"bench: {machine}; {len(selected)} runs per round", file=sys.stderr, flush=True)
        results = run_rounds(
            selected,
            amqp_url=url,
            broker_pid=beam_pid,
            repeats=args.repeats,
            budget_s=args.budget * 60,
            timeout=args.timeout,
            parallel=4 if args.smoke else 1,
        )
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\nMachine: {machine}")
    print(f"Command: {command.strip()} (took {(time.monotonic() - began) / 60:.1f} min)")
    print(f"N={plan.n}; medians of the runs counted in the last column.\n")
    print(render(results))
    return 1 if results.failures else 0
