"""The bearer check and the rule that a public bind needs a token."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from common import ConfigError
from dispatcher.api.auth import check_bind, is_loopback, token_matches

TOKEN = SecretStr("s3cret-token")


@pytest.mark.parametrize(
    "header",
    ["Bearer s3cret-token", "bearer s3cret-token", "BEARER  s3cret-token ", " Bearer s3cret-token"],
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
