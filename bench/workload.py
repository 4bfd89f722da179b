"""The workloads, and the wire protocol written out by hand for the raw baselines.

The raw baselines build the same JSON bodies and properties as docs/protocol.md with the
standard library only, so they cost what the AMQP client and ``json`` cost and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

FAIRNESS_LONG_MS = 500
FAIRNESS_SHORT_MS = 5
FAIRNESS_EVERY = 10

CONTENT_TYPE = "application/json"

# Backlog figure: the drain rate is measured over this many tasks, after a warm-up.
BACKLOG_WINDOW = 5_000
BACKLOG_WARMUP = 0.1


def fairness_durations(n: int) -> list[int]:
    """Every 10th task (the 10th, 20th, ...) sleeps 500 ms, the others 5 ms."""
    return [
        FAIRNESS_LONG_MS if (i + 1) % FAIRNESS_EVERY == 0 else FAIRNESS_SHORT_MS for i in range(n)
    ]


def backlog_span(backlog: int) -> tuple[int, int]:
    """Which part of a backlog's drain is timed: (results before the clock starts, timed).

    The first tenth (at most 1,000) warms up the workers; then up to 5,000 tasks are timed,
    the same count for every backlog over 6,250 tasks, with most of the backlog still queued.
    """
    first = max(1, int(min(backlog * BACKLOG_WARMUP, 1_000)))
    return first, min(BACKLOG_WINDOW, int(backlog * (1 - 2 * BACKLOG_WARMUP)))


def ideal_makespan_s(durations: list[int], workers: int) -> float:
    """The best any scheduler could do: the work spread evenly, or the longest task alone."""
    return max(sum(durations) / workers, max(durations, default=0)) / 1000


@dataclass(frozen=True, slots=True)
class RawNames:
    """The protocol's broker names for one prefix (docs/protocol.md, "Names")."""

    prefix: str

    @property
    def tasks(self) -> str:
        """Task exchange and task queue."""
        return f"{self.prefix}.tasks"

    @property
    def results(self) -> str:
        """Results queue."""
        return f"{self.prefix}.results"

    @property
    def queues(self) -> list[str]:
        """Every queue, for clean-up."""
        return [self.tasks, f"{self.tasks}.dead", self.results, f"{self.results}.dead"]

    def arguments(self, queue: str) -> dict[str, Any]:
        """The queue arguments the protocol prescribes."""
        return {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{queue}.dead",
        }


def raw_task(task_type: str, params: dict[str, Any]) -> tuple[str, bytes]:
    """A new task's id and body."""
    task_id = str(uuid4())
    body = {
        "version": 1,
        "task_id": task_id,
        "task_type": task_type,
        "params": params,
        "attempt": 1,
        "submitted_at": datetime.now(UTC).isoformat(),
    }
    return task_id, json.dumps(body, separators=(",", ":")).encode()


def raw_task_properties(task_id: str, task_type: str, reply_to: str) -> dict[str, Any]:
    """Keyword arguments of a task message's properties (aio-pika and pika spell them alike)."""
    return {
        "content_type": CONTENT_TYPE,
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "message_id": task_id,
        "correlation_id": task_id,
        "type": task_type,
        "reply_to": reply_to,
        "app_id": "wqbench-raw",
        "headers": {"x-wq-attempt": 1},
    }


def raw_result(
    task: dict[str, Any], executor: str, started: datetime
) -> tuple[bytes, dict[str, Any]]:
    """The succeeded result of a decoded task body, and its properties."""
    finished = datetime.now(UTC)
    body = {
        "version": 1,
        "task_id": task["task_id"],
        "task_type": task["task_type"],
        "outcome": "succeeded",
        "result": None,
        "error": None,
        "attempt": task["attempt"],
        "executor": executor,
        "redelivered": False,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }
    properties = {
        "content_type": CONTENT_TYPE,
        "delivery_mode": 2,
        "message_id": f"{task['task_id']}.{task['attempt']}",
        "correlation_id": task["task_id"],
        "type": task["task_type"],
        "app_id": "wqbench-raw",
        "headers": {"x-wq-outcome": "succeeded", "x-wq-executor": executor},
    }
    return json.dumps(body, separators=(",", ":")).encode(), properties


def sleep_ms_of(task: dict[str, Any]) -> int:
    """How long a raw worker sleeps for this decoded task (the fairness workload), else 0."""
    params = task.get("params") or {}
    ms = params.get("ms", 0)
    return ms if isinstance(ms, int) else 0


def worker_name() -> str:
    """host.pid, as the executor names itself."""
    return f"{socket.gethostname()}.{os.getpid()}"
