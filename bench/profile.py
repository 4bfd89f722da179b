"""Where the CPU goes per task: py-spy on the dispatcher and the executors of a round trip.

Runs ``bench.ours roundtrip`` (or ``latency``) under ``py-spy record --subprocesses``
(Python frames only; time in C code such as pydantic-core or sqlite3 is charged to the Python
frame that called it), sorts every sample of each process into a category by the first
frame from the leaf up that belongs to one, and prints each category's share of the
process's busy samples and its CPU milliseconds per task (the share times the CPU per task
the run measured).

    python -m bench.profile --amqp-url URL [--n 10000] [--k 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.measure import parse_result
from bench.ours import SYSTEMS
from bench.processes import REPO

# (category, pattern on "function (file:line)"); the first frame from the leaf that matches
# any pattern decides. Generic helpers (json, enum, datetime, ...) match nothing, so their
# time goes to whoever called them: json under structlog is logging, under pydantic models.
RULES: tuple[tuple[str, str], ...] = (
    ("start-up (imports)", r"importlib|<frozen"),
    ("socket send/recv (syscalls)", r"_SelectorSocketTransport\.(write|_read_ready)|"
     r"_sigint_safe_send|_sigint_safe_recv|socket\.py|ssl\.py|_Transport\._flush"),
    ("handler thread hop (thread start, wake-ups)", r"concurrent/futures|threading\.py|"
     r"run_in_executor|wrap_future|call_soon_threadsafe|_write_to_self|_read_from_self|"
     r"wake_threadsafe|add_callback_threadsafe|executor/threads\.py"),
    ("logging: structlog + stdlib handler", r"structlog/|logging/__init__|common/logging"),
    ("pydantic: models, validation, JSON", r"pydantic|common/codec|common/messages|registry\.py|"
     r"\b(build_task|_result|_error|rejection_result|execute|decide) \((executor|dispatcher)/"),
    ("SQL store (incl. the sqlite3 C calls)", r"dispatcher/store/|sqlite3"),
    ("AMQP client: aio-pika / aiormq / pamqp", r"aio_pika/|aiormq/|pamqp/"),
    ("AMQP client: pika", r"pika/"),
    ("asyncio event loop and tasks", r"asyncio/|selectors\.py"),
    ("project code (other)", r"(common|dispatcher|executor)/"),
    ("bench harness", r"bench/"),
)  # fmt: skip
_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in RULES)
_PROCESS = re.compile(r'^process (\d+):"(.*)"$')
EXCLUDED = ("idle", "start-up (imports)", "bench harness")


# Leaf frames of a thread that is waiting, not running: py-spy counts some of them as busy
# here, so they are dropped before the shares are computed.
_IDLE = re.compile(
    r"^(EpollSelector\.select \(selectors\.py|PollPoller\.poll \(pika/|Condition\.wait "
    r"\(threading\.py|_worker \(concurrent/futures/thread\.py:81|_next_delivery \(bench/|"
    r"_HandlerThread\._wait_for_work \(executor/threads\.py)"
)
_HARNESS = re.compile(r"bench/(broker|processes|measure)\.py")


def categorise(frames: Sequence[str]) -> str:
    """The category of one sample, from its frames (root first)."""
    if frames and _IDLE.search(frames[-1]):
        return "idle"
    if any(_HARNESS.search(frame) for frame in frames):
        return "bench harness"
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other (interpreter, stdlib)"


def role_of(command: str) -> str:
    """Which part of the system a sampled process is (the root is the dispatcher)."""
    if "-m executor" in command:
        return "executor"
    return "other"


def summarise(raw: str) -> dict[str, Counter[str]]:
    """Samples per role and category, from py-spy's raw (collapsed) output."""
    by_role: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        # With --subprocesses each stack starts with its process and its parents, root first.
        processes = [m for f in frames if (m := _PROCESS.match(f))]
        role = role_of(processes[-1].group(2)) if len(processes) > 1 else "dispatcher"
        category = categorise(frames[len(processes) :])
        by_role.setdefault(role, Counter())[category] += int(count)
    return by_role


def top_frames(raw: str, count: int) -> str:
    """The busiest leaf frames of each role, with their category."""
    leaves: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        frames = stack.split(";")
        processes = [m for f in frames if (m := _PROCESS.match(f))]
        role = role_of(processes[-1].group(2)) if len(processes) > 1 else "dispatcher"
        category = categorise(frames[len(processes) :])
        if category not in EXCLUDED:
            leaves.setdefault(role, Counter())[f"{frames[-1]}  [{category}]"] += int(samples)
    lines = []
    for role, counter in sorted(leaves.items()):
        lines.append(f"\n{role}: top leaf frames")
        lines += [f"  {n:6} {leaf}" for leaf, n in counter.most_common(count)]
    return "\n".join(lines)


def render(by_role: dict[str, Counter[str]], cpu_ms: dict[str, float]) -> str:
    """One block per role: category, share of busy samples, CPU ms per task."""
    lines = []
    for role in ("executor", "dispatcher"):
        counts = by_role.get(role, Counter())
        busy = sum(n for name, n in counts.items() if name not in EXCLUDED)
        per_task = cpu_ms.get(role, float("nan"))
        lines.append(f"\n{role}: {per_task:.2f} CPU ms per task measured, {busy} samples")
        for name, n in counts.most_common():
            if name in EXCLUDED or not busy:
                continue
            share = n / busy
            lines.append(f"  {name:45} {share * 100:5.1f}%  {share * per_task:5.2f} ms")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--system", choices=SYSTEMS, default="ours")
    parser.add_argument("--figure", choices=("roundtrip", "latency"), default="roundtrip")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--keep", type=Path, help="also write py-spy's raw output here")
    parser.add_argument("--top", type=int, default=0, help="also list the top leaf frames")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        spy = ["py-spy", "record", "--subprocesses", f"--rate={args.rate}"]
        spy += ["--format=raw", f"--output={out}", "--"]
        run = [sys.executable, "-m", "bench.ours", args.figure, f"--amqp-url={args.amqp_url}"]
        run += [f"--system={args.system}", f"--n={args.n}", f"--k={args.k}"]
        done = subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), *spy[1:], *run],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        raw = out.read_text()
        if args.keep:
            args.keep.write_text(raw)
    result = parse_result(done.stdout)
    cpu = {
        "executor": float(str(result["cpu_ms_workers"])),
        "dispatcher": float(str(result["cpu_ms_driver"])),
    }
    rate = float(str(result["rate"]))
    print(f"{args.system} {args.figure} K={args.k}, N={args.n}: {rate:.0f} tasks/s under py-spy")
    print(render(summarise(raw), cpu))
    if args.top:
        print(top_frames(raw, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
