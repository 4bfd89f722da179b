"""The dashboard's pages over a large store: server-side render time per page.

``python -m bench.dashboard --amqp-url URL --rows 1000000`` fills a fresh SQLite store with
finished tasks spread over the last day (mostly succeeded, some failed with an error and
a traceback, some dead; three task types; an attempt each), written straight to the tables
in bulk (the fill is not what is measured), starts ``dispatcher serve`` on it, and times
``--repeats`` GETs of each page over loopback HTTP: the tasks list (first page, a page
further on, filtered by state, by type and by error text), one task, and the overview.
Prints one JSON line: median and p95 milliseconds per page.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.broker import Probe
from bench.finished import Finished, insert_finished
from bench.measure import new_prefix, percentile
from bench.processes import Services, service_env
from common import AmqpSettings
from dispatcher.store.backends import open_store

_STATES = ("succeeded",) * 8 + ("failed", "dead")
_TYPES = ("render_report", "word_count", "convert_currency")
_ERROR = json.dumps(
    {
        "kind": "handler_error",
        "type": "LookupError",
        "message": "no exchange rate for XYZ",
        "traceback": "Traceback (most recent call last):\n  ...\nLookupError: XYZ\n" * 3,
    }
)


def fill(path: Path, rows: int) -> str:
    """``rows`` finished tasks over the last day, newest last; returns one task's id."""
    now = datetime.now(UTC)
    step = timedelta(days=1) / max(rows, 1)
    ids = [str(uuid.uuid4()) for _ in range(rows)]

    def task(n: int) -> Finished:
        state = _STATES[n % len(_STATES)]
        at = (now - timedelta(days=1) + n * step).isoformat()
        return Finished(ids[n], _TYPES[n % 3], state, at, _ERROR if state != "succeeded" else None)

    insert_finished(path, (task(n) for n in range(rows)))
    return ids[-1] if ids else ""


def _url(services: Services, name: str, timeout: float = 30) -> str:
    log = services.log_dir / f"{name}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"http_api_listening"' in line:
                return str(json.loads(line)["url"])
        services.check_alive()
        time.sleep(0.05)  # another process writes the log: nothing to wait on here
    raise TimeoutError(f"{name} did not start listening")


def _time(client: httpx.Client, path: str, repeats: int) -> dict[str, float]:
    client.get(path).raise_for_status()  # warm: the first read of a page loads its index
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        took.append((time.perf_counter() - started) * 1000)
    return {"median_ms": percentile(took, 50), "p95_ms": percentile(took, 95)}


def measure(amqp_url: str, rows: int, repeats: int, directory: Path) -> dict[str, object]:
    """Fill a store with ``rows`` tasks, serve it, and time each page."""
    store = directory / "tasks.sqlite3"
    open_store(store).close()  # the schema
    task_id = fill(store, rows)
    prefix = new_prefix("dashboard")
    env = service_env(amqp_url, prefix, WQ_DISPATCHER_STORE=str(store))
    env |= {"WQ_DISPATCHER_HTTP_PORT": "0", "WQ_DISPATCHER_RETENTION": "0"}
    try:
        return _serve_and_time(env, directory, task_id, rows, repeats)
    finally:
        topology = AmqpSettings(prefix=prefix).topology
        Probe(amqp_url).delete(queues=topology.every_queue(), exchanges=[topology.task_exchange])


def _serve_and_time(
    env: dict[str, str], directory: Path, task_id: str, rows: int, repeats: int
) -> dict[str, object]:
    with Services(directory) as services:
        services.python("dispatcher", "dispatcher", ["serve"], env)
        # A connection per request: on a kept-alive one, httpx's separate header and body
        # writes meet the server's delayed ACK (40 ms a request on loopback).
        fresh = httpx.Limits(max_keepalive_connections=0)
        url = _url(services, "dispatcher")
        with httpx.Client(base_url=url, timeout=60, limits=fresh) as client:
            cursor = re.search(r"cursor=([A-Za-z0-9_-]+)", client.get("/ui/tasks").text)
            pages = {
                "tasks": "/ui/tasks",
                "tasks_page_2": f"/ui/tasks?cursor={cursor.group(1)}" if cursor else "/ui/tasks",
                "tasks_failed": "/ui/tasks?state=failed",
                "tasks_by_type": "/ui/tasks?task_type=word_count",
                "tasks_by_error": "/ui/tasks?error=exchange",
                "task": f"/ui/tasks/{task_id}",
                "overview": "/",
            }
            timed = {name: _time(client, path, repeats) for name, path in pages.items()}
    return {"rows": rows, "repeats": repeats, "pages": timed}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: print one JSON line of figures."""
    parser = argparse.ArgumentParser(prog="bench.dashboard", description=__doc__)
    parser.add_argument("--amqp-url", required=True, help="broker for dispatcher serve")
    parser.add_argument("--rows", type=int, default=1_000_000, help="tasks (1000000)")
    parser.add_argument("--repeats", type=int, default=20, help="GETs per page (20)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(args.amqp_url, args.rows, args.repeats, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
