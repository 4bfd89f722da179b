"""The fault tools work for real: a private node that can be stopped, alarmed and emptied of
connections without the shared broker noticing, and a proxy that cuts or silences a connection."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import aio_pika
import pika
import pika.exceptions
import pytest
from pika.adapters.utils.connection_workflow import AMQPConnectorStackTimeout

from tests.faults.private_broker import (
    SHARED_NODE,
    NodeKeeper,
    PrivateBroker,
    PrivateBrokerError,
    epmd_names,
)
from tests.faults.proxy import TcpProxy
from tests.integration.conftest import wait_until, wait_until_async

LOST = (pika.exceptions.StreamLostError, pika.exceptions.AMQPHeartbeatTimeout)
CLOSED = (pika.exceptions.ConnectionClosedByBroker, *LOST)


def connect(url: str, name: str, **options: Any) -> Any:
    """A pika BlockingConnection named after the test, with ``options`` set on its parameters."""
    parameters: Any = pika.URLParameters(url)
    parameters.client_properties = {"connection_name": f"fault-infra {name}"}
    parameters.connection_attempts = 1
    for key, value in options.items():
        setattr(parameters, key, value)
    return pika.BlockingConnection(parameters)


def wait_for_loss(connection: Any, timeout: float) -> BaseException:
    """Service ``connection`` until pika reports it gone; return what it raised."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection.process_data_events(time_limit=0.2)
        except pika.exceptions.AMQPConnectionError as exc:
            lost: BaseException = exc
            return lost
    pytest.fail(f"connection still open {timeout}s later")


def serve_until(
    connection: Any, predicate: Callable[[], bool], *, timeout: float, what: str
) -> None:
    """Keep ``connection`` processing frames (callbacks run) until ``predicate`` holds."""

    def served() -> bool:
        connection.process_data_events(time_limit=0.1)
        return predicate()

    wait_until(served, timeout=timeout, what=what)


