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
    queues: str | None = Field(
        default=None,
        description="Task queues to consume, comma-separated (default: the queues its task "
        "types declare, 'default' for those that declare none).",
    )
    concurrency: int = Field(
        default=1, ge=1, le=256, description="Execution slots; each holds at most one task."
    )
    name: str | None = Field(
        default=None,
        description="Executor name in results and logs (default: host.pid; as PID 1 in a "
        "container, the container's name on its network, else its host name).",
    )
    ready_file: Path | None = Field(
        default=None,
        description="File present while the executor consumes (for `test -f` health probes).",
    )
    shutdown_grace: float = Field(
        default=30.0, ge=0, description="Seconds in-flight tasks get to finish on SIGTERM."
    )
    heartbeat_interval: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between two heartbeats the executor sends to the dispatcher.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the Prometheus metrics endpoint binds to; anything but a loopback "
        "address also needs WQ_EXECUTOR_METRICS_PUBLIC=true.",
    )
    metrics_public: bool = Field(
        default=False,
        description="Allow the metrics endpoint (no authentication: task type names and "
        "counts) on a non-loopback WQ_EXECUTOR_METRICS_HOST, such as a container network.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the executor's Prometheus /metrics endpoint (unset: none).",
    )
