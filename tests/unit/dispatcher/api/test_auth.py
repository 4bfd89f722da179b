"""The bearer check and the rule that a public bind needs a token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from common import ConfigError, is_loopback
from dispatcher.api.auth import check_bind, token_matches

TOKEN = SecretStr("s3cret-token-0123")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer s3cret-token-0123",
        "bearer s3cret-token-0123",
        "BEARER  s3cret-token-0123 ",
        " Bearer s3cret-token-0123",
    ],
)
def test_the_right_bearer_token_matches(header: str) -> None:
    assert token_matches(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer s3cret-toke",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
        "s3cret-token",
        "Bearer S3CRET-TOKEN",
        "Bearer s3cret-tökén",
    ],
)
def test_anything_else_does_not(header: str | None) -> None:
    assert not token_matches(header, TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", "localhost.evil"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_public_bind_without_a_token_is_a_config_error_naming_both_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind("0.0.0.0", None)

    assert "WQ_DISPATCHER_HTTP_HOST=0.0.0.0" in str(caught.value)
    assert "WQ_DISPATCHER_HTTP_TOKEN" in str(caught.value)


def test_loopback_without_a_token_and_a_public_bind_with_one_are_fine() -> None:
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)


@pytest.mark.parametrize(
    "weak", ["", " ", " " * 20, "short-token", "x" * 15, " padded-token-0123", "tab\tin-token-0123"]
)
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_an_empty_blank_padded_or_short_token_is_refused_at_start(weak: str, host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind(host, SecretStr(weak))

    assert "WQ_DISPATCHER_HTTP_TOKEN" in str(caught.value)
    if weak.strip():
        assert weak.strip() not in str(caught.value)  # a secret is never echoed


def test_a_token_of_sixteen_characters_is_enough() -> None:
    check_bind("0.0.0.0", SecretStr("0123456789abcdef"))
