"""One RabbitMQ node of our own from the installed binaries, beside the shared one.

Tests that break a broker, the cluster test and the benchmarks must never touch the machine's
shared node ``rabbit@localhost``, so each ``LocalNode`` boots from the same binaries with
everything of its own:

- node name ``<prefix>-<hex>@localhost``, free AMQP and Erlang distribution ports on 127.0.0.1;
- a folder holding its mnesia/quorum/stream data, logs, pid file, ``rabbitmq.conf``, an empty
  ``rabbitmq-env.conf`` (so /etc/rabbitmq/rabbitmq-env.conf and its ``NODENAME`` are never
  read) and ``enabled_plugins`` = ``[].`` (no management, prometheus or stream listener;
  ``management=True`` enables the management plugin on a free port of 127.0.0.1);
- an Erlang cookie in ``$HOME/.erlang.cookie`` with ``HOME`` = that folder, for the node and
  for every ``rabbitmqctl`` run here: random, or one shared by the nodes of a ``LocalCluster``.
  The shared node has another cookie, so even a wrong ``-n`` could not reach it: it would
  refuse the CLI, and no node of ours can ever join its cluster.

The scripts in /usr/lib/rabbitmq/bin are run directly as the current user: the /usr/sbin
wrappers would ``su rabbitmq`` and use the shared node's home and cookie.

The node runs in the foreground of its own session (``start_new_session``), not ``-detached``:
the process and its group are then known, its console output lands in a file, and an early exit
is seen at once. Should the starting process be killed, a tiny watchdog process (in its own
session) notices the parent is gone, kills the node's process group and deletes the folder; a
normal interpreter exit runs an ``atexit`` fallback that stops every node still alive. A node
started with ``detach=True`` (the cluster script's) has neither: it outlives its starter and is
stopped by a later ``stop``, found again from the state the script saved.
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
# Ports a node of ours must never take: AMQP/dist/management of the shared node, epmd, and the
# range rabbitmqctl's own short-lived CLI nodes listen on.
RESERVED_PORTS = frozenset({EPMD_PORT, 5672, 5671, 15672, 15692, 25672, 5552, *range(35672, 35683)})

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00" + b"\x00" * 4 + b"\x00\x0a\x00\x0a"

# Runs as ``python -c`` in a session of its own: when the starting process is gone without
# having stopped the node, terminate the node's process group, then kill it, then delete its
# folder.
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

_LIVE: set[LocalNode] = set()


class NodeError(RuntimeError):
    """The node did not start, stop or change state as asked."""


class RabbitmqctlError(NodeError):
    """A ``rabbitmqctl`` run failed or timed out; the message holds its whole output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and no reserved one)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port
    raise NodeError("no free TCP port found")


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


def new_cookie() -> str:
    """A random Erlang cookie."""
    return secrets.token_hex(16).upper()


