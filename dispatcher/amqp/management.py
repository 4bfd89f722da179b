"""What only RabbitMQ's management plugin tells: unacked counts and message rates per queue.

AMQP's passive declare reports a queue's ready messages and consumers, nothing more. Where
``WQ_DISPATCHER_MANAGEMENT_URL`` points at the management API (``http://user:pass@host:15672``),
the dashboard's queue page adds what it reports. Its answer is read like any input from
outside: a bounded body, validated numbers, and any failure is "not available", never an
error page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from common.logging import get_logger

log = get_logger(__name__)

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
TIMEOUT_S: Final = 3.0
_COLUMNS: Final = ",".join(
    (
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "message_stats.publish_details.rate",
        "message_stats.deliver_get_details.rate",
    )
)


class _Rate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rate: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class _Stats(BaseModel):
    model_config = ConfigDict(extra="ignore")
    publish_details: _Rate | None = None
    deliver_get_details: _Rate | None = None


class _Queue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(max_length=255)
    messages_ready: int | None = Field(default=None, ge=0)
    messages_unacknowledged: int | None = Field(default=None, ge=0)
    consumers: int | None = Field(default=None, ge=0)
    message_stats: _Stats | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue as the management plugin reports it (rates in messages per second)."""

    ready: int | None
    unacked: int | None
    consumers: int | None
    publish_rate: float | None
    deliver_rate: float | None


class ManagementApi:
    """Reads queue statistics from the management HTTP API of the deployment's vhost."""

    def __init__(self, url: SecretStr, vhost: str) -> None:
        parts = urllib.parse.urlsplit(url.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("WQ_DISPATCHER_MANAGEMENT_URL must be an http(s):// URL")
        port = f":{parts.port}" if parts.port else ""
        self._base = f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._vhost = urllib.parse.quote(vhost, safe="")

    async def queues(self, names: Iterable[str]) -> dict[str, QueueStats] | None:
        """Statistics of those of ``names`` the broker has; None when they cannot be read."""
        wanted = set(names)
        try:
            raw = await asyncio.to_thread(
                self._get, f"/api/queues/{self._vhost}?columns={_COLUMNS}"
            )
            found = [_Queue.model_validate(item) for item in _list(json.loads(raw))]
        except (OSError, ValueError, ValidationError) as exc:
            log.warning("management_api_unreadable", error=type(exc).__name__)
            return None
        return {q.name: _stats(q) for q in found if q.name in wanted}

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(
            self._base + path, headers={"Authorization": self._auth, "Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body: bytes = response.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise ValueError("management API answer over the size limit")
        return body


def vhost_of(amqp_url: str) -> str:
    """The vhost an AMQP URL names, as pika reads it: none or ``/`` is ``/``."""
    path = urllib.parse.urlsplit(amqp_url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("management API answer is not a list")
    return value


def _stats(queue: _Queue) -> QueueStats:
    stats = queue.message_stats
    publish = stats.publish_details.rate if stats and stats.publish_details else None
    deliver = stats.deliver_get_details.rate if stats and stats.deliver_get_details else None
    return QueueStats(
        ready=queue.messages_ready,
        unacked=queue.messages_unacknowledged,
        consumers=queue.consumers,
        publish_rate=publish if publish is None or math.isfinite(publish) else None,
        deliver_rate=deliver if deliver is None or math.isfinite(deliver) else None,
    )
