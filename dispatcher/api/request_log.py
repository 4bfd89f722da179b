"""The API's edge: one access line per request, and the last resort for unhandled errors."""

from __future__ import annotations

import re
import time
from contextvars import ContextVar
from uuid import UUID

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import get_logger

log = get_logger(__name__)

# A path about one task: its id goes on the request's lines, so one jq filter finds its story.
_TASK_PATH = re.compile(r"^/tasks/([0-9a-fA-F-]{36})(?:/|$)")
# The task a request created (POST /tasks), noted by the route for the access line. A dict
# shared by reference: it reaches the middleware even from a copied context.
_NOTED: ContextVar[dict[str, str] | None] = ContextVar("wq_request_task", default=None)


def note_task(task_id: UUID) -> None:
    """Name the one task this request is about on its ``http_request`` line."""
    noted = _NOTED.get()
    if noted is not None:
        noted["task_id"] = str(task_id)


class RequestLog:
    """ASGI middleware: logs ``http_request`` with method, path, status and duration.

    A request about one task (``/tasks/{id}...``, or a ``POST /tasks`` that made one) also
    carries ``task_id``, bound for every line logged while it is answered.

    It wraps every other layer, so refused (401) and failed (500) requests are logged too.
    Neither headers nor bodies nor the query string are logged: they may carry secrets.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None  # stays None when no response went out (cancelled)
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        request = {"method": scope["method"], "path": scope["path"]}
        about = _TASK_PATH.match(scope["path"])
        if about is not None:
            request["task_id"] = about.group(1).lower()
        noted: dict[str, str] = {}
        token = _NOTED.set(noted)
        structlog.contextvars.clear_contextvars()
        with structlog.contextvars.bound_contextvars(**request):
            try:
                await self.app(scope, receive, send_and_note)
            except Exception:
                # The one place the API catches everything: a bug, logged once here.
                log.exception("http_request_failed")
                if status is None:
                    response = JSONResponse({"detail": "internal error"}, status_code=500)
                    await response(scope, receive, send_and_note)
            finally:
                _NOTED.reset(token)
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                line = request | noted
                log.info("http_request", **line, status=status, duration_ms=duration_ms)
