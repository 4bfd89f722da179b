"""The soak: many tasks through ``dispatcher serve`` and executors while faults keep landing.

    python -m tests.faults.soak --tasks 20000 --executors 3        # the figures in reliability.md
    python -m tests.faults.soak --tasks 300 --scale 0.1            # a small run (./scripts/test)

Everything is real: a private RabbitMQ node of its own (never the shared one), the services as
processes, faults as signals to them and commands to the node. Every task records each of its
runs in a file, and at the end every task id is counted: its outcome in the store, its runs, and
whether it is in the dead-letter queue. Prints one JSON object of figures; exits 1 when a target
is missed (a task lost, dead-lettered by faults alone, or left succeeded in the dead letters).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from uuid import UUID

from pydantic import SecretStr

from common import AmqpSettings
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.faults.private_broker import PrivateBroker
from tests.integration.broker import Broker
from tests.integration.conftest import Processes

# The fault mix of the soak, per 20,000 tasks; --scale multiplies it.
FAULTS = {
    "executor_kill": 20,
    "executor_sigterm": 10,
    "dispatcher_kill": 5,
    "broker_restart": 3,
    "broker_crash": 2,
    "close_connections": 3,
    "memory_alarm": 2,
}
SLOTS_PER_EXECUTOR = 2


@dataclass
class Figures:
    """What the soak measured; the targets are the zeros."""

    tasks: int
    faults: dict[str, int]
    seconds: float = 0.0
    succeeded: int = 0
    lost: int = 0  # no final outcome at the end
    not_succeeded: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # of those, by error kind and message
    dead_never_started: int = 0
    succeeded_in_dead_letters: int = 0
    ran_more_than_once: int = 0
    duplicate_results: int = 0
    recovery_s: dict[str, list[float]] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return (
            self.lost == 0
            and self.dead_never_started == 0
            and self.succeeded_in_dead_letters == 0
            and self.succeeded == self.tasks
        )


class Soak:
    """One run: the node, the services, the faults, and the count at the end."""

    def __init__(self, broker: PrivateBroker, work: Path, *, executors: int, task_ms: int) -> None:
        self.broker = broker
        self.work = work
        self.runs = work / "runs"
        self.runs.mkdir()
        self.store = work / "tasks.sqlite3"
        self.amqp = AmqpSettings(url=SecretStr(broker.url), prefix="wq.soak", confirm_timeout=10)
        self.processes = Processes(self.amqp, work)
        self.executor_names = [f"exec-{n}" for n in range(1, executors + 1)]
        self.task_ms = task_ms
        self.live: dict[str, object] = {}
        self.restarts = Counter[str]()

    def start(self) -> None:
        self._start_dispatcher()
        for name in self.executor_names:
            self._start_executor(name)
        watcher = Broker(self.broker.url, "soak")
        try:
            deadline = time.monotonic() + 60
            while watcher.counts(self.amqp.topology.task_queue).consumers < len(
                self.executor_names
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("executors did not start:\n" + self.processes.dump_logs())
                time.sleep(0.2)
        finally:
            watcher.close()

    def _start_dispatcher(self) -> None:
        env = {"WQ_LOG_LEVEL": "info", "WQ_DISPATCHER_OUTBOX_AGE": "10"}
        self.restarts["dispatcher"] += 1
        name = f"dispatcher-{self.restarts['dispatcher']}"
        self.live["dispatcher"] = self.processes.dispatcher(name, self.store, **env)

    def _start_executor(self, name: str) -> None:
        self.restarts[name] += 1
        self.live[name] = self.processes.executor(
            f"{name}-{self.restarts[name]}",
            concurrency=SLOTS_PER_EXECUTOR,
            WQ_LOG_LEVEL="info",
            WQ_EXECUTOR_SHUTDOWN_GRACE="5",
        )

    async def submit(self, count: int) -> list[UUID]:
        request = TaskRequest("soak", {"ms": self.task_ms, "runs": str(self.runs)})
        settings = DispatcherSettings(store=self.store)
        async with open_dispatcher(self.amqp, settings, consume_results=False) as dispatcher:
            return await dispatcher.submit_many([request] * count)

    # ------------------------------------------------------------------ faults

    def inject(self, fault: str, rng: random.Random) -> None:
        if fault in ("executor_kill", "executor_sigterm"):
            name = rng.choice(self.executor_names)
            process = self.live[name]
            process.send_signal(  # type: ignore[attr-defined]
                signal.SIGKILL if fault == "executor_kill" else signal.SIGTERM
            )
            process.wait(timeout=60)  # type: ignore[attr-defined]
            self._start_executor(name)
        elif fault == "dispatcher_kill":
            process = self.live["dispatcher"]
            process.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            process.wait(timeout=30)  # type: ignore[attr-defined]
            self._start_dispatcher()
        elif fault == "broker_restart":
            self.broker.stop_app()
            self.broker.start_app()
        elif fault == "broker_crash":
            self.broker.crash()
        elif fault == "close_connections":
            self.broker.close_all_connections("soak fault")
        elif fault == "memory_alarm":
            self.broker.set_memory_alarm()
            time.sleep(3)  # the alarm lasts a while: publishers are blocked meanwhile
            self.broker.clear_memory_alarm()
        else:
            raise ValueError(fault)

    # ------------------------------------------------------------------ counting

    def finished(self, ids: list[UUID]) -> int:
        store = open_store(self.store)
        try:
            return sum(record.state.is_final for record in store.get_many(ids))
        finally:
            store.close()

    def count(self, ids: list[UUID], figures: Figures) -> None:
        store = open_store(self.store)
        try:
            records = {record.task_id: record for record in store.get_many(ids)}
        finally:
            store.close()
        runs = Counter(
            UUID(line) for path in self.runs.iterdir() for line in path.read_text().split()
        )
        dead_letters = self._dead_letter_ids()
        states = Counter(records[i].state if i in records else None for i in ids)
        figures.succeeded = states[TaskState.SUCCEEDED]
        figures.lost = sum(1 for i in ids if i not in records or not records[i].state.is_final)
        figures.not_succeeded = {
            (state.value if state else "missing"): n
            for state, n in states.items()
            if state is not TaskState.SUCCEEDED
        }
        figures.errors = dict(
            Counter(
                f"{r.error.kind.value}: {r.error.message[:120]}"
                for r in records.values()
                if r.error is not None and r.state is not TaskState.SUCCEEDED
            )
        )
        figures.dead_never_started = sum(
            1 for i in ids if i in records and records[i].state is TaskState.DEAD and not runs[i]
        )
        figures.succeeded_in_dead_letters = sum(
            1 for i in dead_letters if i in records and records[i].state is TaskState.SUCCEEDED
        )
        figures.ran_more_than_once = sum(1 for i in ids if runs[i] > 1)
        figures.duplicate_results = sum(records[i].duplicate_results for i in records)

    def _dead_letter_ids(self) -> list[UUID]:
        watcher = Broker(self.broker.url, "soak count")
        try:
            ids = []
            while (got := watcher.get(self.amqp.topology.task_dead_queue)) is not None:
                ids.append(UUID(got[0].message_id))
            return ids
        finally:
            watcher.close()


async def run(
    tasks: int, *, executors: int, scale: float, task_ms: int, seed: int, work: Path
) -> Figures:
    faults = {kind: max(1, round(n * scale)) for kind, n in FAULTS.items()}
    figures = Figures(tasks=tasks, faults=faults)
    rng = random.Random(seed)
    plan = [kind for kind, n in faults.items() for _ in range(n)]
    rng.shuffle(plan)
    broker = PrivateBroker(name_prefix="wqsoak")
    broker.start()
    soak = Soak(broker, work, executors=executors, task_ms=task_ms)
    began = time.monotonic()
    try:
        broker.settle_streams()  # before the services declare theirs
        soak.start()
        ids = await soak.submit(tasks)
        # Faults spread over the time the backlog should take, leaving its last fifth quiet.
        expected = tasks * task_ms / 1000 / (executors * SLOTS_PER_EXECUTOR)
        gap = max(1.0, 0.8 * expected / max(1, len(plan)))
        for fault in plan:
            await asyncio.sleep(gap)
            done_before = soak.finished(ids)
            if done_before == tasks:
                break
            started = time.monotonic()
            soak.inject(fault, rng)
            if fault.startswith("broker") or fault in ("close_connections", "memory_alarm"):
                recovered = _wait(lambda: soak.finished(ids) > done_before, timeout=120)  # noqa: B023
                figures.recovery_s.setdefault(fault, []).append(
                    round(time.monotonic() - started, 1) if recovered else -1.0
                )
        _wait(lambda: soak.finished(ids) == tasks, timeout=max(120.0, expected * 2))
        figures.seconds = round(time.monotonic() - began, 1)
        soak.count(ids, figures)
    finally:
        soak.processes.kill_all()
        broker.stop()
    return figures


def _wait(condition: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000, help="tasks to submit (20000)")
    parser.add_argument("--executors", type=int, default=3, help="executor processes (3)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies the fault mix (1: the issue's)"
    )
    parser.add_argument("--task-ms", type=int, default=40, help="each task sleeps this long")
    parser.add_argument("--seed", type=int, default=1, help="order of the faults")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wq-soak-") as work:
        figures = asyncio.run(
            run(
                args.tasks,
                executors=args.executors,
                scale=args.scale,
                task_ms=args.task_ms,
                seed=args.seed,
                work=Path(work),
            )
        )
    print(json.dumps(asdict(figures) | {"targets_met": figures.met}))
    return 0 if figures.met else 1


if __name__ == "__main__":
    sys.exit(main())
