"""Service processes of a benchmark run: start, measure CPU and peak RSS from /proc, stop.

Linux only: CPU time and peak RSS (``VmHWM``) are read from ``/proc``, which works for any
process, including the peers' workers and the broker's Erlang VM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parents[1]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_STOP_TIMEOUT_S = 15.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process so far (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name is in parentheses and may hold spaces: split after it.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_mib(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of one process in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds of every process in the trees rooted at ``pids``."""
    return sum(cpu_seconds(p) for root in pids for p in process_tree(root))


def service_env(amqp_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a service process: this checkout first on the path, JSON logs."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "WQ_AMQP_URL": amqp_url,
        "WQ_AMQP_PREFIX": prefix,
        "WQ_LOG_FORMAT": "json",
        **extra,
    }


@dataclass
class Services:
    """The processes one run started; all of them are stopped when the block ends."""

    log_dir: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> int:
        """Start a process with its output in ``<log_dir>/<name>.log``; returns its pid."""
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.started.append(process)
        return process.pid

    def python(self, name: str, module: str, args: Sequence[str], env: dict[str, str]) -> int:
        """Start ``python -m module args`` with this interpreter."""
        return self.start(name, [sys.executable, "-m", module, *args], env)

    @property
    def pids(self) -> list[int]:
        """Pids of the processes started (not their children)."""
        return [p.pid for p in self.started]

    def peak_rss_mib(self) -> float:
        """The largest peak RSS of any process started or any of their children."""
        return max((peak_rss_mib(p) for root in self.pids for p in process_tree(root)), default=0)

    def check_alive(self) -> None:
        """Raise if a process exited early, with the end of its log."""
        for process in self.started:
            if process.poll() is not None:
                logs = sorted(self.log_dir.glob("*.log"))
                tail = "\n".join(
                    f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs
                )
                raise RuntimeError(f"process {process.args!r} exited early:\n{tail}")

    def stop(self) -> None:
        """SIGTERM every process, then SIGKILL whatever is still running after a grace."""
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.started.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
