"""``/tasks``: submit one or a batch, read one, list and filter, wait for an outcome."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from common import AwareWireTime, InvalidParams, TaskRegistry, UnknownTaskType
from dispatcher.api.context import ApiContext, Context
from dispatcher.api.errors import task_refusal
from dispatcher.api.request_log import note_task
from dispatcher.api.schemas import (
    DEFAULT_PAGE,
    MAX_PAGE,
    MAX_WAIT_S,
    BatchSubmission,
    ErrorDetail,
    NotQueued,
    Reschedule,
    SubmittedBatch,
    SubmittedTask,
    TaskDetail,
    TaskPage,
    TaskSubmission,
    TaskView,
)
from dispatcher.requests import QueueName, TaskRequest
from dispatcher.store.query import TaskPosition, TaskQuery, decode_cursor, encode_cursor
from dispatcher.store.records import TaskState

router = APIRouter(prefix="/tasks", tags=["tasks"])

_SUBMIT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "Every idempotency key was already used: the earlier tasks."},
    503: {"model": NotQueued, "description": "Recorded, but the broker did not confirm."},
}


@router.post("", status_code=201, responses=_SUBMIT_RESPONSES, response_model=SubmittedTask)
async def submit_task(body: TaskSubmission, context: Context, response: Response) -> object:
    """Record and publish one task: 201 when new, 200 with the earlier task for a used key.

    A task with a future ``eta`` or a ``countdown`` is recorded as ``scheduled`` (201) and
    published when it is due.
    """
    _validate(context.registry, [body], at=lambda _: ["body"])
    (submitted,), failure = await _submit(context, [body])
    note_task(submitted.task_id)
    if failure is not None:
        return _not_queued(failure, [submitted])
    response.status_code = 201 if submitted.created else 200
    return submitted


@router.post("/batch", status_code=201, responses=_SUBMIT_RESPONSES, response_model=SubmittedBatch)
async def submit_batch(body: BatchSubmission, context: Context, response: Response) -> object:
    """Record all tasks, then publish them with pipelined confirms (201 if any is new)."""
    _validate(context.registry, body.tasks, at=lambda n: ["body", "tasks", n])
    submitted, failure = await _submit(context, body.tasks)
    if failure is not None:
        return _not_queued(failure, submitted)
    response.status_code = 201 if any(task.created for task in submitted) else 200
    return SubmittedBatch(tasks=submitted)


_BATCH_METHODS = "OPTIONS, POST"


@router.api_route(
    "/batch", methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
)
async def batch_is_post_only(request: Request) -> Response:
    """``/tasks/batch`` takes POST only; without this, GET would read it as a task id."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": _BATCH_METHODS})
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": _BATCH_METHODS}
    )


@router.get("", response_model=TaskPage)
async def list_tasks(
    context: Context,
    state: Annotated[list[TaskState], Query(description="Any of these states.")] = [],  # noqa: B006
    task_type: str | None = None,
    queue: Annotated[QueueName | None, Query(description="Routed to this task queue.")] = None,
    executor: Annotated[
        str | None, Query(max_length=200, description="Last attempt ran on this executor.")
    ] = None,
    error: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Text in the error message (any case)."),
    ] = None,
    submitted_after: Annotated[AwareWireTime | None, Query(description="Strictly after.")] = None,
    submitted_before: Annotated[AwareWireTime | None, Query(description="Strictly before.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> TaskPage:
    """Tasks newest first, filtered; pages stay stable while new tasks arrive."""
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error"}]
        ) from exc
    query = TaskQuery(
        states=tuple(state),
        task_type=task_type,
        queue=queue,
        executor=executor,
        error_text=error,
        submitted_after=submitted_after,
        submitted_before=submitted_before,
        after=after,
        limit=limit + 1,  # one more than asked: whether another page exists
    )
    records = await context.dispatcher.list_tasks(query)
    page = records[:limit]
    more = len(records) > limit
    return TaskPage(
        tasks=[TaskView.of(record) for record in page],
        next_cursor=encode_cursor(TaskPosition.of(page[-1])) if more else None,
    )


@router.get("/{task_id}", responses={404: {"model": ErrorDetail}})
async def get_task(task_id: UUID, context: Context) -> TaskDetail:
    """A task's state, timestamps, executor, its result or error, and every attempt."""
    dispatcher = context.dispatcher
    record = await dispatcher.get(task_id)
    return TaskDetail.with_attempts(record, await dispatcher.attempts(task_id))


@router.patch(
    "/{task_id}",
    responses={404: {"model": ErrorDetail}, 409: {"model": ErrorDetail}},
)
async def reschedule_task(task_id: UUID, body: Reschedule, context: Context) -> TaskView:
    """Move a delayed task to another time while it is ``scheduled`` (``eta`` or
    ``countdown``; a time not in the future makes it due now); 409 once it was published."""
    record = await context.dispatcher.reschedule(task_id, eta=body.eta, countdown=body.countdown)
    return TaskView.of(record)


@router.get(
    "/{task_id}/result",
    responses={
        202: {"model": TaskView, "description": "No outcome yet: the task as it stands."},
        404: {"model": ErrorDetail},
    },
)
async def wait_for_result(
    task_id: UUID,
    context: Context,
    response: Response,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for an outcome.")
    ] = 0,
) -> TaskView:
    """200 with the task once it has an outcome (succeeded, failed, dead or cancelled); 202
    with it as it stands after ``wait`` seconds."""
    record = await context.dispatcher.get(task_id)
    if not record.state.is_final and wait > 0:
        try:
            record = await context.dispatcher.wait(task_id, timeout=wait)
        except TimeoutError:
            record = await context.dispatcher.get(task_id)
    response.status_code = 200 if record.state.is_final else 202
    return TaskView.of(record)


def _validate(
    registry: TaskRegistry | None,
    tasks: Sequence[TaskSubmission],
    *,
    at: Callable[[int], list[str | int]],
) -> None:
    """Refuse unknown types and invalid params (422) before anything is recorded."""
    if registry is None:
        return
    for n, task in enumerate(tasks):
        try:
            registry.get(task.task_type).validate(task.params)
        except (UnknownTaskType, InvalidParams) as exc:
            raise task_refusal(exc, at(n)) from exc


async def _submit(
    context: ApiContext, tasks: Sequence[TaskSubmission]
) -> tuple[list[SubmittedTask], Exception | None]:
    requests = [
        TaskRequest(
            t.task_type,
            t.params,
            idempotency_key=t.idempotency_key,
            priority=t.priority,
            eta=t.eta,
            countdown=t.countdown,
            queue=t.queue,
        )
        for t in tasks
    ]
    submission = await context.dispatcher.submit_all(requests)
    records = await context.dispatcher.get_many(submission.task_ids)
    states = {record.task_id: record.state for record in records}
    submitted = [
        SubmittedTask(task_id=i, state=states.get(i, TaskState.SUBMITTED), created=new)
        for i, new in zip(submission.task_ids, submission.created, strict=True)
    ]
    return submitted, submission.failure


def _not_queued(failure: Exception, tasks: list[SubmittedTask]) -> JSONResponse:
    body = NotQueued(
        detail=f"recorded, but not confirmed by the broker ({failure}); the tasks still "
        "submitted are published again by the outbox",
        tasks=tasks,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=503)
