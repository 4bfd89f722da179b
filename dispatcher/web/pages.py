"""The dashboard's pages (GET): overview, tasks, one task, dead letters, executors, queues,
schedules, and the login form. Actions are in ``actions``.

Query strings are hostile like any input: filters are validated by the API's own
``TaskFilter`` and a bad one is answered with a 400 page that says which field and why.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from common import BrokerError, TaskNotFound, WorkQueueError
from dispatcher.amqp.queue_depths import QueueDepth
from dispatcher.api.context import Context
from dispatcher.api.retry import RETRYABLE, TaskFilter
from dispatcher.store.query import TaskPosition, TaskQuery, decode_cursor, encode_cursor
from dispatcher.store.records import ExecutorState, TaskState
from dispatcher.web import charts
from dispatcher.web.rendering import NO_DESK, first_error, fragment, render

router = APIRouter(include_in_schema=False)

PAGE: Final = 50
DEAD_LISTED: Final = 500  # the dead-letter page reads at most this many messages
FILTER_FIELDS: Final = ("task_type", "queue", "executor", "error", "since", "until")


class BadFilter(Exception):
    """Query-string filters that do not parse: the field and why."""


def task_filter(request: Request) -> TaskFilter:
    """The tasks page's filters, from its query string (``since``/``until`` as instants)."""
    params = request.query_params
    raw: dict[str, object] = {"state": [s for s in params.getlist("state") if s]}
    for name in ("task_type", "queue", "executor", "error"):
        if params.get(name):
            raw[name] = params[name]
    for name, field in (("since", "submitted_after"), ("until", "submitted_before")):
        if params.get(name):
            raw[field] = instant(params[name])
    try:
        return TaskFilter.model_validate(raw)
    except ValidationError as exc:
        raise BadFilter(first_error(exc.errors(), where="filter")) from exc


def instant(text: str) -> str:
    """A form's ``datetime-local`` value (no zone) is read as UTC; an ISO instant as is."""
    if len(text) <= 19 and "T" in text and "+" not in text and not text.endswith("Z"):
        return text + "+00:00"
    return text


def filter_query_string(request: Request) -> str:
    """The filters of this request, to carry into links (cursor and notes left out)."""
    keep = [(k, v) for k, v in request.query_params.multi_items() if k in {"state", *FILTER_FIELDS}]
    return urlencode(keep)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, context: Context) -> Response:
    """Counts by state, the last hour's outcomes, executors and queues at a glance."""
    dispatcher = context.dispatcher
    counts = {
        state: await dispatcher.count_tasks(TaskQuery(states=(state,))) for state in TaskState
    }
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    recent = {
        span: {
            state: await dispatcher.count_tasks(TaskQuery(states=(state,), submitted_after=since))
            for state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD)
        }
        for span, since in (("hour", hour_ago), ("day", day_ago))
    }
    executors = await dispatcher.fleet.executors()
    by_state = {state: sum(1 for e in executors if e.state is state) for state in ExecutorState}
    queues, broker_error = await _queues(context)
    return render(
        request,
        "overview.html",
        title="Overview",
        counts=counts,
        recent=recent,
        executors=by_state,
        queues=queues,
        broker_error=broker_error,
    )


@router.get("/ui/activity", response_class=HTMLResponse)
async def activity(context: Context) -> Response:
    """The overview's charts: what finished in the last hour and day (loaded after the page)."""
    now = datetime.now(UTC)
    store = context.dispatcher.store
    spans = []
    for label, bucket, count in charts.SPANS:
        start = _floor(now, bucket) - (count - 1) * bucket
        buckets = await store.activity(start, bucket, count)
        spans.append(
            {
                "label": label,
                "throughput": charts.throughput(f"Finished per {_width(bucket)}", buckets),
                "durations": charts.durations("Run time, p50 and p95", buckets),
                "buckets": buckets,
            }
        )
    return fragment("_activity.html", spans=spans, height=charts.HEIGHT, bar=charts.BAR)


