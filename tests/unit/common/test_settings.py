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


CLUSTER_URL = (
    "amqp://app:pw-one@rabbit-1:5672/prod, amqp://app:pw-two@rabbit-2:5672/prod,"
    "amqps://app:pw-three@rabbit-3:5671/prod"
)


def test_one_url_is_a_list_of_one() -> None:
    assert AmqpSettings(url=SecretStr(SECRET_URL)).urls() == [SECRET_URL]


def test_comma_separated_urls_are_split_in_order_and_trimmed() -> None:
    settings = AmqpSettings(url=SecretStr(CLUSTER_URL))

    assert [url.split("@")[1] for url in settings.urls()] == [
        "rabbit-1:5672/prod",
        "rabbit-2:5672/prod",
        "rabbit-3:5671/prod",
    ]


def _hosts(urls: list[str]) -> list[str]:
    return [url.split("@")[1].split(":")[0] for url in urls]


def test_spread_starts_connections_at_every_address_in_the_listed_cycle() -> None:
    settings = AmqpSettings(url=SecretStr(CLUSTER_URL))
    cycles = [["rabbit-1", "rabbit-2", "rabbit-3"], ["rabbit-2", "rabbit-3", "rabbit-1"]]
    cycles.append(["rabbit-3", "rabbit-1", "rabbit-2"])

    orders = {tuple(_hosts(settings.urls_to_try())) for _ in range(200)}

    # Random starts (all three seen in 200 tries but with odds of 3 * (2/3)**200), never a
    # reshuffle: after a failure a client moves on to the next node of the list.
    assert orders == {tuple(cycle) for cycle in cycles}


def test_listed_order_always_starts_at_the_first_address() -> None:
    settings = AmqpSettings(url=SecretStr(CLUSTER_URL), url_order="listed")

    assert {tuple(_hosts(settings.urls_to_try())) for _ in range(50)} == {
        ("rabbit-1", "rabbit-2", "rabbit-3")
    }


def test_redacted_url_hides_every_password_of_a_list() -> None:
    redacted = AmqpSettings(url=SecretStr(CLUSTER_URL)).redacted_url()

    assert "pw-" not in redacted
    assert redacted.count("app:***@") == 3


def test_a_percent_encoded_comma_stays_in_its_password() -> None:
    url = "amqp://app:a%2Cb@rabbit-1/"

    assert AmqpSettings(url=SecretStr(f"{url},amqp://app:c@rabbit-2/")).urls()[0] == url


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://app:pw-x@rabbit-1/", "the URL must start with amqp://"),
        ("amqp://app:pw-x@rabbit-1/,http://app:pw-x@rabbit-2/", "address 2 of 2 must start"),
        ("amqp://app:pw-x@rabbit-1/,", "address 2 of 2 is empty"),
        ("amqp://app:pw-x@rabbit-1:56x2/", "the URL is not a valid URL"),
    ],
)
def test_each_url_is_checked_and_named_by_position_never_by_text(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("WQ_AMQP_URL", value)

    with pytest.raises(ConfigError) as caught:
        load_settings(AmqpSettings)

    assert "WQ_AMQP_URL" in str(caught.value)
    assert problem in str(caught.value)
    assert "pw-x" not in str(caught.value)