def shared_node_status() -> str:
    """``rabbitmqctl status`` of the shared node through the distro wrapper (read-only)."""
    result = subprocess.run(
        ["/usr/sbin/rabbitmqctl", "-n", SHARED_NODE, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"shared node status failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def shared_os_pid(status: str) -> str:
    return next(line for line in status.splitlines() if line.startswith("OS PID:"))


@pytest.mark.timeout(180)
def test_private_node_serves_amqp_while_the_shared_node_is_untouched(
    private_broker: PrivateBroker, amqp_url: str, request: pytest.FixtureRequest
) -> None:
    before = shared_os_pid(shared_node_status())
    assert private_broker.node != SHARED_NODE
    assert private_broker.amqp_port != pika.URLParameters(amqp_url).port
    assert private_broker.node.partition("@")[0] in epmd_names()

    queue = f"wq.fault.{uuid4().hex[:10]}"
    connection = connect(private_broker.url, request.node.name)
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish("", queue, b"hello")
        wait_until(
            lambda: channel.queue_declare(queue, passive=True).method.message_count == 1,
            timeout=10,
            what="the message on the private node",
        )
        # The queue exists on the private node only (passive declare: read-only on the shared one).
        shared = connect(amqp_url, request.node.name)
        try:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
                shared.channel().queue_declare(queue, passive=True)
        finally:
            shared.close()
    finally:
        connection.close()

    assert shared_os_pid(shared_node_status()) == before


@pytest.mark.timeout(180)
def test_stop_app_drops_connections_and_start_app_brings_amqp_back(
    private_broker: PrivateBroker, request: pytest.FixtureRequest
) -> None:
    connection = connect(private_broker.url, request.node.name)
    private_broker.stop_app()

    assert isinstance(wait_for_loss(connection, timeout=10), CLOSED)
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        connect(private_broker.url, request.node.name)

    private_broker.start_app()
    again = connect(private_broker.url, request.node.name)
    assert again.is_open
    again.close()


@pytest.mark.timeout(120)
def test_close_all_connections_closes_a_live_connection(
    private_broker: PrivateBroker, request: pytest.FixtureRequest
) -> None:
    connection = connect(private_broker.url, request.node.name)
    connection.channel()

    private_broker.close_all_connections("fault test says bye")

    lost = wait_for_loss(connection, timeout=10)
    assert isinstance(lost, pika.exceptions.ConnectionClosedByBroker)
    assert "fault test says bye" in str(lost)
    assert private_broker.amqp_answers(), "new connections are still accepted"


@pytest.mark.timeout(180)
def test_memory_alarm_blocks_a_publisher_until_cleared(
    private_broker: PrivateBroker, request: pytest.FixtureRequest
) -> None:
    queue = f"wq.fault.{uuid4().hex[:10]}"
    events: list[str] = []
    publisher = connect(private_broker.url, request.node.name, blocked_connection_timeout=60)
    publisher.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
    publisher.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
    observer = connect(private_broker.url, f"{request.node.name} observer")
    try:
        channel = publisher.channel()
        channel.queue_declare(queue)
        private_broker.set_memory_alarm()

        # RabbitMQ blocks a connection on its first publish after the alarm.
        channel.basic_publish("", queue, b"during the alarm")
        serve_until(publisher, lambda: events == ["blocked"], timeout=20, what="blocked")

        private_broker.clear_memory_alarm()
        serve_until(publisher, lambda: "unblocked" in events, timeout=20, what="unblocked")
        channel.basic_publish("", queue, b"after the alarm")
        observing = observer.channel()
        wait_until(
            lambda: observing.queue_declare(queue, passive=True).method.message_count == 2,
            timeout=10,
            what="both messages in the queue",
        )
        assert events == ["blocked", "unblocked"]
        observing.queue_delete(queue)
    finally:
        observer.close()
        if publisher.is_open:
            publisher.close()


@pytest.mark.timeout(120)
def test_proxy_forwards_and_cut_breaks_the_connection(
    private_broker: PrivateBroker, tcp_proxy: TcpProxy, request: pytest.FixtureRequest
) -> None:
    url = tcp_proxy.url_for(private_broker.url)
    assert url == f"amqp://guest:guest@127.0.0.1:{tcp_proxy.port}/"
    connection = connect(url, request.node.name)
    connection.channel().queue_declare("", exclusive=True)
    assert tcp_proxy.active_connections == 1

    tcp_proxy.cut()

    assert isinstance(wait_for_loss(connection, timeout=10), LOST)
    assert tcp_proxy.active_connections == 0
    again = connect(url, request.node.name)
    again.channel().queue_declare("", exclusive=True)
    assert (tcp_proxy.active_connections, tcp_proxy.accepted_connections) == (1, 2)
    again.close()


@pytest.mark.timeout(120)
def test_blackhole_is_only_noticed_by_heartbeats_and_restore_lets_connections_in(
    private_broker: PrivateBroker, tcp_proxy: TcpProxy, request: pytest.FixtureRequest
) -> None:
    url = tcp_proxy.url_for(private_broker.url)
    connection = connect(url, request.node.name, heartbeat=1)
    connection.channel()

    tcp_proxy.blackhole()
    started = time.monotonic()
    # pika checks every heartbeat + 5 s and needs one silent interval: at most ~12 s.
    lost = wait_for_loss(connection, timeout=20)
    assert isinstance(lost, LOST), repr(lost)
    assert time.monotonic() - started < 15
    with pytest.raises((pika.exceptions.AMQPConnectionError, AMQPConnectorStackTimeout)):
        connect(url, request.node.name, socket_timeout=2, stack_timeout=2)

    tcp_proxy.restore()
    again = connect(url, request.node.name)
    again.channel().queue_declare("", exclusive=True)
    wait_until(
        lambda: tcp_proxy.active_connections == 1, timeout=10, what="held connections to end"
    )
    again.close()


@pytest.mark.timeout(120)
async def test_proxy_is_usable_from_async_tests(
    private_broker: PrivateBroker, tcp_proxy: TcpProxy
) -> None:
    connection = await aio_pika.connect(tcp_proxy.url_for(private_broker.url), timeout=10)
    lost: list[BaseException | None] = []
    connection.close_callbacks.add(lambda _, exc=None: lost.append(exc))
    try:
        channel = await connection.channel()
        await channel.declare_queue(exclusive=True)
        tcp_proxy.cut()
        await wait_until_async(lambda: bool(lost), timeout=10, what="aio-pika to notice")
    finally:
        await connection.close()
    assert isinstance(lost[0], ConnectionError), repr(lost[0])
    assert tcp_proxy.active_connections == 0


@pytest.mark.timeout(180)
def test_a_failed_start_raises_with_the_log_and_leaves_nothing_behind() -> None:
    broker = PrivateBroker()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", broker.amqp_port))
        squatter.listen()
        with pytest.raises(PrivateBrokerError, match="eaddrinuse"):
            broker.start(timeout=60)
    assert not broker.running
    assert not broker.base_dir.exists()
    assert broker.node.partition("@")[0] not in epmd_names()


@pytest.mark.timeout(240)
def test_keeper_restores_a_node_and_replaces_a_dirty_one() -> None:
    keeper = NodeKeeper()
    try:
        first = keeper.acquire()
        beam = int(first.pid_file.read_text())
        first.set_memory_alarm()
        first.stop_app()
        keeper.release(failed=True)
        assert keeper.acquire() is first
        assert (first.alarms(), first.amqp_answers()) == ("[]", True)

        first.dirty = True
        keeper.release(failed=False)
        assert keeper.broker is None
        assert not first.running
        assert not Path(f"/proc/{beam}").exists(), "the node's beam process is gone"
        assert first.node.partition("@")[0] not in epmd_names()
        assert not first.base_dir.exists()

        second = keeper.acquire()
        assert second.node != first.node
        assert keeper.starts == 2
    finally:
        keeper.discard()
    assert keeper.broker is None
