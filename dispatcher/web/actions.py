"""The dashboard's actions (POST): sign in and out, retry and cancel tasks, replay and purge
dead letters, change schedules. Each one checks the form's CSRF token and the caller's role
(``rendering.checked_form``), acts through the same service objects as the JSON API, and
answers 303 back to the page with a note of what it did.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import FormData

from dispatcher.amqp.dead_letters import DeadLetterDesk
from dispatcher.api.auth import role_of_bearer
from dispatcher.api.context import ApiContext, Context
from dispatcher.api.errors import status_of
from dispatcher.api.retry import MAX_RETRY_BATCH
from dispatcher.api.schedules import create_from, edit_from
from dispatcher.api.schemas import ScheduleCreation, ScheduleEdit
from dispatcher.requests import Eta
from dispatcher.web.pages import BadFilter, bulk_query, instant, task_filter
from dispatcher.web.rendering import (
    NO_DESK,
    Refused,
    back,
    checked_form,
    first_error,
    render,
    set_session_cookie,
)
from dispatcher.web.sessions import COOKIE

router = APIRouter(include_in_schema=False)
_ETA: Final = TypeAdapter(Eta)


@asynccontextmanager
async def _refusing() -> AsyncIterator[None]:
    """Turn the service's refusals into ``Refused`` pages with the right status."""
    try:
        yield
    except Refused:
        raise
    except Exception as exc:
        status = status_of(exc)
        if status is None:
            raise
        raise Refused(status, str(exc)) from exc


def _desk(context: ApiContext) -> DeadLetterDesk:
    if context.dead is None:
        raise Refused(409, NO_DESK)
    return context.dead


def _text(form: FormData, name: str, *, limit: int = 10_000) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise Refused(400, f"{name}: expected text")
    if len(value) > limit:
        raise Refused(400, f"{name}: longer than {limit} characters")
    return value.strip()


def _ids(form: FormData) -> list[UUID]:
    raw = [v for v in form.getlist("task_id") if isinstance(v, str)]
    if not raw:
        raise Refused(400, "No task selected.")
    if len(raw) > MAX_RETRY_BATCH:
        raise Refused(400, f"At most {MAX_RETRY_BATCH} tasks at once.")
    try:
        return list(dict.fromkeys(UUID(v) for v in raw))
    except ValueError as exc:
        raise Refused(400, "task_id: not a task id") from exc


def _unconfirmed(
    request: Request, form: FormData, *, what: str, button: str, back_to: str
) -> Response | None:
    """The page that asks first, unless this form already says ``confirmed``."""
    if form.get("confirmed") == "1":
        return None
    fields = [
        (name, value)
        for name, value in form.multi_items()
        if name not in {"csrf", "confirmed"} and isinstance(value, str)
    ]
    return render(
        request,
        "confirm.html",
        title="Confirm",
        what=what,
        button=button,
        action=request.url.path,
        fields=fields,
        back=back_to,
    )


# -- signing in and out ---------------------------------------------------------------------


@router.post("/ui/login")
async def login(request: Request) -> Response:
    """Exchange the token (or the read-only token) for a session cookie."""
    settings = request.app.state
    if not settings.token_set:
        return back("/")
    form = await request.form(max_fields=5, max_files=0)
    token = form.get("token")
    given = f"Bearer {token}" if isinstance(token, str) and len(token) <= 1000 else None
    role = role_of_bearer(given, settings.token, settings.read_token)
    target = _text(form, "next", limit=500) or "/"
    if role is None:
        return render(request, "login.html", 401, title="Sign in", next=target, failed=True)
    value, _ = request.app.state.sessions.issue(role)
    response = back(target)
    set_session_cookie(request, response, value)
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    """End this browser's session."""
    await checked_form(request, act=False)
    response: RedirectResponse = back("/ui/login", done="signed_out")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# -- tasks --------------------------------------------------------------------------------


@router.post("/ui/tasks/{task_id}/retry")
async def retry_one(request: Request, task_id: UUID, context: Context) -> Response:
    """Run a failed, dead or cancelled task again."""
    await checked_form(request)
    async with _refusing():
        report = await context.dispatcher.retry([task_id], via="dashboard")
    if report.refused:
        raise Refused(409, report.refused[task_id])
    return back(f"/ui/tasks/{task_id}", done="retried", n=1)


