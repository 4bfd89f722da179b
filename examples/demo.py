"""The demo: a dispatcher and two executors on a real broker, 100 example tasks, a summary.

Run it with ``./scripts/demo`` (which sets everything up first) or ``python -m examples.demo``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from uuid import UUID

from pydantic import SecretStr
from tqdm import tqdm

from common import (
    AmqpSettings,
    BrokerError,
    InvalidParams,
    LogSettings,
    StoreError,
    TopologyInUse,
    load_settings,
)
from common.logging import configure
from common.pika_link import open_link
from dispatcher.amqp.teardown import delete_topology, find_topology
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.service import Dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskRecord
from examples.tasks import registry

DEMO_DIR = Path(".wq-demo")
DEMO_PREFIX = "wq.demo"
# Progress bars only for a person watching; in a log (compose, CI) the summary says it all.
_NO_BARS = not sys.stderr.isatty()


def task_mix(count: int, seed: int = 7) -> list[TaskRequest]:
    """A realistic mix: mostly fast tasks, some slow ones, a few that fail or are invalid."""
    rng = random.Random(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "sleeps"]
    requests: list[TaskRequest] = []
    for n in range(count):
        if n % 20 == 19:  # fails in the handler: no exchange rate
            requests.append(
                TaskRequest("convert_currency", {"amount": 10, "source": "EUR", "target": "XTS"})
            )
        elif n % 50 == 24:  # refused by the executor: params fail validation
            requests.append(TaskRequest("render_report", {"title": "bad", "pages": 0}))
        elif n % 4 == 1:
            requests.append(
                TaskRequest(
                    "render_report",
                    {"title": f"report {n}", "pages": rng.randint(2, 5), "ms_per_page": 25},
                )
            )
        elif n % 4 == 2:
            requests.append(
                TaskRequest(
                    "convert_currency",
                    {"amount": rng.randint(1, 500), "source": "USD", "target": "EUR"},
                )
            )
        else:
            text = " ".join(rng.choices(words, k=rng.randint(5, 40)))
            requests.append(TaskRequest("word_count", {"text": text}))
    return requests


def start_executors(count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Start executor processes, each logging to its own file under .wq-demo/."""
    processes = []
    for n in range(1, count + 1):
        argv = [sys.executable, "-m", "executor", "run", "--tasks", "examples.tasks"]
        argv += ["--name", f"demo-executor-{n}"]
        # The child writes to its own copy of the descriptor; ours is closed at once.
        with (DEMO_DIR / f"executor-{n}.log").open("wb") as log_file:
            processes.append(
                subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            )
    return processes


