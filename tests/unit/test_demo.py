"""The demo's summary: the lookup it suggests runs where the demo ran."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from examples import demo


def _fake_install(root: Path) -> Path:
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "dispatcher"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_the_lookup_names_the_venv_script_when_the_demo_ran_from_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_install(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))

    assert demo._status_command("s.sqlite3") == "WQ_DISPATCHER_STORE=s.sqlite3 .venv/bin/dispatcher"


def test_the_lookup_is_the_plain_command_where_it_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The image: /usr/local/bin/python and /usr/local/bin/dispatcher, run from /data.
    bin_dir = _fake_install(tmp_path / "usr")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path / "data")
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", str(bin_dir))

    assert (
        demo._status_command("/data/t.sqlite3") == "WQ_DISPATCHER_STORE=/data/t.sqlite3 dispatcher"
    )


def test_the_lookup_falls_back_to_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))

    assert (
        demo._status_command("t") == f"WQ_DISPATCHER_STORE=t {tmp_path / 'python3'} -m dispatcher"
    )
