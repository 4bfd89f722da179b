"""Dispatcher settings (``WQ_DISPATCHER_*``)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common import DISPATCHER_APP_ID, redact_url
from dispatcher.store.backends import url_scheme

# Longest retention a setting may ask for: a hundred years (and so any date a store can hold).
MAX_DURATION: Final = timedelta(days=36_500)
_DURATION = re.compile(r"^\s*(\d{1,9}(?:\.\d{1,6})?)\s*(s|m|h|d|w)?\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: object) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds, as a duration.

    Raises ``ValueError`` (a setting's or an argument's clear message) for anything else, or
    for more than a hundred years.
    """
    duration: timedelta | None
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        duration = timedelta(seconds=value) if value == value and abs(value) < 1e10 else None
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
        duration = timedelta(seconds=seconds) if seconds <= MAX_DURATION.total_seconds() else None
    else:
        duration = None
    if duration is None or duration < timedelta(0) or duration > MAX_DURATION:
        raise ValueError("a duration such as 7d, 12h, 30m, 45s or 2w (0 to 100 years)")
    return duration


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


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
    http_read_token: SecretStr | None = Field(
        default=None,
        description="A second token that may read everything (GET) and change nothing; only "
        "with WQ_DISPATCHER_HTTP_TOKEN. The dashboard's login takes either.",
    )
    management_url: SecretStr | None = Field(
        default=None,
        description="RabbitMQ's management API (http://user:password@host:15672), if the "
        "dashboard should show unacked messages and rates per queue; never logged.",
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
    retention: Duration = Field(
        default=timedelta(days=7),
        description="Finished tasks (succeeded, failed, dead, cancelled) older than this are "
        "deleted by dispatcher serve, with their attempts and idempotency keys: 7d, 12h, ...; "
        "0 keeps everything.",
    )
    executor_retention: Duration = Field(
        default=timedelta(days=1),
        description="Executors not heard from for this long (stopped or lost) are deleted; "
        "0 keeps them.",
    )
    retention_interval: float = Field(
        default=60.0, gt=0, description="Seconds between two retention sweeps."
    )

    @field_validator("management_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL of the management API")
        return value

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
