"""``/schedules``: create, list, show, edit, run now, pause, resume and delete cron schedules.

Validation is the schedule book's (``dispatcher.schedules``); its errors become 422 (bad
name, cron, zone or task), 404 (no such name) and 409 (name taken) in ``errors.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from dispatcher.api.context import Context
from dispatcher.api.schemas import (
    ErrorDetail,
    ScheduleCreation,
    ScheduleEdit,
    ScheduleList,
    ScheduleRun,
)
from dispatcher.schedules import ScheduleBook
from dispatcher.store.records import ScheduleRecord

router = APIRouter(prefix="/schedules", tags=["schedules"])

_NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorDetail}}


@router.get("")
async def list_schedules(context: Context) -> ScheduleList:
    """Every schedule, by name, with its next fire time and last task."""
    return ScheduleList(schedules=await context.schedules.all())


@router.post("", status_code=201, responses={409: {"model": ErrorDetail}})
async def create_schedule(body: ScheduleCreation, context: Context) -> ScheduleRecord:
    """Create a schedule that first fires at its first fire time after now; 409 when the
    name is taken, 422 for a bad name, cron expression, time zone, task type or params."""
    return await create_from(context.schedules, body)


@router.patch("/{name}", responses={**_NOT_FOUND, 409: {"model": ErrorDetail}})
async def update_schedule(name: str, body: ScheduleEdit, context: Context) -> ScheduleRecord:
    """Edit a schedule: each field given replaces its value, validated as at creation. A new
    cron or time zone, or a resume, moves the next fire time to the first after now; 409 when
    another edit landed meanwhile (read it again)."""
    return await edit_from(context.schedules, name, body)


@router.post("/{name}/run", status_code=202, responses=_NOT_FOUND)
async def run_schedule(name: str, context: Context) -> ScheduleRun:
    """Fire the schedule once now: its task is recorded as due now and published at the
    scheduler's next pass; its cron fire times are not moved."""
    return ScheduleRun(task_id=await context.schedules.run_now(name))


@router.get("/{name}", responses=_NOT_FOUND)
async def get_schedule(name: str, context: Context) -> ScheduleRecord:
    """One schedule."""
    return await context.schedules.get(name)


@router.post("/{name}/pause", responses=_NOT_FOUND)
async def pause_schedule(name: str, context: Context) -> ScheduleRecord:
    """Stop firing until resumed."""
    return await context.schedules.pause(name)


@router.post("/{name}/resume", responses=_NOT_FOUND)
async def resume_schedule(name: str, context: Context) -> ScheduleRecord:
    """Fire again from the next fire time after now; the paused time is not made up."""
    return await context.schedules.resume(name)


@router.delete("/{name}", status_code=204, response_class=Response, responses=_NOT_FOUND)
async def delete_schedule(name: str, context: Context) -> None:
    """Delete the schedule; the tasks it submitted are kept."""
    await context.schedules.delete(name)


async def create_from(book: ScheduleBook, body: ScheduleCreation) -> ScheduleRecord:
    """Create the schedule ``body`` describes (the API's and the dashboard's form)."""
    return await book.create(
        body.name,
        body.cron,
        body.task_type,
        body.params,
        timezone=body.timezone,
        priority=body.priority,
        paused=body.paused,
        queue=body.queue,
    )


async def edit_from(book: ScheduleBook, name: str, body: ScheduleEdit) -> ScheduleRecord:
    """Apply the fields ``body`` gives to schedule ``name``."""
    return await book.update(
        name,
        cron=body.cron,
        timezone=body.timezone,
        params=body.params,
        priority=body.priority,
        queue=body.queue,
        paused=body.paused,
    )
