"""Session cookies and CSRF tokens: signed, expiring, bound to their session."""

from __future__ import annotations

from pydantic import SecretStr

from dispatcher.web.sessions import LIFETIME_S, Role, Sessions

NOW = 1_800_000_000.0


def test_a_session_reads_back_with_its_role() -> None:
    sessions = Sessions(b"k" * 32)

    cookie, issued = sessions.issue(Role.READ, now=NOW)
    read = sessions.read(cookie, now=NOW + 1)

    assert read == issued
    assert read is not None
    assert read.role is Role.READ
    assert not read.may_act


def test_a_tampered_expired_or_foreign_cookie_is_no_session() -> None:
    sessions = Sessions(b"k" * 32)
    cookie, _ = sessions.issue(Role.READ, now=NOW)
    body, signature = cookie.split(".")
    admin_cookie, _ = sessions.issue(Role.ADMIN, now=NOW)

    assert sessions.read(admin_cookie.split(".")[0] + "." + signature, now=NOW) is None
    assert sessions.read(body + "." + "0" * len(signature), now=NOW) is None
    assert sessions.read(cookie, now=NOW + LIFETIME_S + 1) is None
    assert Sessions(b"x" * 32).read(cookie, now=NOW) is None
    for junk in (None, "", ".", "a.b.c", "x" * 600, "é.é"):
        assert sessions.read(junk, now=NOW) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    sessions = Sessions(b"k" * 32)
    _, one = sessions.issue(Role.ADMIN, now=NOW)
    _, other = sessions.issue(Role.ADMIN, now=NOW)

    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, sessions.csrf_token(other))
    assert not sessions.csrf_ok(one, None)
    assert not sessions.csrf_ok(one, "")
    assert not sessions.csrf_ok(one, "é")


def test_replicas_with_the_same_tokens_share_sessions_and_a_new_token_ends_them() -> None:
    token, read = SecretStr("a" * 20), SecretStr("b" * 20)
    cookie, _ = Sessions.for_tokens(token, read).issue(Role.ADMIN)

    assert Sessions.for_tokens(token, read).read(cookie) is not None
    assert Sessions.for_tokens(SecretStr("c" * 20), read).read(cookie) is None
    assert Sessions.for_tokens(None, None).read(cookie) is None
