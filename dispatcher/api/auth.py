"""Who may call the API: a bearer token once one is set, and the bind rule that requires one."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from pydantic import SecretStr
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from common import ConfigError, is_loopback
from dispatcher.web.sessions import COOKIE, Role, Sessions

_CHALLENGE = 'Bearer realm="wq-dispatcher"'


# Shortest token accepted: 16 characters is 64 bits or more of a random hex string.
MIN_TOKEN_LENGTH = 16


def check_bind(host: str, token: SecretStr | None, read_token: SecretStr | None = None) -> None:
    """Refuse a weak token, or serving beyond loopback without one; ``ConfigError`` says why.

    A set token is always checked (it is required from then on, loopback or not): empty,
    blank, padded with spaces or shorter than ``MIN_TOKEN_LENGTH`` is refused, since an
    empty one would let an empty ``Bearer`` in and a blank one would lock everyone out.
    """
    if token is not None:
        _check_token("WQ_DISPATCHER_HTTP_TOKEN", token)
        value = token.get_secret_value()
        if read_token is not None:
            _check_token("WQ_DISPATCHER_HTTP_READ_TOKEN", read_token)
            if read_token.get_secret_value() == value:
                raise ConfigError(
                    "WQ_DISPATCHER_HTTP_READ_TOKEN is the same as WQ_DISPATCHER_HTTP_TOKEN: "
                    "a read-only token must differ"
                )
    elif read_token is not None:
        raise ConfigError("WQ_DISPATCHER_HTTP_READ_TOKEN needs WQ_DISPATCHER_HTTP_TOKEN set too")
    elif not is_loopback(host):
        raise ConfigError(
            f"WQ_DISPATCHER_HTTP_HOST={host} accepts connections from other machines: set "
            "WQ_DISPATCHER_HTTP_TOKEN to the bearer token clients must send, or bind to "
            "127.0.0.1"
        )


def _check_token(name: str, token: SecretStr) -> None:
    value = token.get_secret_value()
    if len(value) < MIN_TOKEN_LENGTH or value != value.strip() or not value.isprintable():
        raise ConfigError(
            f"{name} must be at least {MIN_TOKEN_LENGTH} printable characters with no "
            "leading or trailing spaces (for example the output of `openssl rand -hex 16`)"
        )


def token_matches(authorization: str | None, token: SecretStr) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as a bearer credential.

    The comparison takes the same time wherever the first difference is, so response times
    reveal nothing about the token.
    """
    if authorization is None:
        return False
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    expected = token.get_secret_value().encode()
    return hmac.compare_digest(credential.strip().encode(), expected)


SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_KEY: Final = "wq_role"
"""Where the middleware leaves the caller's ``Role`` in the request's state."""


@dataclass(frozen=True, slots=True)
class Doors:
    """Which paths need what.

    Attributes:
        open_paths: served to anyone (the liveness probe, the login page).
        open_prefixes: likewise, every path under these (the dashboard's static files); end
            a prefix with ``/``, or ``/static`` would open ``/statistics``.
        page_paths, page_prefixes: for people: a session cookie is as good as the token,
            and a browser without one is sent to ``login_path``.
    """

    open_paths: frozenset[str]
    open_prefixes: tuple[str, ...]
    page_paths: frozenset[str]
    page_prefixes: tuple[str, ...]
    login_path: str

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def is_page(self, path: str) -> bool:
        return path in self.page_paths or path.startswith(self.page_prefixes)


def role_of_bearer(
    authorization: str | None, token: SecretStr, read_token: SecretStr | None
) -> Role | None:
    """The role an ``Authorization`` header's bearer token grants; None for neither token."""
    if token_matches(authorization, token):
        return Role.ADMIN
    if read_token is not None and token_matches(authorization, read_token):
        return Role.READ
    return None


class BearerAuth:
    """ASGI middleware: the token for everything but ``doors``' open paths.

    A bearer token (or, for pages, a dashboard session) grants its role: the main token
    everything, the read-only token the safe methods only (403 for any other). A request
    with neither gets 401, or, when a browser asks for a page, a redirect to the login form.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: SecretStr,
        read_token: SecretStr | None,
        sessions: Sessions,
        doors: Doors,
    ) -> None:
        self.app = app
        self._token = token
        self._read_token = read_token
        self._sessions = sessions
        self._doors = doors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or self._doors.is_open(path):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        authorization = raw.decode("latin-1") if raw is not None else None
        role = role_of_bearer(authorization, self._token, self._read_token)
        page = self._doors.is_page(path)
        if role is None and page:
            cookies = cookie_parser(headers.get(b"cookie", b"").decode("latin-1"))
            session = self._sessions.read(cookies.get(COOKIE))
            role = session.role if session is not None else None
        if role is None:
            if page and raw is None and scope["method"] in SAFE_METHODS and _wants_html(headers):
                await _to_login(self._doors.login_path, scope)(scope, receive, send)
                return
            await _refused(raw)(scope, receive, send)
            return
        if role is Role.READ and scope["method"] not in SAFE_METHODS:
            response = JSONResponse({"detail": "the read-only token changes nothing"}, 403)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[ROLE_KEY] = role
        await self.app(scope, receive, send)


def _refused(raw: bytes | None) -> JSONResponse:
    # RFC 6750 section 3: no credential gets the bare challenge, a wrong one says so.
    challenge = _CHALLENGE if raw is None else f'{_CHALLENGE}, error="invalid_token"'
    return JSONResponse(
        {"detail": "missing or wrong bearer token"},
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )


def _to_login(login_path: str, scope: Scope) -> RedirectResponse:
    query = urlencode({"next": scope["path"]})
    return RedirectResponse(f"{login_path}?{query}", status_code=303)


def _wants_html(headers: dict[bytes, bytes]) -> bool:
    """A browser navigating (it asks for HTML), not a program fetching JSON."""
    return b"text/html" in headers.get(b"accept", b"")
