"""Which runs make up the suite, and running them as child processes.

Every run is one benchmark script in its own process (``python -m bench.<module> FIGURE
...``), so that each measures its own CPU and memory and nothing leaks between runs. The
runs of one round go side by side, every system in turn, so that a slow spell of a shared
machine hits all of them; rounds repeat for a median.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.measure import parse_result
from bench.processes import REPO

FULL_N = 10_000
QUICK_N = 1_000
LATENCY_RATE = 200.0
_CLEAN_UP_S = 30.0


@dataclass(frozen=True, slots=True)
class Job:
    """One run: a script, a figure and its arguments; ``key`` names its result."""

    key: str
    module: str
    figure: str
    args: tuple[str, ...] = ()
    once: bool = False  # measured in the first round only (slow, or a steady quantity)


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one suite run."""

    n: int
    latency_seconds: float
    fairness_n: int
    backlog_small: int
    backlog_large: int
    ks: tuple[int, ...] = (1, 2, 4)


def plan_for(*, quick: bool = False, smoke: bool = False) -> Plan:
    """Full (N=10,000, 100,000-task backlog), quick, or smoke (tiny, figures meaningless)."""
    if smoke:
        return Plan(20, 0.1, 10, 20, 40, ks=(1,))
    if quick:
        return Plan(QUICK_N, 3.0, 60, 1_000, 10_000)
    return Plan(FULL_N, 15.0, 200, 1_000, 100_000)


def _roundtrip_jobs(plan: Plan, peers: bool) -> Iterable[Job]:
    n = f"--n={plan.n}"
    for k in plan.ks:
        kk = f"--k={k}"
        yield Job(f"rt.ours.k{k}", "bench.ours", "roundtrip", (n, kk))
        yield Job(f"rt.raw-pika.k{k}", "bench.raw", "roundtrip", ("--system=raw-pika", n, kk))
        if k == 1:
            continue
        if k == 2:  # one pool on four queues, against one queue just above
            yield Job(f"rt.ours-4q.k{k}", "bench.ours", "roundtrip", (n, kk, "--queues=4"))
        for raw in ("raw-aio-pika", "raw-pika-asyncio"):
            yield Job(f"rt.{raw}.k{k}", "bench.raw", "roundtrip", (f"--system={raw}", n, kk))
        if peers:
            yield Job(f"rt.celery.k{k}", "bench.celery_peer", "roundtrip", (n, kk))
            yield Job(f"rt.dramatiq.k{k}", "bench.dramatiq_peer", "roundtrip", (n, kk))


def _backlog_jobs(plan: Plan) -> Iterable[Job]:
    for size, backlog in (("small", plan.backlog_small), ("large", plan.backlog_large)):
        once = size == "large"  # the large one takes minutes: measured in the first round
        args = (f"--backlog={backlog}", "--k=2")
        yield Job(f"backlog.ours.{size}", "bench.ours", "backlog", args, once=once)
        raw = ("--system=raw-pika", *args)
        yield Job(f"backlog.raw.{size}", "bench.raw", "backlog", raw, once=once)


def jobs(plan: Plan, *, peers: bool = True) -> list[Job]:
    """Every run of one round, in the order they run."""
    n = f"--n={plan.n}"
    latency_n = f"--n={int(LATENCY_RATE * plan.latency_seconds)}"
    fair_n = f"--n={plan.fairness_n}"
    return [
        *_roundtrip_jobs(plan, peers),
        Job("submit.ours", "bench.ours", "submit", (n,)),
        Job("submit.raw", "bench.raw", "submit", ("--system=raw-aio-pika", n)),
        Job("latency.ours", "bench.ours", "latency", (latency_n, "--k=2")),
        Job("latency.raw", "bench.raw", "latency", ("--system=raw-pika", latency_n, "--k=2")),
        Job("fair.ours", "bench.ours", "fairness", (fair_n, "--k=2")),
        Job("fair.ours-4q", "bench.ours", "fairness", (fair_n, "--k=2", "--queues=4")),
        Job("fair.raw-p1", "bench.raw", "fairness", ("--system=raw-pika", fair_n, "--k=2")),
        Job(
            "fair.raw-p100",
            "bench.raw",
            "fairness",
            ("--system=raw-pika", fair_n, "--k=2", "--prefetch=100"),
        ),
        Job("idle.ours", "bench.ours", "idle", (), once=True),
        Job("idle.raw-pika", "bench.raw", "idle", ("--system=raw-pika",), once=True),
        Job("idle.raw-aio-pika", "bench.raw", "idle", ("--system=raw-aio-pika",), once=True),
        *_backlog_jobs(plan),
    ]


@dataclass
class Results:
    """Every run's values, by job key."""

    runs: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, values: dict[str, object]) -> None:
        """Keep one run's values."""
        self.runs.setdefault(key, []).append(values)

    def median(self, key: str, name: str) -> float | None:
        """The median of ``name`` over the runs of ``key``; None when there is none."""
        values = [v[name] for v in self.runs.get(key, []) if isinstance(v.get(name), int | float)]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        return statistics.median(numbers) if numbers else None

    def count(self, key: str) -> int:
        """How many runs of ``key`` succeeded."""
        return len(self.runs.get(key, []))


def run_job(job: Job, amqp_url: str, broker_pid: int | None, timeout: float) -> dict[str, object]:
    """Run one job in a child process and return its result values.

    On Ctrl-C the child gets SIGINT and time to clean up (stop its workers, delete its
    queues) before the interrupt goes on.
    """
    argv = [sys.executable, "-m", job.module, job.figure, f"--amqp-url={amqp_url}", *job.args]
    argv += [f"--timeout={timeout:g}"]
    if broker_pid:
        argv.append(f"--broker-pid={broker_pid}")
    child = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout + 120)
    except BaseException:
        child.send_signal(signal.SIGINT)
        try:
            child.communicate(timeout=_CLEAN_UP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        raise
    if child.returncode != 0:
        raise RuntimeError(f"exit {child.returncode}: {stderr[-3000:]}")
    return parse_result(stdout)


def run_rounds(
    all_jobs: list[Job],
    *,
    amqp_url: str,
    broker_pid: int | None,
    repeats: int,
    budget_s: float,
    timeout: float,
    parallel: int = 1,
) -> Results:
    """Run the rounds, stopping early when another round would overrun the time budget.

    ``parallel`` > 1 runs that many jobs at once: only for smoke tests, since side-by-side
    jobs compete for the same cores and their figures mean nothing.
    """
    results = Results()
    began = time.monotonic()
    took: dict[str, float] = {}

    def one(job: Job, round_no: int) -> None:
        print(f"bench: round {round_no}: {job.key} ...", file=sys.stderr, flush=True)
        job_began = time.monotonic()
        try:
            results.add(job.key, run_job(job, amqp_url, broker_pid, timeout))
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            results.failures[job.key] = str(exc)
            print(f"bench: {job.key} failed: {exc}", file=sys.stderr, flush=True)
        took[job.key] = time.monotonic() - job_began

    for round_no in range(1, repeats + 1):
        todo = [j for j in all_jobs if round_no == 1 or not j.once]
        if parallel == 1:
            for job in todo:
                one(job, round_no)
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                list(pool.map(one, todo, [round_no] * len(todo)))
        next_round = sum(took[j.key] for j in all_jobs if not j.once)
        if time.monotonic() - began + next_round > budget_s and round_no < repeats:
            print(
                f"bench: stopping after {round_no} round(s): another would overrun the"
                f" {budget_s / 60:g}-minute budget",
                file=sys.stderr,
            )
            break
    return results
