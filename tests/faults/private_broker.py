"""A throw-away RabbitMQ node of the fault tests' own, beside (never instead of) the shared one.

Fault tests stop the broker's application, raise alarms and close every connection. Doing that to
the shared node ``rabbit@localhost`` would break every other test and developer on the machine, so
each ``PrivateBroker`` boots its own node from the same binaries with everything of its own:

- node name ``wqfault-<hex>@localhost``, free AMQP and Erlang distribution ports on 127.0.0.1;
- a temporary folder holding its mnesia/quorum/stream data, logs, pid file, ``rabbitmq.conf``,
  an empty ``rabbitmq-env.conf`` (so /etc/rabbitmq/rabbitmq-env.conf and its ``NODENAME`` are
  never read) and ``enabled_plugins`` = ``[].`` (no management, prometheus or stream listener);
- its own random Erlang cookie in ``$HOME/.erlang.cookie`` with ``HOME`` = that folder, for the
  node and for every ``rabbitmqctl`` run here. The shared node has another cookie, so even a
  wrong ``-n`` could not reach it: it would refuse the CLI.

The scripts in /usr/lib/rabbitmq/bin are run directly as the current user (root): the
/usr/sbin wrappers would ``su rabbitmq`` and use the shared node's home and cookie.

The node runs in the foreground of its own session (``start_new_session``), not ``-detached``:
the process and its group are then known, its console output lands in a file, and an early exit
is seen at once. Should pytest itself be killed, a tiny watchdog process (in its own session)
notices the parent is gone, kills the node's process group and deletes the folder; a normal
interpreter exit runs an ``atexit`` fallback that stops every node still alive.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from uuid import uuid4

RABBITMQ_BIN = Path(os.environ.get("WQ_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
SHARED_NODE = "rabbit@localhost"
EPMD_PORT = 4369
# Ports a private node must never take: AMQP/dist/management of the shared node, epmd, and the
# range rabbitmqctl's own short-lived CLI nodes listen on.
RESERVED_PORTS = frozenset({EPMD_PORT, 5672, 5671, 15672, 15692, 25672, 5552, *range(35672, 35683)})
TINY_WATERMARK = "0.0000001"
NORMAL_WATERMARK = "0.4"

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00" + b"\x00" * 4 + b"\x00\x0a\x00\x0a"

# Runs as ``python -c`` in a session of its own: when the test process is gone without having
# stopped the node, terminate the node's process group, then kill it, then delete its folder.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, group, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
while alive(parent):
    time.sleep(1)
for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 0)):
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        break
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(group):
        time.sleep(0.2)
shutil.rmtree(folder, ignore_errors=True)
"""

_LIVE: set[PrivateBroker] = set()


class PrivateBrokerError(RuntimeError):
    """The private node did not start, stop or change state as asked."""


