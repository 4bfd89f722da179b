"""The API's edge: one access line per request, and the last resort for unhandled errors."""

from __future__ import annotations

import time

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging import get_logger

log = get_logger(__name__)


class RequestLog:
    """ASGI middleware: logs ``http_request`` with method, path, status and duration.

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
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                log.info("http_request", **request, status=status, duration_ms=duration_ms)