@router.post("/ui/tasks/{task_id}/cancel")
async def cancel_one(request: Request, task_id: UUID, context: Context) -> Response:
    """Cancel a task that has not finished."""
    await checked_form(request)
    async with _refusing():
        await context.dispatcher.cancel(task_id, via="dashboard")
    return back(f"/ui/tasks/{task_id}", done="cancelled", n=1)


@router.post("/ui/tasks/{task_id}/replay")
async def replay_one(request: Request, task_id: UUID, context: Context) -> Response:
    """Replay a dead task from its copy in the dead-letter queue."""
    await checked_form(request)
    async with _refusing():
        report = await _desk(context).replay([task_id], via="dashboard")
    if not report.replayed:
        raise Refused(409, "; ".join(report.skipped) or "Not in the dead-letter queue.")
    return back(f"/ui/tasks/{task_id}", done="replayed", n=1)


@router.post("/ui/tasks/{task_id}/reschedule")
async def reschedule_one(request: Request, task_id: UUID, context: Context) -> Response:
    """Move a scheduled task to another time (the form's ``eta``, read as UTC)."""
    form = await checked_form(request)
    try:
        eta = _ETA.validate_python(instant(_text(form, "eta", limit=40)))
    except ValidationError as exc:
        raise Refused(422, first_error(exc.errors(), where="eta")) from exc
    async with _refusing():
        await context.dispatcher.reschedule(task_id, eta=eta)
    return back(f"/ui/tasks/{task_id}", done="rescheduled")


@router.post("/ui/tasks/selected")
async def act_on_selected(request: Request, context: Context) -> Response:
    """Retry or cancel the tasks ticked on a page of the list."""
    form = await checked_form(request)
    action = _text(form, "action")
    if action not in {"retry", "cancel"}:
        raise Refused(400, "action: retry or cancel")
    ids = _ids(form)
    to = "/ui/tasks?" + _text(form, "query", limit=2000)
    asked = _unconfirmed(
        request,
        form,
        what=f"{action.capitalize()} {len(ids)} selected task(s)?",
        button=f"{action.capitalize()} {len(ids)} task(s)",
        back_to=to,
    )
    if asked is not None:
        return asked
    async with _refusing():
        if action == "retry":
            report = await context.dispatcher.retry(ids, via="dashboard")
            if report.refused:
                return back(to, done="refused", n=len(report.refused))
            return back(to, done="retried", n=len(report.retried))
        if action == "cancel":
            for task_id in ids:
                await context.dispatcher.cancel(task_id, via="dashboard")
            return back(to, done="cancelled", n=len(ids))
    raise AssertionError(action)  # checked above


@router.post("/ui/tasks/retry")
async def retry_matching(request: Request, context: Context) -> Response:
    """Retry every failed, dead or cancelled task the filters match, a batch at a time."""
    return await _act_on_matching(request, context, "retry")


@router.post("/ui/tasks/cancel")
async def cancel_matching(request: Request, context: Context) -> Response:
    """Cancel every unfinished task the filters match."""
    return await _act_on_matching(request, context, "cancel")


async def _act_on_matching(request: Request, context: Context, action: str) -> Response:
    form = await checked_form(request)
    query_string = _text(form, "query", limit=2000)
    scope = {**request.scope, "query_string": query_string.encode()}
    try:
        query = bulk_query(task_filter(Request(scope)), action, limit=MAX_RETRY_BATCH)
    except BadFilter as exc:
        raise Refused(400, str(exc)) from exc
    done_with = {"retry": "retried", "cancel": "cancelled"}[action]
    if query is None:
        return back("/ui/tasks?" + query_string, done=done_with, n=0)
    dispatcher = context.dispatcher
    done = 0
    async with _refusing():
        # Bounded by the count: a task that keeps matching (a cancel that only flags a
        # running task) is not visited again and again.
        budget = await dispatcher.count_tasks(query)
        async with contextlib.aclosing(dispatcher.task_pages(query)) as pages:
            async for page in pages:
                if budget <= 0:
                    break
                ids = [record.task_id for record in page]
                if action == "retry":
                    done += len((await dispatcher.retry(ids, via="dashboard")).retried)
                else:
                    for task_id in ids:
                        await dispatcher.cancel(task_id, via="dashboard")
                    done += len(ids)
                budget -= len(page)
    return back("/ui/tasks?" + query_string, done=done_with, n=done)


