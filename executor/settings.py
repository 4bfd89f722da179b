"""Executor settings (``WQ_EXECUTOR_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExecutorSettings(BaseSettings):
    """What to run and how many tasks at once."""

    model_config = SettingsConfigDict(env_prefix="WQ_EXECUTOR_", extra="ignore")

    tasks: str | None = Field(
        default=None, description="Task module to load: 'package.module' or 'module:registry'."
    )
    concurrency: int = Field(
        default=1, ge=1, le=256, description="Execution slots; each holds at most one task."
    )
    name: str | None = Field(
        default=None, description="Executor name in results and logs (default: host.pid)."
    )
    ready_file: Path | None = Field(
        default=None,
        description="File present while the executor consumes (for `test -f` health probes).",
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds in-flight tasks get to finish on SIGTERM."
    )