def _floor(instant: datetime, bucket: timedelta) -> datetime:
    step = bucket.total_seconds()
    return datetime.fromtimestamp(instant.timestamp() // step * step, UTC)


def _width(bucket: timedelta) -> str:
    minutes = int(bucket.total_seconds() // 60)
    return f"{minutes} minutes" if minutes < 60 else f"{minutes // 60} hour"


@router.get("/ui/tasks", response_class=HTMLResponse)
async def tasks(
    request: Request,
    context: Context,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Tasks newest first, filtered, 50 to a page; rows can be selected for an action."""
    try:
        filters = task_filter(request)
        after = decode_cursor(cursor) if cursor else None
    except (BadFilter, ValueError) as exc:
        return render(request, "error.html", 400, title="Bad filter", why=str(exc))
    query = filters.query(limit=PAGE + 1)
    if after is not None:
        query = dataclasses.replace(query, after=after)
    records = await context.dispatcher.list_tasks(query)
    page, more = records[:PAGE], len(records) > PAGE
    return render(
        request,
        "tasks.html",
        title="Tasks",
        tasks=page,
        filters=filters,
        states=list(TaskState),
        query_string=filter_query_string(request),
        next_cursor=encode_cursor(TaskPosition.of(page[-1])) if more else None,
        first_page=cursor is None,
        since=request.query_params.get("since", ""),
        until=request.query_params.get("until", ""),
    )


# What a bulk action may touch: the states it applies to.
BULK_STATES: Final = {
    "retry": RETRYABLE,
    "cancel": tuple(state for state in TaskState if not state.is_final),
}


def bulk_query(filters: TaskFilter, action: str, *, limit: int) -> TaskQuery | None:
    """The query of the tasks ``action`` would touch among those ``filters`` match; None
    when the filters' states leave none it applies to."""
    allowed = BULK_STATES[action]
    states = tuple(s for s in filters.state if s in allowed) if filters.state else allowed
    if not states:
        return None
    return dataclasses.replace(filters.query(limit=limit), states=states)


async def _confirm_matching(request: Request, context: Context, action: str) -> Response:
    try:
        filters = task_filter(request)
    except BadFilter as exc:
        return render(request, "error.html", 400, title="Bad filter", why=str(exc))
    query = bulk_query(filters, action, limit=1)
    matched = await context.dispatcher.count_tasks(query) if query is not None else 0
    return render(
        request,
        "confirm_matching.html",
        title=f"{action.capitalize()} matching tasks",
        action=action,
        matched=matched,
        states=[s.value for s in (query.states if query is not None else ())],
        query_string=filter_query_string(request),
    )


@router.get("/ui/tasks/retry", response_class=HTMLResponse)
async def confirm_retry_matching(request: Request, context: Context) -> Response:
    """How many tasks a retry by these filters would touch: confirm before it runs."""
    return await _confirm_matching(request, context, "retry")


@router.get("/ui/tasks/cancel", response_class=HTMLResponse)
async def confirm_cancel_matching(request: Request, context: Context) -> Response:
    """How many unfinished tasks a cancel by these filters would touch: confirm first."""
    return await _confirm_matching(request, context, "cancel")


@router.get("/ui/tasks/{task_id}", response_class=HTMLResponse)
async def task(request: Request, task_id: UUID, context: Context) -> Response:
    """One task: state, params, result, progress, every attempt with its error."""
    try:
        record = await context.dispatcher.get(task_id)
    except TaskNotFound:
        return render(request, "error.html", 404, title="No such task", why=f"No task {task_id}.")
    attempts = await context.dispatcher.attempts(task_id)
    return render(
        request,
        "task.html",
        title=f"Task {task_id}",
        task=record,
        attempts=attempts,
        retryable=record.state in RETRYABLE,
    )


@router.get("/ui/tasks/{task_id}/live", response_class=HTMLResponse)
async def task_live(task_id: UUID, context: Context) -> Response:
    """The part of the task page that changes while it runs (polled until it is final)."""
    try:
        record = await context.dispatcher.get(task_id)
    except TaskNotFound:
        return HTMLResponse("", status_code=404)
    return fragment("_task_live.html", task=record)


@router.get("/ui/dead", response_class=HTMLResponse)
async def dead(
    request: Request,
    context: Context,
    task_type: Annotated[str, Query(max_length=200)] = "",
    reason: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """The dead-letter queue, oldest first, filtered by task type and reason."""
    letters, error = [], None
    if context.dead is None:
        error = NO_DESK
    else:
        try:
            letters = await context.dead.list(limit=DEAD_LISTED)
        except WorkQueueError as exc:
            error = str(exc)
    total = len(letters)
    if task_type:
        letters = [d for d in letters if d.task_type == task_type]
    if reason:
        letters = [d for d in letters if reason.lower() in d.reason.lower()]
    return render(
        request,
        "dead.html",
        title="Dead letters",
        letters=letters,
        total=total,
        listed_max=DEAD_LISTED,
        filtered=bool(task_type or reason),
        task_type=task_type,
        reason=reason,
        error=error,
    )


@router.get("/ui/executors", response_class=HTMLResponse)
async def executors(request: Request, context: Context) -> Response:
    """Every executor recorded: live ones first, with what each runs now."""
    found = await context.dispatcher.fleet.executors()
    order = {ExecutorState.RUNNING: 0, ExecutorState.LOST: 1, ExecutorState.STOPPED: 2}
    found.sort(key=lambda e: (order.get(e.state, 3), e.executor_id))
    return render(request, "executors.html", title="Executors", executors=found)


@router.get("/ui/queues", response_class=HTMLResponse)
async def queues(request: Request, context: Context) -> Response:
    """The deployment's queues: ready messages and consumers, and with the management API
    configured, unacked messages and publish and deliver rates."""
    found, error = await _queues(context)
    stats = None
    if context.management is not None and found:
        stats = await context.management.queues(q.name for q in found)
    return render(
        request,
        "queues.html",
        title="Queues",
        queues=found,
        broker_error=error,
        stats=stats,
        management=context.management is not None,
    )


async def _queues(context: Context) -> tuple[list[QueueDepth], str | None]:
    try:
        queues = await context.dispatcher.fleet.task_queues()
        return list(await context.broker.queue_depths(queues)), None
    except BrokerError as exc:
        return [], str(exc)


@router.get("/ui/schedules", response_class=HTMLResponse)
async def schedules(request: Request, context: Context) -> Response:
    """Cron schedules with their next fire time, and the forms to change them."""
    found = await context.schedules.all()
    return render(request, "schedules.html", title="Schedules", schedules=found)


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    next: Annotated[str, Query(max_length=500)] = "/",
) -> Response:
    """The form that exchanges a token for a session."""
    return render(request, "login.html", title="Sign in", next=next, failed=False)
