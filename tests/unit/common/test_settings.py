"""Shared settings: defaults, the environment, validation and keeping the password secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from common import AmqpSettings, ConfigError, LogSettings, Topology, load_settings, redact_url
from common.settings import DEFAULT_AMQP_URL

SECRET_URL = "amqp://app:s3cr3t-pw@rabbit.example:5671/prod"


def test_amqp_defaults_match_the_local_broker() -> None:
    settings = AmqpSettings()

    assert (
        settings.url.get_secret_value() == DEFAULT_AMQP_URL == "amqp://guest:guest@localhost:5672/"
    )
    assert settings.prefix == "wq"
    assert settings.topology == Topology(prefix="wq", max_priority=10)
    assert settings.max_body_bytes == 1024 * 1024


def test_max_priority_reaches_the_topology() -> None:
    assert AmqpSettings(max_priority=0).topology.max_priority == 0
    with pytest.raises(ValueError, match="max_priority"):
        AmqpSettings(max_priority=256)


def test_log_defaults() -> None:
    settings = LogSettings()

    assert settings.level == "info"
    assert settings.format == "auto"


def test_amqp_url_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_AMQP_URL", SECRET_URL)
    monkeypatch.setenv("WQ_AMQP_PREFIX", "staging")

    settings = load_settings(AmqpSettings)

    assert settings.url.get_secret_value() == SECRET_URL
    assert settings.topology.task_queue == "staging.tasks"


def test_init_kwargs_outrank_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_AMQP_PREFIX", "from-env")

    assert load_settings(AmqpSettings, prefix="from-kwargs").prefix == "from-kwargs"


def test_log_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_LOG_LEVEL", "debug")
    monkeypatch.setenv("WQ_LOG_FORMAT", "json")

    assert load_settings(LogSettings) == LogSettings(level="debug", format="json")


def test_redacted_url_hides_the_password() -> None:
    settings = AmqpSettings(url=SecretStr(SECRET_URL))

    assert settings.redacted_url() == "amqp://app:***@rabbit.example:5671/prod"


def test_settings_text_never_contains_the_password() -> None:
    settings = AmqpSettings(url=SecretStr(SECRET_URL))

    for text in (str(settings), repr(settings), settings.model_dump_json()):
        assert "s3cr3t-pw" not in text


def test_non_amqp_url_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WQ_AMQP_URL", "http://app:s3cr3t-pw@rabbit.example/")

    with pytest.raises(ConfigError, match="WQ_AMQP_URL") as caught:
        load_settings(AmqpSettings)

    assert "s3cr3t-pw" not in str(caught.value)


def test_amqps_url_is_accepted() -> None:
    url = "amqps://app:pw@rabbit.example/"

    assert load_settings(AmqpSettings, url=SecretStr(url)).url.get_secret_value() == url


@pytest.mark.parametrize("prefix", ["Upper", "has space", ".leading-dot", ""])
def test_bad_prefix_is_a_config_error(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("WQ_AMQP_PREFIX", prefix)

    with pytest.raises(ConfigError, match="WQ_AMQP_PREFIX"):
        load_settings(AmqpSettings)


def test_bad_log_level_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WQ_LOG_LEVEL", "loud")

    with pytest.raises(ConfigError, match="WQ_LOG_LEVEL"):
        load_settings(LogSettings)


def test_config_error_lists_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_AMQP_PREFIX", "BAD")
    monkeypatch.setenv("WQ_AMQP_HEARTBEAT", "-1")

    with pytest.raises(ConfigError, match="WQ_AMQP_PREFIX") as caught:
        load_settings(AmqpSettings)

    assert "WQ_AMQP_HEARTBEAT" in str(caught.value)


def test_redact_url_without_password_is_unchanged() -> None:
    for url in ("amqp://localhost:5672/", "amqp://user@localhost/vhost"):
        assert redact_url(url) == url


def test_redact_url_keeps_port_and_path() -> None:
    assert (
        redact_url("amqp://u:p@host:5673/%2F?heartbeat=5")
        == "amqp://u:***@host:5673/%2F?heartbeat=5"
    )


def test_redact_url_keeps_the_host_as_written() -> None:
    assert redact_url("amqp://u:p@[::1]:5672/") == "amqp://u:***@[::1]:5672/"