# -- dead letters ---------------------------------------------------------------------------


@router.post("/ui/dead/replay")
async def replay_dead(request: Request, context: Context) -> Response:
    """Replay dead tasks: those ticked or shown (``task_id``), or every one (``all``)."""
    form = await checked_form(request)
    desk = _desk(context)
    ids = None if _text(form, "all") == "1" else _ids(form)
    if ids is None or len(ids) > 1:
        what = "every dead task" if ids is None else f"{len(ids)} dead tasks"
        asked = _unconfirmed(
            request, form, what=f"Replay {what}?", button="Replay", back_to="/ui/dead"
        )
        if asked is not None:
            return asked
    async with _refusing():
        report = await desk.replay(ids, via="dashboard")
    return back("/ui/dead", done="replayed", n=len(report.replayed))


@router.post("/ui/dead/purge")
async def purge_dead(request: Request, context: Context) -> Response:
    """Delete dead messages for good: those of ``task_id``, or every one (``all``)."""
    form = await checked_form(request)
    desk = _desk(context)
    ids = None if _text(form, "all") == "1" else _ids(form)
    what = "every dead message" if ids is None else f"the dead messages of {len(ids)} task(s)"
    asked = _unconfirmed(
        request,
        form,
        what=f"Delete {what}? This cannot be undone.",
        button="Purge",
        back_to="/ui/dead",
    )
    if asked is not None:
        return asked
    async with _refusing():
        purged = await desk.purge(ids)
    return back("/ui/dead", done="purged", n=purged)


# -- schedules ------------------------------------------------------------------------------


@router.post("/ui/schedules")
async def create_schedule(request: Request, context: Context) -> Response:
    """Create a schedule from the form."""
    form = await checked_form(request)
    try:
        body = ScheduleCreation.model_validate(
            {
                "name": _text(form, "name", limit=200),
                "cron": _text(form, "cron", limit=200),
                "timezone": _text(form, "timezone", limit=100) or "UTC",
                "task_type": _text(form, "task_type", limit=200),
                "params": _params(form),
                "priority": _number(form, "priority"),
                "queue": _text(form, "queue", limit=200) or "default",
                "paused": form.get("paused") == "1",
            }
        )
    except ValidationError as exc:
        raise Refused(422, first_error(exc.errors())) from exc
    async with _refusing():
        await create_from(context.schedules, body)
    return back("/ui/schedules", done="saved")


@router.post("/ui/schedules/{name}/edit")
async def edit_schedule(request: Request, name: str, context: Context) -> Response:
    """Change a schedule's cron, time zone, params and priority."""
    form = await checked_form(request)
    try:
        edit = ScheduleEdit.model_validate(
            {
                "cron": _text(form, "cron", limit=200) or None,
                "timezone": _text(form, "timezone", limit=100) or None,
                "params": _params(form),
                "priority": _number(form, "priority"),
            }
        )
    except ValidationError as exc:
        raise Refused(422, first_error(exc.errors())) from exc
    async with _refusing():
        await edit_from(context.schedules, name, edit)
    return back("/ui/schedules", done="saved")


@router.post("/ui/schedules/{name}/{action}")
async def schedule_action(request: Request, name: str, action: str, context: Context) -> Response:
    """Pause, resume, fire now or delete a schedule."""
    await checked_form(request)
    book = context.schedules
    async with _refusing():
        if action == "pause":
            await book.pause(name)
            return back("/ui/schedules", done="paused")
        if action == "resume":
            await book.resume(name)
            return back("/ui/schedules", done="resumed")
        if action == "run":
            await book.run_now(name)
            return back("/ui/schedules", done="fired")
        if action == "delete":
            await book.delete(name)
            return back("/ui/schedules", done="deleted")
    raise Refused(404, f"no schedule action {action!r}")


def _params(form: FormData) -> object:
    text = _text(form, "params", limit=64 * 1024) or "{}"
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Refused(422, f"params: not JSON ({exc})") from exc


def _number(form: FormData, name: str) -> int:
    text = _text(form, name, limit=10) or "0"
    try:
        return int(text)
    except ValueError as exc:
        raise Refused(422, f"{name}: not a whole number") from exc
