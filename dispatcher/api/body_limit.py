"""The request body cap: 413 before a body larger than the limit is read into memory.

A declared ``Content-Length`` over the limit is refused before any of the body is read; a
chunked body is counted as it arrives and refused once it passes the limit, so no request can
make the dispatcher hold more than the limit of it (plus one chunk).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware: ``413 Content Too Large`` for a request body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            length = int(declared) if declared.isdigit() else None
            if length is None or length > self._max:
                status = 400 if length is None else 413
                response = JSONResponse({"detail": self._explain(length)}, status_code=status)
                await response(scope, receive, send)
                return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    # Raised into the endpoint's read: the app's own handler answers 413.
                    raise HTTPException(413, detail=self._explain(received))
            return message

        await self.app(scope, counted, send)

    def _explain(self, length: int | None) -> str:
        if length is None:
            return "Content-Length is not a number of bytes"
        return (
            f"request body of {length} bytes or more is over the limit of {self._max} "
            "(WQ_DISPATCHER_HTTP_MAX_BODY_BYTES); submit fewer tasks per batch"
        )
