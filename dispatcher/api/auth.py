"""Who may call the API: a bearer token once one is set, and the bind rule that requires one."""

from __future__ import annotations

import hmac

from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from common import ConfigError, is_loopback

_CHALLENGE = 'Bearer realm="wq-dispatcher"'


# Shortest token accepted: 16 characters is 64 bits or more of a random hex string.
MIN_TOKEN_LENGTH = 16


def check_bind(host: str, token: SecretStr | None) -> None:
    """Refuse a weak token, or serving beyond loopback without one; ``ConfigError`` says why.

    A set token is always checked (it is required from then on, loopback or not): empty,
    blank, padded with spaces or shorter than ``MIN_TOKEN_LENGTH`` is refused, since an
    empty one would let an empty ``Bearer`` in and a blank one would lock everyone out.
    """
    if token is not None:
        value = token.get_secret_value()
        if len(value) < MIN_TOKEN_LENGTH or value != value.strip() or not value.isprintable():
            raise ConfigError(
                f"WQ_DISPATCHER_HTTP_TOKEN must be at least {MIN_TOKEN_LENGTH} printable "
                "characters with no leading or trailing spaces (for example the output of "
                "`openssl rand -hex 16`)"
            )
    elif not is_loopback(host):
        raise ConfigError(
            f"WQ_DISPATCHER_HTTP_HOST={host} accepts connections from other machines: set "
            "WQ_DISPATCHER_HTTP_TOKEN to the bearer token clients must send, or bind to "
            "127.0.0.1"
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


class BearerAuth:
    """ASGI middleware: 401 for every HTTP request without the token, except the open ones.

    Open are the exact ``open_paths`` and every path that starts with one of
    ``open_prefixes`` (end a prefix with ``/``, or ``/static`` would open ``/statistics``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: SecretStr,
        open_paths: frozenset[str],
        open_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._token = token
        self._open_paths = open_paths
        self._open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw = headers.get(b"authorization")
        authorization = raw.decode("latin-1") if raw is not None else None
        if token_matches(authorization, self._token):
            await self.app(scope, receive, send)
            return
        # RFC 6750 section 3: no credential gets the bare challenge, a wrong one says so.
        challenge = _CHALLENGE if raw is None else f'{_CHALLENGE}, error="invalid_token"'
        response = JSONResponse(
            {"detail": "missing or wrong bearer token"},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)

    def _is_open(self, path: str) -> bool:
        return path in self._open_paths or path.startswith(self._open_prefixes)