def stop_executors(processes: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> list[int]:
    """SIGTERM every executor and wait for it to finish its in-flight task and exit."""
    for process in processes:
        process.terminate()
    return [process.wait(timeout=timeout) for process in processes]


async def run_demo(
    count: int,
    executors: int,
    timeout: float,
    store: str | None = None,
    *,
    lookup: str | None = None,
    teardown: bool = False,
) -> int:
    """Start executors, submit ``count`` tasks, wait for outcomes, stop, summarise.

    ``store`` is an SQLite file or a PostgreSQL URL; by default a file under .wq-demo/.
    With ``teardown`` the demo's queues and exchange are deleted once its executors stopped
    (``dispatcher topology delete``); the store is kept, so its tasks can still be looked up.
    """
    amqp, settings, env = demo_settings(store)
    topology = amqp.topology
    print(f"broker {amqp.redacted_url()}  queues {topology.task_queue}, {topology.results_queue}")
    logs = f"  executor logs {DEMO_DIR}/executor-N.log" if executors else ""
    print(f"store  {settings.redacted_store()}{logs}")
    processes = start_executors(executors, env)
    began = time.perf_counter()
    try:
        async with open_dispatcher(amqp, settings) as dispatcher:
            with tqdm(total=count, desc="submitted", unit="task", disable=_NO_BARS) as bar:

                def advance(n: int) -> None:
                    bar.update(n)

                ids, refused = await submit_each_refusal_alone(
                    dispatcher, task_mix(count), progress=advance
                )
            records = await _await_outcomes(dispatcher.get_many, ids, timeout)
    finally:
        codes = stop_executors(processes)
    elapsed = time.perf_counter() - began
    store_name = settings.redacted_store()
    outcome = _summarise(ids, records, refused, codes, elapsed, store_name, lookup=lookup)
    if teardown:
        await _delete_topology(amqp)
    return outcome


_STOPS = (signal.SIGINT, signal.SIGTERM)


def demo_settings(store: str | None) -> tuple[AmqpSettings, DispatcherSettings, dict[str, str]]:
    """The demo's broker settings, dispatcher settings, and its services' environment."""
    amqp = load_settings(AmqpSettings, prefix=os.environ.get("WQ_AMQP_PREFIX", DEMO_PREFIX))
    settings = load_settings(DispatcherSettings, store=store or DEMO_DIR / "tasks.sqlite3")
    env = {**os.environ, "WQ_AMQP_PREFIX": amqp.prefix, "WQ_LOG_FORMAT": "json"}
    return amqp, settings, env


def serve_dashboard(store: str | None) -> int:
    """Run ``dispatcher serve`` on the demo's store until Ctrl-C (or SIGTERM); its exit code.

    In this process's main thread, outside any event loop, so that Ctrl-C reaches it here.
    """
    _, settings, env = demo_settings(store)
    value = settings.store
    env["WQ_DISPATCHER_STORE"] = (
        value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    )
    env["WQ_LOG_LEVEL"] = "warning"
    port = os.environ.get("WQ_DISPATCHER_HTTP_PORT", "8080")
    server = subprocess.Popen([sys.executable, "-m", "dispatcher", "serve"], env=env)
    print(f"dashboard: http://127.0.0.1:{port}/ shows the demo's tasks (Ctrl-C stops it)")
    sys.stdout.flush()
    # Both stop it, even where SIGINT was inherited ignored (a shell's background job).
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in _STOPS}
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()  # dispatcher serve's graceful stop
        return server.wait(timeout=30)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _delete_topology(amqp: AmqpSettings) -> None:
    """Leave no queue behind on a shared broker; say so, or why not."""
    async with open_link(amqp, name="demo teardown") as link:
        found = await find_topology(link, amqp.topology, named_queues=registry.queues())
        try:
            await delete_topology(link, found)
        except TopologyInUse as exc:
            print(f"queues kept: {exc}")
            return
    print(
        f"deleted the demo's {len(found.queues)} queues and its exchange (prefix "
        f"{amqp.prefix}; ./scripts/demo --keep keeps them)"
    )


async def submit_each_refusal_alone(
    dispatcher: Dispatcher, requests: list[TaskRequest], *, progress: Callable[[int], None]
) -> tuple[list[UUID], list[tuple[TaskRequest, InvalidParams]]]:
    """Submit ``requests`` as one batch; if the batch is refused, each one on its own.

    A batch is all or nothing: once executors have published their params schemas, one
    invalid request refuses it whole. Submitted one by one, the invalid requests are refused
    (and shown) on their own and every other one runs.
    """
    try:
        return await dispatcher.submit_many(requests, progress=progress), []
    except InvalidParams:
        pass
    ids: list[UUID] = []
    refused: list[tuple[TaskRequest, InvalidParams]] = []
    for request in requests:
        try:
            (task_id,) = await dispatcher.submit_many([request])
            ids.append(task_id)
        except InvalidParams as exc:
            refused.append((request, exc))
        progress(1)
    return ids, refused


async def _await_outcomes(
    get_many: Callable[[list[UUID]], Awaitable[list[TaskRecord]]], ids: list[UUID], timeout: float
) -> list[TaskRecord]:
    deadline = time.monotonic() + timeout
    with tqdm(total=len(ids), desc="finished ", unit="task", disable=_NO_BARS) as bar:
        while True:
            records = await get_many(ids)
            done = sum(record.state.is_final for record in records)
            bar.update(done - bar.n)
            if done == len(ids) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.1)


