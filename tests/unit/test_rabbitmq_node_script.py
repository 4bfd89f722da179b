"""deploy/rabbitmq-node.sh, the cluster nodes' entry point, run by sh with fakes on PATH.

The fakes stand in for the image's commands: ``hostname`` names the node, ``rabbitmq-diagnostics``
records its arguments and answers as told, ``docker-entrypoint.sh`` records that it was reached.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq-node.sh"
COOKIE = "a-cookie-of-sixty-four-hex-digits-0123456789abcdef0123456789abcd"


@dataclass
class Node:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def calls(self, command: str) -> list[str]:
        log = self.root / f"{command}.calls"
        return log.read_text().splitlines() if log.exists() else []

    def boot(
        self, hostname: str, *, seed_answers: bool, **env: str
    ) -> subprocess.CompletedProcess[str]:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        fakes = {
            "hostname": f"echo {hostname}",
            "rabbitmq-diagnostics": f'echo "$*" >> {self.root}/rabbitmq-diagnostics.calls; '
            + 'sleep "${FAKE_CHECK_SECONDS:-0}"; '
            + ("exit 0" if seed_answers else "exit 69"),
            "docker-entrypoint.sh": f'echo "$*" >> {self.root}/docker-entrypoint.sh.calls',
        }
        for name, body in fakes.items():
            fake = bin_dir / name
            fake.write_text(f"#!/bin/sh\n{body}\n")
            fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
        environment = {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "RABBITMQ_DATA_DIR": str(self.data),
            "ERLANG_COOKIE": COOKIE,
            "SEED_NODE": "rabbitmq-1",
            **env,
        }
        return subprocess.run(
            ["/bin/sh", str(SCRIPT)], env=environment, capture_output=True, text=True, timeout=30
        )


@pytest.fixture
def node(tmp_path: Path) -> Node:
    (tmp_path / "data").mkdir()
    return Node(tmp_path)


def test_the_seed_boots_at_once_with_an_owner_only_cookie(node: Node) -> None:
    booted = node.boot("rabbitmq-1", seed_answers=False)

    assert booted.returncode == 0, booted.stderr
    assert node.calls("rabbitmq-diagnostics") == []
    assert node.calls("docker-entrypoint.sh") == ["rabbitmq-server"]
    cookie = node.data / ".erlang.cookie"
    assert cookie.read_text() == COOKIE
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600


def test_a_first_boot_of_another_node_waits_for_the_seed_to_answer(node: Node) -> None:
    booted = node.boot("rabbitmq-2", seed_answers=True)

    assert booted.returncode == 0, booted.stderr
    assert node.calls("rabbitmq-diagnostics") == ["-q -t 10 -n rabbit@rabbitmq-1 check_running"]
    assert "waiting for the seed rabbit@rabbitmq-1" in booted.stdout
    assert node.calls("docker-entrypoint.sh") == ["rabbitmq-server"]


def test_the_wait_for_the_seed_is_bounded(node: Node) -> None:
    booted = node.boot("rabbitmq-3", seed_answers=False, SEED_WAIT="0")

    assert booted.returncode == 0, booted.stderr
    assert "did not answer within 0s; booting anyway" in booted.stdout
    assert node.calls("docker-entrypoint.sh") == ["rabbitmq-server"]


def test_a_later_boot_never_waits_whichever_node_stopped_first(node: Node) -> None:
    (node.data / "mnesia" / "rabbit@rabbitmq-2").mkdir(parents=True)

    booted = node.boot("rabbitmq-2", seed_answers=False)

    assert booted.returncode == 0, booted.stderr
    assert node.calls("rabbitmq-diagnostics") == []
    assert node.calls("docker-entrypoint.sh") == ["rabbitmq-server"]


def test_the_bound_is_time_on_the_clock_however_long_each_check_takes(node: Node) -> None:
    # A check of an unresolvable seed can take most of a minute. Here each takes 1.2 s: with
    # SEED_WAIT=3, checks at 0 and 3.2 s, then the deadline. Counting only the sleeps (2 s
    # each) would make a third check, and in real life wait many times SEED_WAIT.
    booted = node.boot("rabbitmq-2", seed_answers=False, SEED_WAIT="3", FAKE_CHECK_SECONDS="1.2")

    assert booted.returncode == 0, booted.stderr
    assert "did not answer within 3s; booting anyway" in booted.stdout
    assert len(node.calls("rabbitmq-diagnostics")) == 2
