"""How the project's errors become HTTP answers: 404, 409, 422 and 503, each with a detail."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from common import (
    BrokerError,
    InvalidParams,
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskNotFound,
    UnknownTaskType,
)
from common.logging import get_logger

log = get_logger(__name__)

Location = Sequence[str | int]


def task_refusal(exc: UnknownTaskType | InvalidParams, at: Location) -> RequestValidationError:
    """A 422 in pydantic's shape for a task the registry refused; ``at`` locates the task."""
    if isinstance(exc, UnknownTaskType):
        return RequestValidationError(
            [{"loc": [*at, "task_type"], "msg": str(exc), "type": "unknown_task_type"}]
        )
    return RequestValidationError(
        [
            {"loc": [*at, "params", *_as_location(error.get("loc"))], **_rest(error)}
            for error in exc.errors
        ]
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; everything else is a bug for the request log's last resort."""
    app.add_exception_handler(TaskNotFound, _not_found)
    # Both are StoreErrors, but say nothing about the store's health: the most specific
    # handler wins (Starlette looks the exception's classes up in MRO order).
    app.add_exception_handler(ScheduleNotFound, _not_found)
    app.add_exception_handler(ScheduleExists, _conflict)
    app.add_exception_handler(InvalidSchedule, _bad_schedule)
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_exception_handler(BrokerError, _broker_unavailable)
    app.add_exception_handler(UnknownTaskType, _refused)
    app.add_exception_handler(InvalidParams, _refused)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def _bad_schedule(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidSchedule)
    error = {"loc": ["body", exc.field], "msg": str(exc), "type": "invalid_schedule"}
    return JSONResponse({"detail": [error]}, status_code=422)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("http_store_unavailable", error=str(exc))
    return JSONResponse({"detail": f"task store unavailable: {exc}"}, status_code=503)


async def _broker_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("http_broker_unavailable", error=str(exc))
    return JSONResponse({"detail": f"broker unavailable: {exc}"}, status_code=503)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    # Routes validate with the task's location first; this catches what slipped past.
    assert isinstance(exc, UnknownTaskType | InvalidParams)
    return JSONResponse({"detail": task_refusal(exc, ["body"]).errors()}, status_code=422)


def _as_location(loc: object) -> list[str | int]:
    if isinstance(loc, list | tuple):
        return [part if isinstance(part, int) else str(part) for part in loc]
    return []


def _rest(error: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in error.items() if key != "loc"}
