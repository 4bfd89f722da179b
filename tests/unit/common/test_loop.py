"""Which event loop the services run on: uvloop where installed, asyncio's when asked."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

import pytest

from common import ConfigError
from common.loop import LoopSettings, run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_runs_on_uvloop_when_it_is_installed() -> None:
    assert run(_loop_module(), settings=LoopSettings(event_loop="auto")).startswith("uvloop")


def test_asyncio_runs_on_the_standard_loop() -> None:
    assert run(_loop_module(), settings=LoopSettings(event_loop="asyncio")).startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.import_module

    def no_uvloop(name: str, *args: Any) -> Any:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_uvloop)

    assert run(_loop_module(), settings=LoopSettings(event_loop="auto")).startswith("asyncio")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        run(_loop_module(), settings=LoopSettings(event_loop="uvloop"))


def test_a_bad_choice_from_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WQ_EVENT_LOOP", "tokio")

    with pytest.raises(ConfigError, match="WQ_EVENT_LOOP"):
        run(_loop_module())