def _describe(args: list[str], code: int | None, stdout: str, stderr: str) -> str:
    return (
        f"$ {' '.join(args)}\nexit code: {code}\n"
        f"--- stdout ---\n{stdout.strip()}\n--- stderr ---\n{stderr.strip()}"
    )


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalNode:
    """One node of our own; see the module docstring. Use ``with`` or ``start``/``stop``.

    Every call is bounded by a timeout and raises :class:`NodeError` (or
    :class:`RabbitmqctlError`) with the relevant output instead of hanging.
    """

    def __init__(
        self,
        *,
        name_prefix: str = "wqnode",
        node: str | None = None,
        amqp_port: int | None = None,
        dist_port: int | None = None,
        base_dir: Path | None = None,
        cookie: str | None = None,
        extra_config: str = "",
        rabbitmq_bin: Path = RABBITMQ_BIN,
        management: bool = False,
    ) -> None:
        self.node = node or f"{name_prefix}-{uuid4().hex[:10]}@localhost"
        if self.node == SHARED_NODE:
            raise NodeError("refusing to run as the shared node")
        self.amqp_port = amqp_port or free_port()
        self.dist_port = dist_port or free_port()
        while self.dist_port == self.amqp_port:
            self.dist_port = free_port()
        self._bin = rabbitmq_bin
        short = self.node.partition("@")[0]
        if base_dir is None:
            base_dir = Path(tempfile.mkdtemp(prefix=f"{short}-"))
        else:
            base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir = base_dir
        self.log_dir = self.base_dir / "log"
        self.log_file = self.log_dir / f"{self.node}.log"
        self.console_file = self.base_dir / "console.out"
        self.pid_file = self.base_dir / f"{self.node}.pid"
        self.group_file = self.base_dir / "group.pid"
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        #: Seconds the last ``start()`` / ``stop()`` took (for reports and tuning timeouts).
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        #: The management plugin's HTTP port on 127.0.0.1, with ``management``.
        self.management_port: int | None = None
        if management:
            self.management_port = free_port()
            extra_config += (
                f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
                # Statistics every second, not every 5: a test sees them soon.
                "collect_statistics_interval = 1000\n"
            )
        self._plugins = "[rabbitmq_management]" if management else "[]"
        if not (self.base_dir / "rabbitmq.conf").exists():
            self._write_files(cookie or new_cookie(), extra_config)

    @classmethod
    def attach(cls, node: str, amqp_port: int, dist_port: int, base_dir: Path) -> LocalNode:
        """The node a detached ``start`` left running (its folder and files already exist)."""
        return cls(node=node, amqp_port=amqp_port, dist_port=dist_port, base_dir=base_dir)

    # ------------------------------------------------------------------ set-up

    def _write_files(self, cookie: str, extra_config: str) -> None:
        for sub in ("mnesia", "log", "conf.d"):
            (self.base_dir / sub).mkdir(exist_ok=True)
        (self.base_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n"
            "vm_memory_high_watermark.relative = 0.4\n"
            "disk_free_limit.absolute = 10MB\n"
            "log.file.level = info\n" + extra_config
        )
        (self.base_dir / "enabled_plugins").write_text(f"{self._plugins}.\n")
        (self.base_dir / "rabbitmq-env.conf").write_text("# node of our own: nothing from /etc\n")
        cookie_file = self.base_dir / ".erlang.cookie"
        cookie_file.write_text(cookie)
        cookie_file.chmod(0o400)

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
        if self._process is not None:
            return self._process.pid
        try:
            return int(self.group_file.read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def running(self) -> bool:
        """Whether the node's OS process is alive (the app may still be stopped)."""
        if self._process is not None:
            return self._process.poll() is None
        pid = self.pid
        return pid is not None and _alive(pid)

    # --------------------------------------------------------------- lifecycle

    def launch(self, *, detach: bool = False) -> None:
        """Start the node's process and return at once; ``wait_started`` waits for it."""
        if self._process is not None:
            if self._process.poll() is None:
                raise NodeError(f"{self.node} was already started")
            self._forget_process()  # killed or crashed: boot it again from its files
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
        self.group_file.write_text(str(self._process.pid))
        if detach:
            return
        _LIVE.add(self)
        parent, group, folder = str(os.getpid()), str(self._process.pid), str(self.base_dir)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, parent, group, folder],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_started(self, deadline: float) -> None:
        """Wait until ``await_startup`` and AMQP both succeed; stop the node and raise if not."""
        try:
            self._wait_for_amqp(deadline, what="the AMQP listener after boot")
            self.rabbitmqctl("await_startup", timeout=max(deadline - time.monotonic(), 5.0))
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise NodeError(f"{self.node} did not start: {exc}\n{tail}") from exc
        except BaseException:  # KeyboardInterrupt, pytest-timeout: stop the node, re-raise as is
            self.stop()
            raise

    def start(self, timeout: float = 90.0, *, detach: bool = False) -> None:
        """Boot the node and wait until ``await_startup`` and an AMQP connection both succeed."""
        started = time.monotonic()
        self.launch(detach=detach)
        self.wait_started(started + timeout)
        self.start_seconds = time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node (``rabbitmqctl stop``, then signals), wait for it, delete its folder.

        Safe to call more than once and on a node that never started or already died.
        """
        started = time.monotonic()
        try:
            if self.running:
                with contextlib.suppress(RabbitmqctlError):
                    self.rabbitmqctl("stop", timeout=timeout)
                self._wait_exit(timeout)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if self.running:
                    self._signal_group(sig, wait=10.0)
            self._kill_stray_beam()
        finally:
            if self._watchdog is not None and self._watchdog.poll() is None:
                self._watchdog.kill()
                self._watchdog.wait(timeout=10)
            _LIVE.discard(self)
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.stop_seconds = time.monotonic() - started

    def halt(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly (``rabbitmqctl stop``) and keep its files, for a later ``launch``.

        What ``docker compose down`` does to a node whose data lives in a volume.
        """
        self.rabbitmqctl("stop", timeout=timeout)
        self._wait_exit(timeout)
        if self.running:
            raise NodeError(f"{self.node} did not exit within {timeout:.0f}s of rabbitmqctl stop")
        self._forget_process()

    def kill(self) -> None:
        """``kill -9`` the node (Erlang VM and start script), as a crash would; keep its files."""
        self._kill_stray_beam()
        self._signal_group(signal.SIGKILL, wait=10.0)

    def crash(self, timeout: float = 90.0) -> None:
        """``kill -9`` the node, as a host crash would, then boot it again from its files."""
        self.kill()
        self._forget_process()
        self.start(timeout)

    def _forget_process(self) -> None:
        """Drop the exited process and its watchdog, so that ``launch`` may boot the node again."""
        if self._watchdog is not None and self._watchdog.poll() is None:
            self._watchdog.kill()
            self._watchdog.wait(timeout=10)
        self._watchdog = None
        if self._process is not None:
            self._process.wait(timeout=10)
        self._process = None

    def _wait_exit(self, timeout: float) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout)
            return
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.2)

    def _signal_group(self, sig: signal.Signals, wait: float) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        self._wait_exit(wait)

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
                raise NodeError(
                    f"{self.node} exited with code {self._process.returncode} "
                    f"while waiting for {what}"
                )
            if time.monotonic() > deadline:
                raise NodeError(f"timed out waiting for {what} on {self.node}")
            time.sleep(0.1)

    def rabbitmqctl(
        self, *args: str, timeout: float = 30.0, check: bool = True, tool: str = "rabbitmqctl"
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <this node> ARGS`` (or ``tool``); raises on failure/timeout."""
        if "-n" in args or "--node" in args:
            raise NodeError("rabbitmqctl() always targets this node")
        argv = [str(self._bin / tool), "-n", self.node, *args]
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
        return f"{type(self).__name__}({self.node!r}, amqp_port={self.amqp_port}, pid={self.pid})"


@atexit.register
def _stop_leftovers() -> None:
    """Interpreter exit without teardown (a crash in pytest): stop what is alive and ours."""
    for node in list(_LIVE):
        with contextlib.suppress(Exception):
            node.stop(timeout=10.0)
