"""The task store's own cost: CPU per task of the three writes every task makes, in process.

``python -m bench.store`` records N tasks in batches as the dispatcher does (submitted, marked
queued, result recorded), on a fresh SQLite file or on ``--store URL``, and prints the CPU
milliseconds per task of each write, the median of ``--repeats`` rounds, beside the same three
writes done with plain ``sqlite3`` and hand-encoded rows (the floor a store layer adds to).
No broker is involved; the fsyncs' wall time is left out, since only CPU is counted.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from common import Outcome, ResultMessage, TaskMessage
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.sqlite.schema import migrate

Writes = tuple[float, float, float]
_STEPS = ("add_submitted", "mark_queued", "record_results")


def _messages(n: int) -> tuple[list[TaskMessage], list[ResultMessage]]:
    now = datetime.now(UTC)
    tasks = [
        TaskMessage(task_id=uuid.uuid4(), task_type="echo", params={"value": i}, submitted_at=now)
        for i in range(n)
    ]
    results = [
        ResultMessage(
            task_id=t.task_id,
            task_type="echo",
            outcome=Outcome.SUCCEEDED,
            result={"value": 1},
            executor="bench",
            started_at=now,
            finished_at=now,
        )
        for t in tasks
    ]
    return tasks, results


def _timed(n: int, *steps: Callable[[], None]) -> Writes:
    spent = []
    for step in steps:
        began = time.process_time()
        step()
        spent.append((time.process_time() - began) * 1000 / n)
    return spent[0], spent[1], spent[2]


def ours(store: SyncTaskStore, n: int, batch: int) -> Writes:
    """The three writes through the store, ``batch`` tasks a transaction."""
    tasks, results = _messages(n)
    now = datetime.now(UTC)
    chunks = range(0, n, batch)

    def add() -> None:
        for i in chunks:
            store.add_submitted(tasks[i : i + batch])

    def mark() -> None:
        for i in chunks:
            store.mark_queued([t.task_id for t in tasks[i : i + batch]], now)

    def record() -> None:
        for i in chunks:
            store.record_results(results[i : i + batch])

    return _timed(n, add, mark, record)


def raw(path: Path, n: int, batch: int) -> Writes:
    """The same rows written with plain ``sqlite3``: positional tuples, no store layer."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    migrate(db)
    tasks, results = _messages(n)
    now = datetime.now(UTC).isoformat()
    chunks = range(0, n, batch)

    def each_batch(sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        for i in chunks:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, rows[i : i + batch])
            db.execute("COMMIT")

    try:
        return _timed(
            n,
            lambda: each_batch(
                "INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at)"
                " VALUES (?, ?, ?, 'submitted', ?, ?)",
                [
                    (
                        str(t.task_id),
                        t.task_type,
                        json.dumps(t.params),
                        1,
                        t.submitted_at.isoformat(),
                    )
                    for t in tasks
                ],
            ),
            lambda: each_batch(
                "UPDATE tasks SET state = 'queued', queued_at = ? WHERE task_id = ?",
                [(now, str(t.task_id)) for t in tasks],
            ),
            lambda: each_batch(
                "UPDATE tasks SET state = 'succeeded', started_at = ?, finished_at = ?,"
                " executor = ?, result = ? WHERE task_id = ? AND state = 'queued'",
                [
                    (
                        r.started_at.isoformat(),
                        r.finished_at.isoformat(),
                        r.executor,
                        json.dumps(r.result),
                        str(r.task_id),
                    )
                    for r in results
                ],
            ),
        )
    finally:
        db.close()


def _median(rounds: list[Writes]) -> Writes:
    a, b, c = (statistics.median(r[k] for r in rounds) for k in range(3))
    return a, b, c


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--store", help="a PostgreSQL URL (default: a fresh SQLite file)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per round (1000)")
    parser.add_argument("--batch", type=int, default=10, help="tasks per transaction (10)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds for the median (7)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        store = open_store(args.store or Path(scratch) / "ours.sqlite3")
        try:
            ours(store, args.tasks, args.batch)  # warm-up: caches, prepared statements
            mine = _median([ours(store, args.tasks, args.batch) for _ in range(args.repeats)])
        finally:
            store.close()
        floor = _median(
            [
                raw(Path(scratch) / f"raw{i}.sqlite3", args.tasks, args.batch)
                for i in range(args.repeats)
            ]
        )
    print("| store write, CPU ms per task | ours | plain sqlite3 |")
    print("|---|---|---|")
    for step, a, b in zip(_STEPS, mine, floor, strict=True):
        print(f"| {step} | {a:.3f} | {b:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
