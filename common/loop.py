"""The event loop every service and command runs on: uvloop where installed, else asyncio's.

uvloop (libuv under asyncio's API) runs this project's hot paths, pika's frame handling on
asyncio's transports and the services' callbacks, with less CPU per task than the standard
loop; the figures are in docs/benchmarks.md. ``WQ_EVENT_LOOP`` chooses: ``auto`` (uvloop if
it can be imported), ``uvloop`` (required: a configuration error without it) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError
from common.settings import load_settings

_T = TypeVar("_T")


class LoopSettings(BaseSettings):
    """Which event loop to run on."""

    model_config = SettingsConfigDict(env_prefix="WQ_", extra="ignore")

    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto", description="auto: uvloop if installed, else asyncio's own loop."
    )

    @field_validator("event_loop", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``choice`` names; None for asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError("WQ_EVENT_LOOP=uvloop, but uvloop is not installed") from exc
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, _T], *, settings: LoopSettings | None = None) -> _T:
    """``asyncio.run(main)`` on the chosen loop; ``ConfigError`` for a bad ``WQ_EVENT_LOOP``."""
    try:
        factory = loop_factory((settings or load_settings(LoopSettings)).event_loop)
    except BaseException:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
