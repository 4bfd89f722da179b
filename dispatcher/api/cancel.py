"""``/tasks/{id}/cancel``: a task not started never runs, a running one is told to stop."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from structlog.contextvars import bound_contextvars

from common import BrokerError
from common.logging import get_logger
from dispatcher.api.context import Context
from dispatcher.api.schemas import CancelAnswer, CancelNotPublished, ErrorDetail, TaskView
from dispatcher.requests import CancelOutcome

log = get_logger(__name__)

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.post(
    "/{task_id}/cancel",
    status_code=202,
    response_model=CancelAnswer,
    responses={
        200: {"model": CancelAnswer, "description": "Cancelled outright, or already final."},
        404: {"model": ErrorDetail},
        503: {"model": CancelNotPublished, "description": "Recorded; executors not told."},
    },
)
async def cancel_task(task_id: UUID, context: Context, response: Response) -> object:
    """Cancel a task: 202 ``requested`` when executors were told (it never starts, and a
    running handler is asked to stop); 200 ``cancelled`` for a task not published yet;
    200 ``already_final`` when it had an outcome."""
    try:
        report = await context.dispatcher.cancel(task_id, via="http")
    except BrokerError as exc:
        # The flag is recorded before the notice is published: an executor still checks it
        # before starting the task, and asking again publishes the notice again.
        with bound_contextvars(task_id=str(task_id)):
            log.warning("task_cancel_not_published", error=str(exc))
        body = CancelNotPublished(
            detail=f"the cancel is recorded, but executors were not told ({exc}); "
            "retrying the request is safe",
            task=TaskView.of(await context.dispatcher.get(task_id)),
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    response.status_code = 202 if report.outcome is CancelOutcome.REQUESTED else 200
    return CancelAnswer(outcome=report.outcome, task=TaskView.of(report.record))
