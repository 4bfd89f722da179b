"""Dispatcher settings (``WQ_DISPATCHER_*``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import DISPATCHER_APP_ID, redact_url
from dispatcher.store.backends import url_scheme


def _default_store() -> Path:
    # XDG state directory: the same store whichever directory a command runs from.
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "wq" / "tasks.sqlite3"


class DispatcherSettings(BaseSettings):
    """Where tasks are recorded and how they are published."""

    model_config = SettingsConfigDict(env_prefix="WQ_DISPATCHER_", extra="ignore")

    store: Path | SecretStr = Field(
        default_factory=_default_store,
        description="SQLite task store file (WAL mode), or a PostgreSQL URL such as "
        "postgresql://wq@db.example/wq for more than one dispatcher replica.",
    )
    tasks: str | None = Field(
        default=None,
        description="Task module to validate task types and params against before publishing.",
    )
    app_id: str = Field(default=DISPATCHER_APP_ID, description="app_id property of task messages.")
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
    results_stall_after: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="A result waiting unsettled, with none settled, for this many seconds makes "
        "the results consumer stalled: readiness turns false until it moves again.",
    )
    result_prefetch: int = Field(
        default=64, ge=1, le=10_000, description="Unacked results the dispatcher holds at once."
    )

    http_host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP API binds to; anything but a loopback address requires "
        "WQ_DISPATCHER_HTTP_TOKEN.",
    )
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Port of the HTTP API served by dispatcher serve (0: any free port).",
    )
    http_max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        le=2**31,
        description="Largest HTTP request body the API reads (413 beyond it): the default "
        "holds a batch of 1,000 tasks with params of up to 16 KiB each.",
    )
    http_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the HTTP API requires (always, once set); never logged.",
    )
    scheduler_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between two scans for due delayed tasks, retries and cron schedules.",
    )
    executor_lost_after: float = Field(
        default=60.0,
        gt=0,
        description="An executor silent for this many seconds is listed as lost.",
    )

    @field_validator("store", mode="before")
    @classmethod
    def _path_or_url(cls, value: object) -> object:
        # A URL can carry a password, so it is kept as a SecretStr, as WQ_AMQP_URL is.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            return value
        if url_scheme(text) is not None:
            redact_url(text)  # raises ValueError for what urllib cannot parse, e.g. "[::1"
            return SecretStr(text)
        if "://" in text:
            raise ValueError("must be an SQLite file path or a postgresql:// URL")
        return Path(text)

    def redacted_store(self) -> str:
        """Where the store is, safe for logs and messages: a URL's password is masked."""
        if isinstance(self.store, SecretStr):
            return redact_url(self.store.get_secret_value())
        return str(self.store)