class RabbitmqctlError(PrivateBrokerError):
    """A ``rabbitmqctl`` run failed or timed out; the message holds its whole output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and no reserved one)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise PrivateBrokerError("no free TCP port found")


def epmd_names(timeout: float = 5.0) -> dict[str, int]:
    """Node names (without ``@host``) registered in the local epmd, with their dist ports."""
    with socket.create_connection(("127.0.0.1", EPMD_PORT), timeout=timeout) as conn:
        conn.sendall(b"\x00\x01n")  # NAMES_REQ: length 1, tag 110
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    text = b"".join(chunks)[4:].decode(errors="replace")  # after the 4-byte epmd port
    names: dict[str, int] = {}
    for line in text.splitlines():  # "name wqfault-ab12 at port 40123"
        parts = line.split()
        if len(parts) == 5 and parts[0] == "name":
            names[parts[1]] = int(parts[4])
    return names


def _describe(args: list[str], code: int | None, stdout: str, stderr: str) -> str:
    return (
        f"$ {' '.join(args)}\nexit code: {code}\n"
        f"--- stdout ---\n{stdout.strip()}\n--- stderr ---\n{stderr.strip()}"
    )


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


class PrivateBroker:
    """One private RabbitMQ node; see the module docstring. Use ``with`` or ``start``/``stop``.

    Every call is bounded by a timeout and raises :class:`PrivateBrokerError` (or
    :class:`RabbitmqctlError`) with the relevant output instead of hanging.
    """

    def __init__(self, *, name_prefix: str = "wqfault", rabbitmq_bin: Path = RABBITMQ_BIN) -> None:
        self.node = f"{name_prefix}-{uuid4().hex[:10]}@localhost"
        if self.node == SHARED_NODE:  # pragma: no cover - cannot happen, but must never happen
            raise PrivateBrokerError("refusing to run as the shared node")
        self.amqp_port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.amqp_port:
            self.dist_port = free_port()
        self._bin = rabbitmq_bin
        self.base_dir = Path(tempfile.mkdtemp(prefix=f"{self.node.partition('@')[0]}-"))
        self.log_dir = self.base_dir / "log"
        self.log_file = self.log_dir / f"{self.node}.log"
        self.console_file = self.base_dir / "console.out"
        self.pid_file = self.base_dir / f"{self.node}.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        #: Seconds the last ``start()`` / ``stop()`` took (for reports and tuning timeouts).
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        #: State changes made through this object, so a fixture knows what to undo.
        self.app_stopped = False
        self.memory_alarm = False
        #: Set by a test that changed the node in a way nothing here tracks (users, policies,
        #: ``rabbitmqctl(...)`` of its own): the fixture then replaces the node after the test.
        self.dirty = False
        self._write_files()

    # ------------------------------------------------------------------ set-up

    def _write_files(self) -> None:
        for sub in ("mnesia", "log", "conf.d"):
            (self.base_dir / sub).mkdir()
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "vm_memory_high_watermark.relative = 0.4\n"
            "disk_free_limit.absolute = 10MB\n"
            "log.file.level = info\n"
        )
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("# private node: nothing from /etc\n")
        cookie = self.base_dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)

    @property
    def env(self) -> dict[str, str]:
        """The environment of the node and of every ``rabbitmqctl`` run against it."""
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RABBITMQ_", "ERL_", "WQ_"))
        }
        base = self.base_dir
        return {
            **inherited,
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(base / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.log_dir),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        """AMQP URL of the node (guest is allowed from localhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def pid(self) -> int | None:
        """Process id of the node's start script (leader of its process group)."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        """Whether the node's OS process is alive (the app may still be stopped)."""
        return self._process is not None and self._process.poll() is None

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 90.0) -> None:
        """Boot the node and wait until ``await_startup`` and an AMQP connection both succeed."""
        if self._process is not None:
            raise PrivateBrokerError(f"{self.node} was already started")
        started = time.monotonic()
        deadline = started + timeout
        with self.console_file.open("ab") as console:
            self._process = subprocess.Popen(
                [str(self._bin / "rabbitmq-server")],
                env=self.env,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)
        parent, group, folder = str(os.getpid()), str(self._process.pid), str(self.base_dir)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, parent, group, folder],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_for_amqp(deadline, what="the AMQP listener after boot")
            self.rabbitmqctl("await_startup", timeout=max(deadline - time.monotonic(), 5.0))
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise PrivateBrokerError(f"{self.node} did not start: {exc}\n{tail}") from exc
        except BaseException:  # KeyboardInterrupt, pytest-timeout: stop the node, re-raise as is
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node (``rabbitmqctl stop``, then signals), wait for it, delete its folder.

        Safe to call more than once and on a node that never started or already died.
        """
        started = time.monotonic()
        try:
            process = self._process
            if process is not None and process.poll() is None:
                with contextlib.suppress(RabbitmqctlError):
                    self.rabbitmqctl("stop", timeout=timeout)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=timeout)
            if process is not None and process.poll() is None:
                self._signal_group(process, signal.SIGTERM, wait=10.0)
            if process is not None and process.poll() is None:
                self._signal_group(process, signal.SIGKILL, wait=10.0)
            self._kill_stray_beam()
        finally:
            if self._watchdog is not None and self._watchdog.poll() is None:
                self._watchdog.kill()
                self._watchdog.wait(timeout=10)
            _LIVE.discard(self)
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.stop_seconds = time.monotonic() - started

    def _signal_group(
        self, process: subprocess.Popen[bytes], sig: signal.Signals, wait: float
    ) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)

    def _kill_stray_beam(self) -> None:
        """Kill the beam named in the pid file if it survived, after checking it is ours."""
        try:
            beam = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{beam}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.base_dir).encode() in cmdline:  # "-home <our folder>": no one else's beam
            with contextlib.suppress(ProcessLookupError):
                os.kill(beam, signal.SIGKILL)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ faults

    def stop_app(self, timeout: float = 60.0) -> None:
        """Stop the RabbitMQ application (listeners and connections go; the VM stays)."""
        self.rabbitmqctl("stop_app", timeout=timeout)
        self.app_stopped = True

    def start_app(self, timeout: float = 60.0) -> None:
        """Start the application again and wait until AMQP answers."""
        deadline = time.monotonic() + timeout
        self.rabbitmqctl("start_app", timeout=timeout)
        self._wait_for_amqp(deadline, what="AMQP after start_app")
        self.app_stopped = False

    def close_all_connections(self, reason: str = "closed by a fault test") -> None:
        """Close every client connection of the node (clients see CONNECTION_FORCED)."""
        self.rabbitmqctl("close_all_connections", "--global", reason)

    def set_memory_alarm(self, timeout: float = 30.0) -> None:
        """Raise the memory alarm (tiny watermark) and wait until the node reports it."""
        self.memory_alarm = True
        self.rabbitmqctl("set_vm_memory_high_watermark", TINY_WATERMARK)
        self._wait_for_memory_alarm(True, timeout)

    def clear_memory_alarm(self, timeout: float = 30.0) -> None:
        """Put the watermark back to 0.4 and wait until the memory alarm is gone."""
        self.rabbitmqctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)
        self._wait_for_memory_alarm(False, timeout)
        self.memory_alarm = False

    def alarms(self) -> str:
        """The node's alarms as Erlang prints them, e.g. ``[{{resource_limit,memory,...},[]}]``."""
        return self.rabbitmqctl("eval", "rabbit_alarm:get_alarms().").stdout.strip()

    def _wait_for_memory_alarm(self, raised: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            alarms = self.alarms()
            if ("resource_limit,memory" in alarms) == raised:
                return
            if time.monotonic() > deadline:
                state = "raised" if raised else "cleared"
                raise PrivateBrokerError(f"memory alarm not {state} after {timeout}s: {alarms}")
            time.sleep(0.2)

    # ------------------------------------------------------------------ probes

    def amqp_answers(self, timeout: float = 3.0) -> bool:
        """Whether the AMQP listener answers a protocol header with ``connection.start``.

        A raw socket rather than pika: no client library logs an error on every failed poll,
        and nothing here can hang (any failure, a timeout included, is just "no").
        """
        try:
            with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=timeout) as conn:
                conn.sendall(AMQP_HEADER)
                frame = b""
                while len(frame) < len(CONNECTION_START):
                    chunk = conn.recv(64)
                    if not chunk:
                        return False
                    frame += chunk
        except OSError:
            return False
        # frame type 1 (method), channel 0, size (4 bytes), class 10 method 10
        return frame[:3] == CONNECTION_START[:3] and frame[7:11] == CONNECTION_START[7:11]

    def _wait_for_amqp(self, deadline: float, *, what: str) -> None:
        while not self.amqp_answers():
            if self._process is not None and self._process.poll() is not None:
                raise PrivateBrokerError(
                    f"{self.node} exited with code {self._process.returncode} "
                    f"while waiting for {what}"
                )
            if time.monotonic() > deadline:
                raise PrivateBrokerError(f"timed out waiting for {what} on {self.node}")
            time.sleep(0.1)

    def rabbitmqctl(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <this node> ARGS``; output captured, raises on failure/timeout."""
        if "-n" in args or "--node" in args:
            raise PrivateBrokerError("rabbitmqctl() always targets this private node")
        argv = [str(self._bin / "rabbitmqctl"), "-n", self.node, *args]
        try:
            result = subprocess.run(
                argv,
                env=self.env,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            details = _describe(argv, None, _text(exc.stdout), _text(exc.stderr))
            raise RabbitmqctlError(f"timed out after {timeout}s\n{details}") from exc
        if check and result.returncode != 0:
            raise RabbitmqctlError(_describe(argv, result.returncode, result.stdout, result.stderr))
        return result

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the node's log and console output, for error messages."""
        parts = []
        for path in (self.log_file, self.console_file):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = ["(missing)"]
            parts.append(f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def __repr__(self) -> str:
        return f"PrivateBroker({self.node!r}, amqp_port={self.amqp_port}, pid={self.pid})"


class NodeKeeper:
    """Hands out one private node per session, healthy, and takes it back restored.

    ``acquire`` starts a node when there is none or the last one is no longer usable;
    ``release`` undoes what the test did through the helpers (memory alarm, stopped app) and
    drops the node when that fails, when the test marked it ``dirty`` or, after a failed test,
    when any alarm is still up. The next ``acquire`` then starts a fresh one.
    """

    def __init__(self) -> None:
        self.broker: PrivateBroker | None = None
        #: Nodes started so far (replacements included).
        self.starts = 0

    def acquire(self) -> PrivateBroker:
        """The current node, started or replaced first when needed."""
        if self.broker is not None and not self._usable(self.broker):
            self.discard()
        if self.broker is None:
            broker = PrivateBroker()
            broker.start()  # stops itself and raises with the log tail when it cannot start
            self.broker = broker
            self.starts += 1
        return self.broker

    def release(self, *, failed: bool) -> None:
        """Restore the node after a test, or drop it when it cannot be trusted any more."""
        broker = self.broker
        if broker is None:
            return
        try:
            if broker.dirty or not broker.running:
                raise PrivateBrokerError("node marked dirty or gone")
            if broker.app_stopped or not broker.amqp_answers():
                broker.start_app()
            if broker.memory_alarm:
                broker.clear_memory_alarm()
            if failed and broker.alarms() != "[]":
                raise PrivateBrokerError(f"alarms left after a failed test: {broker.alarms()}")
        except Exception:
            self.discard()

    def discard(self) -> None:
        """Stop and forget the current node (if any)."""
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()

    @staticmethod
    def _usable(broker: PrivateBroker) -> bool:
        return (
            broker.running
            and not (broker.dirty or broker.app_stopped or broker.memory_alarm)
            and broker.amqp_answers()
        )


@atexit.register
def _stop_leftovers() -> None:
    """Interpreter exit without fixture teardown (a crash in pytest): stop what is alive."""
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=10.0)
