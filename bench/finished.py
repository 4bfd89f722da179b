"""Finished tasks written straight to a SQLite store's tables, for the benchmarks that need
a large store (the retention sweep, the round trip beside it, the dashboard's pages).

Written in bulk with plain ``sqlite3``, 50,000 rows a transaction, each task with its one
attempt: the fill is never what a benchmark measures.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple

_BATCH = 50_000


class Finished(NamedTuple):
    """One finished task: its id, type, final state, when it ran, and its error (JSON)."""

    task_id: str
    task_type: str
    state: str
    at: str
    error: str | None = None


def insert_finished(path: Path, tasks: Iterable[Finished]) -> None:
    """Insert ``tasks`` (and an attempt each) into the store at ``path``, schema created."""
    db = sqlite3.connect(path)
    try:
        for batch in _batches(iter(tasks)):
            with db:
                db.executemany(
                    "INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at,"
                    " started_at, finished_at, executor, result, error) VALUES"
                    " (?, ?, '{}', ?, 1, ?, ?, ?, 'bench', '1', ?)",
                    [(t.task_id, t.task_type, t.state, t.at, t.at, t.at, t.error) for t in batch],
                )
                db.executemany(
                    "INSERT INTO attempts (task_id, attempt, executor, started_at, finished_at,"
                    " outcome, error) VALUES (?, 1, 'bench', ?, ?, ?, ?)",
                    [(t.task_id, t.at, t.at, t.state, t.error) for t in batch],
                )
    finally:
        db.close()


def _batches(tasks: Iterator[Finished]) -> Iterator[list[Finished]]:
    while batch := list(islice(tasks, _BATCH)):
        yield batch
