"""Dashboard sessions: a signed cookie that stands for a token, and each form's CSRF token.

A browser cannot send a bearer token, so the login form exchanges it for a cookie: the
role it grants (``admin`` for ``WQ_DISPATCHER_HTTP_TOKEN``, ``read`` for the read-only
token), a random nonce and an expiry, signed with HMAC-SHA256. The key is derived from the
tokens, so every replica accepts every replica's cookies and changing a token ends every
session; without a token (loopback only) the key is random per process.

Every state-changing form carries a CSRF token derived from the session's nonce: a forged
cross-site POST has no way to read it, and the SameSite=Strict cookie is not even sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from pydantic import SecretStr

COOKIE: Final = "wq_session"
LIFETIME_S: Final = 12 * 3600


class Role(StrEnum):
    """What a session may do."""

    ADMIN = "admin"  # everything
    READ = "read"  # look at everything, change nothing


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser."""

    role: Role
    nonce: str
    expires: int

    @property
    def may_act(self) -> bool:
        """Whether this session may change anything."""
        return self.role is Role.ADMIN


class Sessions:
    """Issues and checks session cookies and their CSRF tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_tokens(cls, token: SecretStr | None, read_token: SecretStr | None) -> Sessions:
        """Keyed by the tokens when there are any (shared by replicas), else at random."""
        if token is None:
            return cls(secrets.token_bytes(32))
        material = b"\0".join(
            t.get_secret_value().encode() for t in (token, read_token) if t is not None
        )
        return cls(hashlib.sha256(b"wq-dashboard-session\0" + material).digest())

    def issue(self, role: Role, *, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``role`` and the cookie value that carries it."""
        issued = time.time() if now is None else now
        session = Session(role, secrets.token_urlsafe(16), int(issued) + LIFETIME_S)
        payload = json.dumps(
            {"r": session.role.value, "n": session.nonce, "e": session.expires},
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie carries; None if absent, forged, malformed or expired."""
        if not cookie or len(cookie) > 512 or cookie.count(".") != 1 or not cookie.isascii():
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            session = Session(Role(fields["r"]), str(fields["n"]), int(fields["e"]))
        except (ValueError, KeyError, TypeError):
            return None  # signed by us, so only an older format: treat as signed out
        if session.expires < (time.time() if now is None else now):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        """The token this session's forms carry."""
        return self._sign("csrf." + session.nonce)

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token (constant-time)."""
        if token is None or not token.isascii():
            return False
        return hmac.compare_digest(token, self.csrf_token(session))

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
