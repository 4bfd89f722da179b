"""A private RabbitMQ node for benchmark runs, and a probe for queue counts and clean-up.

The private node runs from the installed RabbitMQ binaries with its own node name, ports,
data directory, config file and Erlang cookie, all under a temporary folder, so the shared
broker on 5672 (which the tests use) is neither loaded nor touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions

# Debian's /usr/sbin/rabbitmq-* wrappers su to the rabbitmq user; the scripts they call run
# as whoever starts them, which keeps the node's files and cookie in our own folder.
_SCRIPT_DIRS = (Path("/usr/lib/rabbitmq/bin"),)
_START_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 30.0


class BrokerStartError(RuntimeError):
    """The private node did not come up; the message holds the end of its log."""


@dataclass(frozen=True, slots=True)
class PrivateBroker:
    """A running private node: where to connect and which process is its Erlang VM."""

    url: str
    node: str
    beam_pid: int | None
    version: str


def rabbitmq_script(name: str) -> str:
    """Path of a RabbitMQ script (``rabbitmq-server``, ``rabbitmqctl``) that runs as us."""
    for folder in _SCRIPT_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise BrokerStartError(f"{name} not found: install rabbitmq-server or pass --amqp-url")
    return found


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise BrokerStartError("no free TCP port on 127.0.0.1")


def _node_env(folder: Path, node: str, amqp_port: int, dist_port: int) -> dict[str, str]:
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{amqp_port}\nlog.console = false\nlog.file.level = warning\n"
    )
    (folder / "rabbitmq-env.conf").write_text("")
    return {
        **os.environ,
        # A private HOME gives the node and rabbitmqctl their own Erlang cookie.
        "HOME": str(folder),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        # Our own config and env files: the system ones name the shared node and port 5672.
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


@contextmanager
def private_broker(*, port: int = 5699) -> Iterator[PrivateBroker]:
    """Start a private node, yield it, and stop it (and remove its data) whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix="wqbench-broker-"))
    node = f"wqbench{os.getpid()}@localhost"
    amqp_port = _free_port(port)
    env = _node_env(folder, node, amqp_port, _free_port(amqp_port + 20000))
    url = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [rabbitmq_script("rabbitmq-server")],
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    beam_pid: int | None = None
    try:
        version = _await_startup(url, server, folder)
        beam = (folder / "pid").read_text().strip() if (folder / "pid").exists() else ""
        beam_pid = int(beam) if beam.isdigit() else None
        yield PrivateBroker(url, node, beam_pid, version)
    finally:
        _stop(server, node, env)
        _await_exit(beam_pid)
        shutil.rmtree(folder, ignore_errors=True)


def _await_exit(pid: int | None) -> None:
    # The Erlang VM may still be writing its files for a moment after the script exits.
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def _await_startup(url: str, server: subprocess.Popen[bytes], folder: Path) -> str:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            connection = pika.BlockingConnection(pika.URLParameters(url))
        except pika.exceptions.AMQPError:
            time.sleep(0.2)
            continue
        version = connection._impl.server_properties.get("version", b"?")
        connection.close()
        return version.decode() if isinstance(version, bytes) else str(version)
    tail = (folder / "server.log").read_text(errors="replace")[-2000:]
    raise BrokerStartError(f"private RabbitMQ node did not start:\n{tail}")


def _stop(server: subprocess.Popen[bytes], node: str, env: dict[str, str]) -> None:
    if server.poll() is None:
        with suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [rabbitmq_script("rabbitmqctl"), "-n", node, "stop"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=_STOP_TIMEOUT_S,
                check=False,
            )
    try:
        server.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


class Probe:
    """Counts consumers and deletes a run's queues, on a short-lived connection each time.

    A connection held across a long run would miss its heartbeats (pika's blocking adapter
    only answers them while it is called) and be closed by the broker.
    """

    def __init__(self, url: str) -> None:
        self._parameters = pika.URLParameters(url)
        self._parameters.client_properties = {"connection_name": "wqbench probe"}

    @contextmanager
    def _connection(self) -> Iterator[pika.BlockingConnection]:
        connection = pika.BlockingConnection(self._parameters)
        try:
            yield connection
        finally:
            with suppress(pika.exceptions.AMQPError):
                connection.close()

    @staticmethod
    def _counts(connection: pika.BlockingConnection, queue: str) -> tuple[int, int]:
        channel = connection.channel()
        try:
            frame = channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        channel.close()
        return int(frame.method.message_count), int(frame.method.consumer_count)

    def counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and consumers of ``queue``; zeros while it does not exist."""
        with self._connection() as connection:
            return self._counts(connection, queue)

    def wait_for_consumers(self, queue: str, count: int, *, timeout: float = 60.0) -> None:
        """Block until ``count`` consumers are attached to ``queue``."""
        deadline = time.monotonic() + timeout
        with self._connection() as connection:
            while self._counts(connection, queue)[1] < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"fewer than {count} consumers on {queue} after {timeout:g}s"
                    )
                time.sleep(0.05)

    def delete(self, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
        """Delete queues and exchanges; missing ones are fine."""
        with self._connection() as connection:
            for kind, names in (("queue", queues), ("exchange", exchanges)):
                for name in names:
                    channel = connection.channel()
                    with suppress(pika.exceptions.ChannelClosedByBroker):
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                    if channel.is_open:
                        channel.close()
