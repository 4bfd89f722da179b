"""The retention sweep's cost: deleting a million finished tasks, 500 at a time.

``python -m bench.retention --rows 1000000`` fills a fresh SQLite store (or ``--store URL``)
with finished tasks and one attempt each, written straight to the tables in bulk (the fill
is not what is measured), then prunes them all with ``dispatcher.retention.prune``, the loop
``dispatcher serve`` and ``dispatcher prune`` run, and prints one JSON line: wall and CPU
microseconds per deleted row, and the SQLite file's size before and after.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.finished import Finished, insert_finished
from dispatcher.retention import FINAL_STATES, prune
from dispatcher.store.backends import open_store


def fill(path: Path, rows: int, state: str = "succeeded") -> None:
    """``rows`` tasks in ``state``, finished a day ago, each with its attempt row."""
    finished = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    insert_finished(
        path, (Finished(str(uuid.uuid4()), "echo", state, finished) for _ in range(rows))
    )


def measure(rows: int, directory: Path) -> dict[str, float]:
    """Fill a store in ``directory`` with ``rows`` finished tasks and prune them all."""
    path = directory / "tasks.sqlite3"
    open_store(path).close()  # creates the schema
    fill(path, rows)
    size_before = path.stat().st_size
    store = open_store(path)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        pruned = prune(store, datetime.now(UTC), FINAL_STATES)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        store.close()
    return {
        "rows": pruned,
        "wall_us_per_row": wall / pruned * 1e6,
        "cpu_us_per_row": cpu / pruned * 1e6,
        "seconds": wall,
        "file_mib_before": size_before / 2**20,
        "file_mib_after": path.stat().st_size / 2**20,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print one JSON line of figures."""
    parser = argparse.ArgumentParser(prog="bench.retention", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="finished tasks (1000000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.rows, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