def _summarise(
    ids: list[UUID],
    records: list[TaskRecord],
    refused: list[tuple[TaskRequest, InvalidParams]],
    exit_codes: list[int],
    elapsed: float,
    store: str,
    *,
    lookup: str | None = None,
) -> int:
    states = Counter(record.state.value for record in records)
    errors = Counter(record.error.kind.value for record in records if record.error)
    per_executor = Counter(record.executor for record in records if record.executor)
    unaccounted = len(ids) - sum(record.state.is_final for record in records)
    print(f"\n{len(ids)} tasks in {elapsed:.1f}s")
    if refused:
        request, error = refused[0]
        print(
            f"refused at submission (never ran): {len(refused)}, e.g. {request.task_type} "
            f"{json.dumps(request.params)}: {str(error)[:90]}"
        )
    print("outcomes:  " + ", ".join(f"{state} {n}" for state, n in sorted(states.items())))
    examples = {r.error.kind.value: r.error.message for r in records if r.error}
    for kind, n in sorted(errors.items()):
        print(f"  {n} x {kind}, e.g. {examples[kind][:90]}")
    print("executors: " + ", ".join(f"{name} ran {n}" for name, n in sorted(per_executor.items())))
    print(f"executor exit codes: {exit_codes}")
    if unaccounted:
        print(f"NOT accounted for: {unaccounted} task(s) without an outcome")
        return 1
    print(f"every task accounted for: {len(ids)}/{len(ids)} have exactly one recorded outcome")
    print(f"look one up: {lookup or _status_command(store)} status {ids[0]}")
    return 0 if not any(exit_codes) else 1


def _status_command(store: str) -> str:
    """How to run ``dispatcher`` against ``store`` here: in .venv, on PATH, or as a module."""
    installed = Path(sys.executable).parent / "dispatcher"
    cwd = Path.cwd()
    if installed.exists() and installed.is_relative_to(cwd):
        command = str(installed.relative_to(cwd))  # .venv/bin/dispatcher: ./scripts/demo
    elif installed.exists() and shutil.which("dispatcher") == str(installed):
        command = "dispatcher"  # the image, or an activated venv
    else:
        command = f"{sys.executable} -m dispatcher"
    return f"WQ_DISPATCHER_STORE={store} {command}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; exit 0 when every task has exactly one outcome."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100, help="how many tasks (default 100)")
    parser.add_argument("--executors", type=int, default=2, help="executor processes (default 2)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for outcomes")
    parser.add_argument(
        "--store",
        metavar="FILE_OR_URL",
        help=f"SQLite file or postgresql:// URL (default {DEMO_DIR}/tasks.sqlite3)",
    )
    parser.add_argument(
        "--lookup",
        metavar="COMMAND",
        help="the dispatcher command the summary suggests for looking a task up (default: "
        "this environment's, with WQ_DISPATCHER_STORE set)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then serve the dashboard on the demo's tasks, http://127.0.0.1:8080/ "
        "(WQ_DISPATCHER_HTTP_PORT), until Ctrl-C",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help=f"keep the demo's queues and exchange (by default, with its own executors under "
        f"its own prefix {DEMO_PREFIX}, it deletes them at the end)",
    )
    args = parser.parse_args(argv)
    if args.executors > 0 or args.store is None:  # their logs, the default store
        DEMO_DIR.mkdir(exist_ok=True)
    # Only what is certainly the demo's: its own prefix, consumed by the executors it started.
    # With --executors 0 (compose) it submits to a running deployment, which stays as it is.
    prefix = os.environ.get("WQ_AMQP_PREFIX", DEMO_PREFIX)
    teardown = not args.keep and args.executors > 0 and prefix == DEMO_PREFIX
    configure(LogSettings(level="warning"))
    try:
        outcome = asyncio.run(
            run_demo(
                args.tasks,
                args.executors,
                args.timeout,
                args.store,
                lookup=args.lookup,
                teardown=teardown and not args.serve,
            )
        )
        if args.serve:
            serve_dashboard(args.store)
            if teardown:  # after the dashboard's dispatcher let go of the queues
                asyncio.run(_delete_topology(demo_settings(args.store)[0]))
        return outcome
    except BrokerError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 69
    except StoreError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
