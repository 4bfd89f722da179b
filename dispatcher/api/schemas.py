"""Request and response bodies of the HTTP API (JSON; the OpenAPI schema is built from them)."""

from __future__ import annotations

from typing import Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from common.messages import TASK_TYPE_PATTERN
from dispatcher.store import TaskRecord, TaskState

MAX_BATCH: Final = 1000
MAX_PAGE: Final = 500
DEFAULT_PAGE: Final = 50
MAX_WAIT_S: Final = 60.0


class TaskSubmission(BaseModel):
    """One task to run."""

    model_config = ConfigDict(extra="forbid")

    task_type: str = Field(pattern=TASK_TYPE_PATTERN, examples=["word_count"])
    params: dict[str, JsonValue] = Field(
        default_factory=dict, examples=[{"text": "to be or not to be"}]
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Submitting again with a key already used returns the first task.",
    )


class BatchSubmission(BaseModel):
    """Tasks to run; all are validated before any is recorded."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class SubmittedTask(BaseModel):
    """A recorded task: new, or the earlier task holding the same idempotency key."""

    task_id: UUID
    state: TaskState
    created: bool = Field(description="False when an earlier task held the idempotency key.")


class SubmittedBatch(BaseModel):
    """The batch's tasks, in request order."""

    tasks: list[SubmittedTask]


class NotQueued(BaseModel):
    """503: the broker did not confirm; tasks still ``submitted`` are published by the outbox."""

    detail: str
    tasks: list[SubmittedTask]


class TaskPage(BaseModel):
    """One page of tasks, newest first; pass ``next_cursor`` as ``cursor`` for the next one."""

    tasks: list[TaskRecord]
    next_cursor: str | None = Field(description="None on the last page.")


class QueueInfo(BaseModel):
    """A queue's ready messages and attached consumers."""

    name: str
    messages: int
    consumers: int


class QueueList(BaseModel):
    """The deployment's queues that exist (retry queues appear once first used)."""

    queues: list[QueueInfo]


class TaskTypeInfo(BaseModel):
    """A task type and the JSON Schema its params must match."""

    name: str
    params_schema: dict[str, Any]
    source: Literal["dispatcher"] = Field(
        description="Where the schema comes from: the dispatcher's task module."
    )


class TaskTypeList(BaseModel):
    """Task types the dispatcher knows; empty without WQ_DISPATCHER_TASKS."""

    task_types: list[TaskTypeInfo]


class Liveness(BaseModel):
    """The process is up and serving."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Whether the dispatcher can do its work, and which dependency is missing if not."""

    ready: bool
    broker: bool = Field(description="Every connection to RabbitMQ is open.")
    store: bool = Field(description="The task store answered.")


class ErrorDetail(BaseModel):
    """An error answered with a message."""

    detail: str
