"""``/tasks/{id}/retry`` and ``/tasks/retry``: run failed, dead or cancelled tasks again."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from dispatcher.api.context import Context
from dispatcher.api.schemas import ErrorDetail, TaskView

router = APIRouter(prefix="/tasks", tags=["tasks"])

MAX_RETRY_BATCH = 1000


class RetryRequest(BaseModel):
    """Tasks to run again, by id."""

    task_ids: list[UUID] = Field(min_length=1, max_length=MAX_RETRY_BATCH)


class RetryAnswer(BaseModel):
    """The tasks moved to their next attempt, and why each other one was not."""

    retried: list[UUID]
    refused: dict[UUID, str] = Field(
        description="Each task left alone, with why: its state, or that it is unknown."
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
    """Run up to 1,000 tasks again by id; those not failed, dead or cancelled are refused."""
    report = await context.dispatcher.retry(body.task_ids, via="http")
    return RetryAnswer(retried=report.retried, refused=report.refused)
