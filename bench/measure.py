"""What every benchmark script shares: its command line, CPU meters and the result line.

Each script measures one system on one figure and prints one line ``WQBENCH-RESULT {json}``
on stdout, which ``bench.cli`` collects; run alone, a script is a small benchmark by itself.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import uuid4

from bench.processes import cpu_seconds, tree_cpu_seconds

RESULT_MARK = "WQBENCH-RESULT "
FIGURES = ("roundtrip", "submit", "latency", "fairness", "backlog", "idle")


def build_parser(prog: str, systems: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line every benchmark script takes."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("figure", choices=FIGURES)
    parser.add_argument("--amqp-url", required=True, help="broker to run against")
    if systems:
        parser.add_argument("--system", choices=systems, default=systems[0])
    parser.add_argument("--n", type=int, default=10_000, help="tasks (default 10000)")
    parser.add_argument("--k", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--prefetch", type=int, default=1, help="per worker (raw only)")
    parser.add_argument("--rate", type=float, default=200.0, help="latency: offered tasks/s")
    parser.add_argument("--backlog", type=int, default=0, help="backlog: tasks queued first")
    parser.add_argument("--window", type=int, default=256, help="raw publisher confirm window")
    parser.add_argument("--broker-pid", type=int, default=0, help="Erlang VM pid, for its CPU")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after seconds")
    return parser


def stop_on_sigterm() -> None:
    """Treat SIGTERM like Ctrl-C, so that a stopped script still runs its clean-up."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def new_prefix(system: str) -> str:
    """A fresh queue-name prefix (``WQ_AMQP_PREFIX``) for one run."""
    return f"wqbench.{system}.{uuid4().hex[:8]}"


def own_cpu_seconds() -> float:
    """CPU seconds of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_peak_rss_mib() -> float:
    """Peak RSS of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Meter:
    """Wall time and CPU of the driver, the workers and the broker over one measured span."""

    worker_pids: list[int]
    broker_pid: int = 0
    _start: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        return {
            "wall": time.perf_counter(),
            "driver": own_cpu_seconds(),
            "workers": tree_cpu_seconds(self.worker_pids),
            "broker": cpu_seconds(self.broker_pid) if self.broker_pid else math.nan,
        }

    @property
    def started_at(self) -> float:
        """``time.perf_counter()`` when the span began."""
        return self._start["wall"]

    def start(self) -> None:
        """Begin the measured span."""
        self._start = self._sample()

    def stop(self, tasks: int) -> dict[str, float]:
        """End the span: seconds, tasks/s and CPU milliseconds per task of each role."""
        end = self._sample()
        seconds = end["wall"] - self._start["wall"]
        result = {"seconds": seconds, "rate": tasks / seconds if seconds > 0 else math.nan}
        for role in ("driver", "workers", "broker"):
            result[f"cpu_ms_{role}"] = (end[role] - self._start[role]) * 1000 / max(tasks, 1)
        return result


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def emit(system: str, figure: str, values: dict[str, float]) -> None:
    """Print the result line ``bench.cli`` reads."""
    line = json.dumps({"system": system, "figure": figure, **values})
    print(RESULT_MARK + line, flush=True)


def parse_result(output: str) -> dict[str, object]:
    """The result a script printed (the last result line of its output)."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARK):
            value: dict[str, object] = json.loads(line[len(RESULT_MARK) :])
            return value
    raise ValueError("no result line in the script's output")


def fail(prog: str, message: str) -> int:
    """Report a failed run on stderr; returns the exit code."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 1
