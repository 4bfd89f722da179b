"""``executor run`` refuses, before connecting, what it must not serve."""

from __future__ import annotations

import os
import socket

import pytest

from common import exit_codes as codes
from executor.cli import default_name, main


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """main() configures logging for the process; the next tests get theirs back."""


def test_metrics_beyond_loopback_without_the_opt_in_exit_2_naming_both_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WQ_EXECUTOR_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("WQ_EXECUTOR_METRICS_PORT", "0")
    monkeypatch.delenv("WQ_EXECUTOR_METRICS_PUBLIC", raising=False)

    assert main(["run", "--tasks", "examples.tasks"]) == codes.USAGE

    stderr = capsys.readouterr().err
    assert "WQ_EXECUTOR_METRICS_HOST=0.0.0.0" in stderr
    assert "WQ_EXECUTOR_METRICS_PUBLIC=true" in stderr


def _host(
    monkeypatch: pytest.MonkeyPatch,
    *,
    pid: int,
    reverse: str | Exception,
    address: str = "172.18.0.5",
) -> None:
    monkeypatch.setattr(os, "getpid", lambda: pid)
    monkeypatch.setattr(socket, "gethostname", lambda: "3f2a9c1d7e6b")
    monkeypatch.setattr(socket, "gethostbyname", lambda host: address)

    def gethostbyaddr(ip: str) -> tuple[str, list[str], list[str]]:
        assert ip == address
        if isinstance(reverse, Exception):
            raise reverse
        return reverse, [], [ip]

    monkeypatch.setattr(socket, "gethostbyaddr", gethostbyaddr)


def test_a_compose_replica_is_named_as_compose_lists_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, pid=1, reverse="workqueue-executor-2.workqueue_default")

    assert default_name() == "workqueue-executor-2"


@pytest.mark.parametrize(
    "reverse",
    [socket.herror(1, "Unknown host"), "3f2a9c1d7e6b", "172-18-0-5.default.pod", "localhost"],
)
def test_a_container_without_a_useful_reverse_name_is_its_host_name(
    monkeypatch: pytest.MonkeyPatch, reverse: str | Exception
) -> None:
    _host(monkeypatch, pid=1, reverse=reverse)

    assert default_name() == "3f2a9c1d7e6b"


def test_outside_a_container_the_name_is_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    _host(monkeypatch, pid=4242, reverse=AssertionError("no lookup outside a container"))

    assert default_name() == "3f2a9c1d7e6b.4242"
