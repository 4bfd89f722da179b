"""``/tasks/{id}/retry`` and ``/tasks/retry``: run failed, dead or cancelled tasks again."""

from __future__ import annotations

import contextlib
from typing import Final, Self
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common import AwareWireTime
from dispatcher.api.context import Context
from dispatcher.api.schemas import ErrorDetail, TaskView
from dispatcher.requests import QueueName, TaskTypeName
from dispatcher.service import Dispatcher
from dispatcher.store.query import TaskQuery
from dispatcher.store.records import TaskState

router = APIRouter(prefix="/tasks", tags=["tasks"])

MAX_RETRY_BATCH: Final = 1000
RETRYABLE: Final = (TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED)
_PAGE: Final = 500


class TaskFilter(BaseModel):
    """The filters of ``GET /tasks``, as a body: every one given must hold."""

    model_config = ConfigDict(extra="forbid")

    state: list[TaskState] = Field(
        default_factory=list, max_length=len(TaskState), description="Any of these states."
    )
    task_type: TaskTypeName | None = None
    queue: QueueName | None = Field(default=None, description="Routed to this task queue.")
    executor: str | None = Field(
        default=None, max_length=200, description="Last attempt ran on this executor."
    )
    error: str | None = Field(
        default=None, min_length=1, max_length=200, description="Text in the error message."
    )
    submitted_after: AwareWireTime | None = Field(default=None, description="Strictly after.")
    submitted_before: AwareWireTime | None = Field(default=None, description="Strictly before.")

    def query(self, *, default_states: tuple[TaskState, ...] = (), limit: int) -> TaskQuery:
        """The store query these filters describe."""
        return TaskQuery(
            states=tuple(self.state) or default_states,
            task_type=self.task_type,
            queue=self.queue,
            executor=self.executor,
            error_text=self.error,
            submitted_after=self.submitted_after,
            submitted_before=self.submitted_before,
            limit=limit,
        )


class RetryFilter(TaskFilter):
    """Which tasks to retry: the states default to (and may only be) failed, dead, cancelled."""

    @model_validator(mode="after")
    def _retryable_states(self) -> Self:
        others = [state.value for state in self.state if state not in RETRYABLE]
        if others:
            raise ValueError(f"only failed, dead or cancelled tasks are retried, not {others}")
        return self


class RetryRequest(BaseModel):
    """Tasks to run again: by id, or every one matching a filter (count them with dry_run)."""

    model_config = ConfigDict(extra="forbid")

    task_ids: list[UUID] | None = Field(
        default=None, min_length=1, max_length=MAX_RETRY_BATCH, description="These tasks."
    )
    filter: RetryFilter | None = Field(
        default=None, description="Every failed, dead or cancelled task these filters match."
    )
    dry_run: bool = Field(default=False, description="With a filter: count, retry none.")
    limit: int = Field(
        default=MAX_RETRY_BATCH,
        ge=1,
        le=MAX_RETRY_BATCH,
        description="With a filter: retry at most this many, newest first; `more` says "
        "whether others match (send the same request again for the next ones).",
    )

    @model_validator(mode="after")
    def _ids_or_filter(self) -> Self:
        if (self.task_ids is None) == (self.filter is None):
            raise ValueError("give task_ids or a filter, not both or neither")
        return self


class RetryAnswer(BaseModel):
    """The tasks moved to their next attempt, and why each other one was not."""

    retried: list[UUID]
    refused: dict[UUID, str] = Field(
        description="Each task left alone, with why: its state, or that it is unknown."
    )
    matched: int | None = Field(
        default=None, description="With a filter: how many tasks it matched when asked."
    )
    more: bool = Field(
        default=False, description="With a filter: matching tasks were left for another call."
    )


@router.post(
    "/{task_id}/retry",
    status_code=202,
    response_model=TaskView,
    responses={404: {"model": ErrorDetail}, 409: {"model": ErrorDetail}},
)
async def retry_task(task_id: UUID, context: Context) -> object:
    """Run a failed, dead or cancelled task again as its next attempt: 202 with the task,
    submitted again (its attempt records the retry); 409 in any other state."""
    report = await context.dispatcher.retry([task_id], via="http")
    if task_id in report.refused:
        why = report.refused[task_id]
        status = 404 if why == "no such task" else 409
        return JSONResponse({"detail": f"{task_id}: {why}"}, status_code=status)
    return TaskView.of(await context.dispatcher.get(task_id))


@router.post("/retry", response_model=RetryAnswer)
async def retry_tasks(body: RetryRequest, context: Context) -> RetryAnswer:
    """Run tasks again: up to 1,000 by id (those not failed, dead or cancelled are refused),
    or the ones a filter matches, newest first, up to ``limit`` per call (``dry_run``: only
    count them)."""
    dispatcher = context.dispatcher
    if body.filter is None:
        assert body.task_ids is not None  # the validator's rule
        report = await dispatcher.retry(body.task_ids, via="http")
        return RetryAnswer(retried=report.retried, refused=report.refused)
    query = body.filter.query(default_states=RETRYABLE, limit=_PAGE)
    matched = await dispatcher.count_tasks(query)
    if body.dry_run or not matched:
        return RetryAnswer(retried=[], refused={}, matched=matched)
    ids = await _matching(dispatcher, query, body.limit)
    report = await dispatcher.retry(ids, via="http")
    return RetryAnswer(
        retried=report.retried, refused=report.refused, matched=matched, more=matched > len(ids)
    )


async def _matching(dispatcher: Dispatcher, query: TaskQuery, limit: int) -> list[UUID]:
    """The first ``limit`` tasks ``query`` matches, newest first, read a page at a time."""
    found: list[UUID] = []
    async with contextlib.aclosing(dispatcher.task_pages(query)) as pages:
        async for page in pages:
            found += [record.task_id for record in page]
            if len(found) >= limit:
                break
    return found[:limit]
