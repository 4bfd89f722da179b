"""Integration fixtures: the real broker (never skipped), isolation, real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from uuid import UUID

import pika
import pika.exceptions
import pytest
from pydantic import SecretStr

from common import AmqpSettings, redact_url
from dispatcher.service import Dispatcher
from tests.conftest import REPO, unique_prefix
from tests.integration.broker import Broker

TEST_TASKS = "tests.integration.tasks"


@pytest.fixture(scope="session")
def broker_reachable(amqp_url: str) -> str:
    """Fail (never skip) every integration test when RabbitMQ does not answer."""
    try:
        pika.BlockingConnection(pika.URLParameters(amqp_url)).close()
    except pika.exceptions.AMQPError as exc:
        pytest.fail(
            f"RabbitMQ is not reachable at {redact_url(amqp_url)} ({type(exc).__name__}).\n"
            "Start one with `rabbitmq-server -detached` (or ./scripts/ensure-broker), or point\n"
            "WQ_TEST_AMQP_URL at a broker. Integration tests never skip.",
            pytrace=False,
        )
    return amqp_url


@pytest.fixture
def broker(broker_reachable: str, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A pika connection for assertions, named after the test."""
    connection = Broker(broker_reachable, request.node.nodeid)
    yield connection
    connection.close()


@pytest.fixture
def amqp_settings(broker_reachable: str, broker: Broker) -> Iterator[AmqpSettings]:
    """Settings with a unique prefix; every queue of that prefix is deleted afterwards."""
    settings = AmqpSettings(
        url=SecretStr(broker_reachable), prefix=unique_prefix(), confirm_timeout=10
    )
    yield settings
    broker.delete_topology(settings.topology)


def wait_until(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``predicate`` against a deadline; fail with ``what`` when it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """``wait_until`` for async tests: the event loop keeps running while it polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """``wait_until_async`` for a predicate that must itself await (a store read)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Processes:
    """Starts service processes for a test and kills whatever is left at teardown."""

    def __init__(self, amqp: AmqpSettings, log_dir: Path) -> None:
        self._amqp = amqp
        self._log_dir = log_dir
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a service process of this test."""
        return {
            **os.environ,
            "WQ_AMQP_URL": self._amqp.url.get_secret_value(),
            "WQ_AMQP_PREFIX": self._amqp.prefix,
            "WQ_LOG_FORMAT": "json",
            "WQ_LOG_LEVEL": "debug",
            **extra,
        }

    def executor(
        self, name: str, *, concurrency: int = 1, tasks: str = TEST_TASKS, **env: str
    ) -> subprocess.Popen[bytes]:
        """Start ``executor run`` as a real process."""
        argv = [sys.executable, "-m", "executor", "run", "--tasks", tasks, "--path", str(REPO)]
        argv += ["--name", name, "--concurrency", str(concurrency)]
        return self._start(name, argv, self.env(**env))

    def dispatcher(self, name: str, store: Path | str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``dispatcher serve`` as a real process; its HTTP API on any free port."""
        argv = [sys.executable, "-m", "dispatcher", "serve"]
        # Port 0: several dispatchers (tests, other checkouts) never fight over 8080.
        env = {"WQ_DISPATCHER_STORE": str(store), "WQ_DISPATCHER_HTTP_PORT": "0", **env}
        return self._start(name, argv, self.env(**env))

    def log(self, name: str) -> str:
        """What the process called ``name`` has written so far."""
        return (self._log_dir / f"{name}.log").read_text(errors="replace")

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self._log_dir / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(
                argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
        self._started.append((name, process))
        return process

    def kill_all(self) -> None:
        """SIGKILL every process still running."""
        for _, process in self._started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)

    def dump_logs(self) -> str:
        """Every process's log, for a failing test's report."""
        return "\n".join(f"--- {name} ---\n{self.log(name)[-4000:]}" for name, _ in self._started)


@pytest.fixture
def processes(
    amqp_settings: AmqpSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Processes]:
    """Factory of real service processes, killed at teardown; logs shown on failure."""
    started = Processes(amqp_settings, tmp_path)
    yield started
    started.kill_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(started.dump_logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


async def supervise_until_settled(
    processes: Processes, dispatcher: Dispatcher, task_id: UUID, *, restarts: int, **env: str
) -> None:
    """Restart an executor each time it dies, as a supervisor would, until the task settles.

    Bounded: at most ``restarts`` executors are started.
    """
    for restart in range(restarts):
        executor = processes.executor(f"exec-{restart}", concurrency=1, tasks=TEST_TASKS, **env)

        async def died_or_done() -> bool:
            done = (await dispatcher.get(task_id)).state.is_final
            return done or executor.poll() is not None  # noqa: B023

        await wait_for_async(died_or_done, timeout=20, what="the executor to die or finish")
        if executor.poll() is None:
            return


def wait_for_consumers(broker: Broker, queue: str, count: int, timeout: float = 20) -> None:
    """Wait until ``count`` consumers are attached to ``queue`` (executors are ready)."""
    wait_until(
        lambda: broker.counts(queue).consumers >= count,
        timeout=timeout,
        what=f"{count} consumer(s) on {queue}",
    )


def api_url(processes: Processes, name: str) -> str:
    """The URL a dispatcher started on port 0 logged as ``http_api_listening``."""
    found: list[str] = []

    def listening() -> bool:
        for line in processes.log(name).splitlines():
            if '"http_api_listening"' in line:
                found.append(json.loads(line)["url"])
                return True
        return False

    wait_until(listening, timeout=20, what=f"{name} to log http_api_listening")
    return found[0]
