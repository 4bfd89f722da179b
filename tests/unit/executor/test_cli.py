"""``executor run`` refuses, before connecting, what it must not serve."""

from __future__ import annotations

import pytest

from common import exit_codes as codes
from executor.cli import main


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
