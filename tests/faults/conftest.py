"""Fault-test fixtures: a private RabbitMQ node, settings on it, a TCP proxy in front of it.

Fault tests never touch the shared broker (``rabbit@localhost``): they stop, alarm and cut a
node of their own (see ``private_broker.py``).

Scope of the node: booting one takes several seconds, so the session keeps one node
(``private_node_keeper``) and each test borrows it through the function-scoped
``private_broker``. Before the test the keeper checks the node still answers (and replaces it if
not); after the test it clears a memory alarm and restarts a stopped app that the test left
behind. If that fails, if the test set ``private_broker.dirty = True`` or, after a failed test,
if any alarm is still up, the node is stopped and the next test gets a fresh one. A test that
needs a node of its own (to kill it, or several nodes) uses ``start_private_broker``.

The session's node is stopped at the end of the session even when tests fail; should the
session die without teardown, an ``atexit`` hook and a watchdog process stop it instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pika.exceptions
import pytest
from pydantic import SecretStr

from common import AmqpSettings
from tests.conftest import unique_prefix
from tests.faults.private_broker import NodeKeeper, PrivateBroker
from tests.faults.proxy import TcpProxy
from tests.integration.broker import Broker
from tests.integration.conftest import Processes

FAULTS_DIR = Path(__file__).resolve().parent
#: Default pytest-timeout of a fault test: the test may have to boot (or replace) the node.
FAULT_TEST_TIMEOUT = 120
FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``fault`` marker (harmless once pyproject's markers list has it too)."""
    config.addinivalue_line("markers", "fault: breaks a private RabbitMQ node on purpose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything under tests/faults ``fault`` and ``integration``, with a longer timeout."""
    for item in items:
        if FAULTS_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.fault)
            item.add_marker(pytest.mark.integration)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(FAULT_TEST_TIMEOUT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember on the item whether any phase failed, for the node keeper's teardown."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="session")
def private_node_keeper() -> Iterator[NodeKeeper]:
    """The session's private node holder; its node is stopped at the end of the session."""
    keeper = NodeKeeper()
    try:
        yield keeper
    finally:
        keeper.discard()


@pytest.fixture
def private_broker(
    private_node_keeper: NodeKeeper, request: pytest.FixtureRequest
) -> Iterator[PrivateBroker]:
    """The private node, healthy at the start of the test and restored (or replaced) after it."""
    broker = private_node_keeper.acquire()
    try:
        yield broker
    finally:
        private_node_keeper.release(failed=request.node.stash.get(FAILED, False))


@pytest.fixture
def start_private_broker() -> Iterator[Callable[[], PrivateBroker]]:
    """Factory of extra private nodes owned by the test; all stopped at teardown."""
    started: list[PrivateBroker] = []

    def start() -> PrivateBroker:
        broker = PrivateBroker()
        started.append(broker)
        broker.start()
        return broker

    try:
        yield start
    finally:
        for broker in reversed(started):
            broker.stop()


@pytest.fixture
def fault_amqp_settings(
    private_broker: PrivateBroker, request: pytest.FixtureRequest
) -> Iterator[AmqpSettings]:
    """Settings with a unique prefix on the private node; its queues are deleted afterwards."""
    settings = AmqpSettings(
        url=SecretStr(private_broker.url), prefix=unique_prefix(), confirm_timeout=10
    )
    yield settings
    # Best effort: the test may have left the app stopped (the node fixture repairs that right
    # after), and whatever stays behind lives on a node no one else uses.
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        cleaner = Broker(private_broker.url, f"cleanup {request.node.nodeid}")
        try:
            cleaner.delete_topology(settings.topology)
        finally:
            cleaner.close()


@pytest.fixture
def tcp_proxy(private_broker: PrivateBroker) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the private node, closed at teardown."""
    proxy = TcpProxy("127.0.0.1", private_broker.amqp_port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def proxied_amqp_settings(fault_amqp_settings: AmqpSettings, tcp_proxy: TcpProxy) -> AmqpSettings:
    """``fault_amqp_settings`` (same prefix) reaching the node through ``tcp_proxy``."""
    url = tcp_proxy.url_for(fault_amqp_settings.url.get_secret_value())
    return fault_amqp_settings.model_copy(update={"url": SecretStr(url)})


@pytest.fixture
def fault_processes(
    fault_amqp_settings: AmqpSettings, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Processes]:
    """Real service processes talking to the private node, killed at teardown."""
    started = Processes(fault_amqp_settings, tmp_path)
    yield started
    started.kill_all()
    if request.node.stash.get(FAILED, False):
        print(started.dump_logs())
