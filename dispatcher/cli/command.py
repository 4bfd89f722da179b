"""What a ``dispatcher`` command is: its parser, its runner, and what ``main`` wires for it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import AmqpSettings, TaskRegistry, load_registry, load_settings
from dispatcher.settings import DispatcherSettings


@dataclass(frozen=True, slots=True)
class Wiring:
    """Built once by ``main``: the dispatcher's settings, and what only some commands need."""

    settings: DispatcherSettings

    def amqp(self) -> AmqpSettings:
        """The broker's settings (``WQ_AMQP_*``); ``ConfigError`` when they are invalid."""
        return load_settings(AmqpSettings)

    def registry(self) -> TaskRegistry | None:
        """The task module submissions are validated against, if one is set."""
        return load_registry(self.settings.tasks) if self.settings.tasks else None

    def store_missing(self) -> bool:
        """Whether the store is an SQLite file that does not exist yet (nothing recorded)."""
        return isinstance(self.settings.store, Path) and not self.settings.store.exists()


@dataclass(frozen=True, slots=True)
class Command:
    """One command of the ``dispatcher`` command line.

    Attributes:
        name: what the user types.
        add_parser: adds the command's parser to the subparsers (argparse's object).
        run: carries the command out; returns the exit code, or raises a ``WorkQueueError``
            that ``main`` reports and turns into one (``common.exit_codes.exit_code_for``).
        logs: whether the command logs at info by default; one-shot commands print their
            answer and log warnings only, unless ``WQ_LOG_LEVEL`` says otherwise.
    """

    name: str
    add_parser: Callable[[Any], None]
    run: Callable[[Wiring, argparse.Namespace], int]
    logs: bool = False
