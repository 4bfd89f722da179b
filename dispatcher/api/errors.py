"""How the project's errors become HTTP answers: 404, 405, 409, 422 and 503, with a detail.

A 422 repeats the offending input only when it is JSON a strict parser reads back (no NaN, no
infinity) and short; otherwise it says what the input was, so the answer itself never fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from common import (
    BrokerError,
    InvalidParams,
    InvalidRequest,
    InvalidSchedule,
    ScheduleConflict,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskNotFound,
    TaskNotScheduled,
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


# The status each refusal of the service answers with, most specific first (the dashboard
# looks its errors up here; the JSON API registers a handler per line below, to the same
# statuses).
ERROR_STATUS: Final[tuple[tuple[type[Exception], int], ...]] = (
    (TaskNotFound, 404),
    (ScheduleNotFound, 404),
    (ScheduleExists, 409),
    (ScheduleConflict, 409),
    (TaskNotScheduled, 409),
    (InvalidSchedule, 422),
    (UnknownTaskType, 422),
    (InvalidParams, 422),
    (InvalidRequest, 422),
    (StoreError, 503),
    (BrokerError, 503),
)


def status_of(exc: Exception) -> int | None:
    """The HTTP status the API answers ``exc`` with; None for a bug."""
    return next((status for kind, status in ERROR_STATUS if isinstance(exc, kind)), None)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; everything else is a bug for the request log's last resort."""
    app.add_exception_handler(TaskNotFound, _not_found)
    # Both are StoreErrors, but say nothing about the store's health: the most specific
    # handler wins (Starlette looks the exception's classes up in MRO order).
    app.add_exception_handler(ScheduleNotFound, _not_found)
    app.add_exception_handler(ScheduleExists, _conflict)
    app.add_exception_handler(ScheduleConflict, _conflict)
    app.add_exception_handler(TaskNotScheduled, _conflict)
    app.add_exception_handler(InvalidSchedule, _bad_schedule)
    app.add_exception_handler(StoreError, _store_unavailable)
    app.add_exception_handler(BrokerError, _broker_unavailable)
    app.add_exception_handler(UnknownTaskType, _refused)
    app.add_exception_handler(InvalidParams, _refused)
    app.add_exception_handler(InvalidRequest, _invalid_request)
    app.add_exception_handler(RequestValidationError, _unprocessable)
    app.add_exception_handler(StarletteHTTPException, _http_error)


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
    # Routes validate with a local task module first; the executors' published schemas are
    # checked by the service, which says which request of a batch it refused.
    assert isinstance(exc, UnknownTaskType | InvalidParams)
    index = exc.index if request.url.path.endswith("/batch") else None
    at: list[str | int] = ["body", "tasks", index] if index is not None else ["body"]
    return JSONResponse({"detail": task_refusal(exc, at).errors()}, status_code=422)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidRequest)
    error = {"loc": ["body", exc.field], "msg": str(exc), "type": "invalid_request"}
    return JSONResponse({"detail": [error]}, status_code=422)


async def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_json_safe(e) for e in exc.errors()]}, status_code=422)


# Longest input a 422 repeats back (serialised); a longer one is described, not echoed.
_MAX_ECHO = 500


def _json_safe(error: Mapping[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in error.items():
        if key == "input":
            value = _echo(value)
        elif key == "ctx" and isinstance(value, Mapping):
            value = {k: v if _is_json(v) else str(v) for k, v in value.items()}
        elif not _is_json(value):
            value = str(value)
        safe[key] = value
    return safe


def _echo(value: object) -> object:
    text = _strict_json(value)
    if text is None:
        return f"<{type(value).__name__} that is not JSON>"
    return (
        value if len(text) <= _MAX_ECHO else f"<{type(value).__name__} of {len(text)} characters>"
    )


def _is_json(value: object) -> bool:
    return _strict_json(value) is not None


def _strict_json(value: object) -> str | None:
    """``value`` as JSON a strict parser reads back (no NaN, no infinity), or None."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors; a 405 (and OPTIONS) lists every method the path allows."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code != 405:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    allowed = ", ".join(sorted(_methods_for(request)))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allowed})
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allowed}
    )


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def _methods_for(request: Request) -> set[str]:
    """Every method some route takes at the request's path (OPTIONS always)."""
    methods = {"OPTIONS"}
    # A mounted app (the static files) moved its prefix into root_path; the app's routes
    # match against the path as the app itself saw it.
    root_path = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    scope = {**request.scope, "root_path": root_path}
    for route in request.app.router.routes:
        if isinstance(route, Mount):
            # A mount matches every method: its app may say which it serves (``methods``).
            if route.matches(scope)[0] is Match.FULL:
                methods |= set(getattr(route.app, "methods", _METHODS))
            continue
        methods |= {m for m in _METHODS if route.matches({**scope, "method": m})[0] is Match.FULL}
    return methods


def _as_location(loc: object) -> list[str | int]:
    if isinstance(loc, list | tuple):
        return [part if isinstance(part, int) else str(part) for part in loc]
    return []


def _rest(error: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in error.items() if key != "loc"}
