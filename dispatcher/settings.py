"""Dispatcher settings (``WQ_DISPATCHER_*``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_store() -> Path:
    # XDG state directory: the same store whichever directory a command runs from.
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "wq" / "tasks.sqlite3"


class DispatcherSettings(BaseSettings):
    """Where tasks are recorded and how they are published."""

    model_config = SettingsConfigDict(env_prefix="WQ_DISPATCHER_", extra="ignore")

    store: Path = Field(
        default_factory=_default_store, description="SQLite task store file (WAL mode)."
    )
    tasks: str | None = Field(
        default=None,
        description="Task module to validate task types and params against before publishing.",
    )
    app_id: str = Field(default="wq-dispatcher", description="app_id property of task messages.")
    publish_window: int = Field(
        default=256, ge=1, le=10_000, description="Unconfirmed publishes in flight at once."
    )
    outbox_age: float = Field(
        default=60.0,
        gt=0,
        description="dispatcher serve re-publishes tasks still unconfirmed after this many "
        "seconds (their publisher crashed or never got a confirm).",
    )
    outbox_interval: float = Field(
        default=15.0, gt=0, description="Seconds between two outbox sweeps."
    )
    ready_file: Path | None = Field(
        default=None,
        description="File present while dispatcher serve consumes results (health probes).",
    )
    result_prefetch: int = Field(
        default=64, ge=1, le=10_000, description="Unacked results the dispatcher holds at once."
    )
