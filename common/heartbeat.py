"""Executor heartbeats: who is running, what it is doing, and which task types it serves.

The wire model of the ``wq.executors`` queue (docs/protocol.md, "Executor heartbeats"). An
executor sends one when it starts, one every heartbeat interval, and one when it stops cleanly;
every message carries its task types with their params JSON Schemas, so a dispatcher that
starts later still learns them from the next heartbeat.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from common.errors import DecodeError, UnsupportedVersion


class ExecutorEvent(StrEnum):
    """Why a heartbeat was sent."""

    STARTED = "started"
    HEARTBEAT = "heartbeat"
    STOPPED = "stopped"  # the last one, after a clean stop


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class RunningTask(_Wire):
    """A task an executor is running right now."""

    task_id: UUID
    task_type: str
    attempt: int = 1
    started_at: AwareDatetime


class TaskTypeInfo(_Wire):
    """A task type as an executor publishes it: params JSON Schema, description, options."""

    name: str
    params_schema: dict[str, JsonValue]
    description: str | None = None
    options: dict[str, JsonValue] = Field(default_factory=dict)


class Heartbeat(_Wire):
    """One executor's state at ``sent_at``."""

    version: Literal[1] = 1
    event: ExecutorEvent
    executor: str
    host: str
    pid: int
    slots: int
    started_at: AwareDatetime
    sent_at: AwareDatetime
    task_types: list[TaskTypeInfo] = Field(default_factory=list)
    current_tasks: list[RunningTask] = Field(default_factory=list)
    processed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    cpu_percent: float | None = None
    rss_bytes: int | None = None


def decode_heartbeat(body: bytes) -> Heartbeat:
    """Decode a heartbeat body, raising ``DecodeError`` or ``UnsupportedVersion``."""
    try:
        return Heartbeat.model_validate_json(body)
    except ValueError as exc:
        version = _declared_version(body)
        if version is not None and version != 1:
            raise UnsupportedVersion(version) from exc
        raise DecodeError(f"not a heartbeat: {exc}", excerpt=body[:200]) from exc


def _declared_version(body: bytes) -> object:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("version") if isinstance(document, dict) else None
