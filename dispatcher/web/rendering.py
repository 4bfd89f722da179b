"""Templates, the caller's session and role, and the CSRF check every form goes through.

Jinja2 escapes everything it prints (autoescape on for every template): params, results,
errors, tracebacks and executor names come from tasks and executors, untrusted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlencode

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatcher.api.auth import ROLE_KEY
from dispatcher.web.sessions import COOKIE, LIFETIME_S, Role, Session, Sessions

HERE: Final = Path(__file__).parent
MAX_FORM_FIELDS: Final = 1100  # a page of selected tasks plus the form's own fields
Handler = Callable[[Request, Exception], Awaitable[Response]]
NO_DESK: Final = "This dispatcher does not manage the dead-letter queue."
# What each note an action leaves in the query string says; anything else shows nothing.
NOTES: Final = {
    "retried": "Retried {n} task(s).",
    "cancelled": "Cancel requested for {n} task(s).",
    "refused": "{n} task(s) were left alone: not in a state that allows it.",
    "replayed": "Replayed {n} dead task(s).",
    "purged": "Purged {n} dead message(s).",
    "paused": "Schedule paused.",
    "resumed": "Schedule resumed.",
    "fired": "Schedule fired: its task is due now.",
    "deleted": "Schedule deleted.",
    "saved": "Schedule saved.",
    "rescheduled": "Task rescheduled.",
    "signed_out": "Signed out.",
}


class Refused(Exception):
    """A form the dashboard will not act on: HTTP ``status`` and why, shown as a page."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


def _when(value: datetime | None) -> str:
    """An instant as people read it here: UTC, to the second."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pretty(value: object) -> str:
    """JSON for people: indented, non-ASCII kept as it is."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when
_env.filters["pretty"] = _pretty


def note_of(request: Request) -> str | None:
    """What the action that sent the browser here did, from ``back``'s query string."""
    done = request.query_params.get("done")
    if done not in NOTES:
        return None
    count = request.query_params.get("n", "0")
    return NOTES[done].format(n=int(count) if count.isdigit() and len(count) < 9 else 0)


def first_error(errors: Sequence[Mapping[str, Any]], *, where: str = "input") -> str:
    """The first of pydantic's errors as people read it: where, then what."""
    if not errors:
        return f"{where}: invalid"
    first = errors[0]
    at = ".".join(str(part) for part in first.get("loc", ())) or where
    return f"{at}: {first.get('msg', 'invalid')}"


def sessions_of(request: Request) -> Sessions:
    """The app's session signer (``create_app`` puts it on the app)."""
    return cast(Sessions, request.app.state.sessions)


def role_of(request: Request) -> Role:
    """The caller's role: the middleware's word once a token is set, else admin (loopback)."""
    return cast(Role, request.scope.get("state", {}).get(ROLE_KEY, Role.ADMIN))


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A page, with the caller's session (a new one is issued if there is none yet) and the
    note of the action that led here."""
    sessions = sessions_of(request)
    session = sessions.read(request.cookies.get(COOKIE))
    issued = None
    if session is None and not request.app.state.token_set:
        # Loopback without a token: every visitor is admin, and needs a session only for
        # the CSRF tokens of its forms. With a token, only the login form issues sessions.
        issued, session = sessions.issue(Role.ADMIN)
    values.setdefault("note", note_of(request))
    page = _env.get_template(template).render(
        request=request,
        csrf=sessions.csrf_token(session) if session is not None else "",
        may_act=role_of(request) is Role.ADMIN,
        signed_in=request.app.state.token_set,
        path=request.url.path,
        **values,
    )
    response = HTMLResponse(page, status_code=status_code)
    if issued is not None:
        set_session_cookie(request, response, issued)
    return response


async def refused_page(request: Request, exc: Exception) -> HTMLResponse:
    """The page for a ``Refused`` action: its status and why."""
    assert isinstance(exc, Refused)
    return render(request, "error.html", exc.status, title="Not done", why=exc.why)


def for_pages(api_handler: Handler) -> Handler:
    """``api_handler`` for the JSON API; a page for the dashboard's own paths, so that a
    mistyped address or a malformed id there is a 404 or 422 page, not JSON."""

    async def handle(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if not (path == "/" or path.startswith("/ui/")):
            return await api_handler(request, exc)
        if isinstance(exc, RequestValidationError):
            why, status = first_error(exc.errors()), 422
        elif isinstance(exc, StarletteHTTPException) and exc.status_code in (404, 400):
            why, status = (
                "No such page." if exc.status_code == 404 else str(exc.detail),
                exc.status_code,
            )
        else:
            return await api_handler(request, exc)
        return render(
            request,
            "error.html",
            status,
            title="Not found" if status == 404 else "Bad request",
            why=why,
        )

    return handle


def fragment(template: str, **values: Any) -> HTMLResponse:
    """A piece of a page, for htmx to swap in (no session work: pages issue those)."""
    return HTMLResponse(_env.get_template(template).render(**values))


def set_session_cookie(
    request: Request, response: HTMLResponse | RedirectResponse, value: str
) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=LIFETIME_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


async def checked_form(request: Request, *, act: bool = True) -> FormData:
    """The form of a state-changing POST, once it passed the CSRF and role checks.

    A request that carries the bearer token itself needs no CSRF token (a browser cannot
    forge that header); any other needs its session's token in the ``csrf`` field. With
    ``act`` (anything but signing out) the read-only role is refused.
    """
    if act and role_of(request) is not Role.ADMIN:
        raise Refused(403, "Signed in with the read-only token: this changes nothing.")
    form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
    if request.headers.get("authorization"):
        return form
    session: Session | None = sessions_of(request).read(request.cookies.get(COOKIE))
    token = form.get("csrf")
    if session is None or not sessions_of(request).csrf_ok(
        session, token if isinstance(token, str) else None
    ):
        raise Refused(
            403, "The form's CSRF token is missing or stale: reload the page and try again."
        )
    return form


def back(to: str, **note: str | int) -> RedirectResponse:
    """After an action: 303 to ``to`` (a path of ours), with a note of what was done."""
    if not to.startswith("/") or to.startswith("//"):
        to = "/"
    query = urlencode(note)
    separator = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{separator}{query}" if query else to, status_code=303)
