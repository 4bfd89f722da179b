"""Settings both services share: the broker connection (``WQ_AMQP_*``) and logging (``WQ_LOG_*``).

Only the services' ``cli.py`` builds settings; nothing else reads the environment.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigError
from common.messages import MAX_DELIVERY_LIMIT
from common.topology import DEFAULT_PREFIX, QueueType, Topology

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672/"

_S = TypeVar("_S", bound=BaseSettings)


class AmqpSettings(BaseSettings):
    """How to reach RabbitMQ and which names to use there."""

    model_config = SettingsConfigDict(env_prefix="WQ_AMQP_", extra="ignore")

    url: SecretStr = Field(
        default=SecretStr(DEFAULT_AMQP_URL),
        description="AMQP URL with credentials, or several separated by commas (the nodes of "
        "a cluster, tried in turn at every connect and reconnect); passwords are never logged.",
    )
    url_order: Literal["spread", "listed"] = Field(
        default="spread",
        description="With several addresses in url: spread starts each connection at a random "
        "one (so a cluster's clients spread over its nodes), listed always starts at the first "
        "(a preferred node, the others as fallbacks).",
    )
    prefix: str = Field(
        default=DEFAULT_PREFIX,
        pattern=r"^[a-z0-9][a-z0-9_.-]*$",
        description="Prefix of every exchange and queue name (wq.tasks, wq.results, ...).",
    )
    queue_type: QueueType = Field(
        default="classic",
        description="classic, or quorum for replicated queues (needs a RabbitMQ cluster to "
        "replicate; works on one node). Changing it needs a queue migration.",
    )
    heartbeat: int = Field(default=30, ge=0, description="AMQP heartbeat in seconds.")
    connect_timeout: float = Field(default=10.0, gt=0)
    confirm_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a publisher confirm."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest body of a task, result, heartbeat or progress report.",
    )
    consumer_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="The broker's consumer_timeout in seconds (RabbitMQ's default is 30 min): "
        "a task unacked for longer makes RabbitMQ close the channel and redeliver it.",
    )
    delivery_limit: int = Field(
        default=5,
        ge=1,
        le=MAX_DELIVERY_LIMIT,
        description="Starts of one attempt that never settled (its executor died or lost its "
        "connection each time) after which it is dead-lettered instead of run again. "
        "Deliveries that never started (a broker crash flags every waiting message "
        "redelivered) do not count.",
    )

    max_priority: int = Field(
        default=10,
        ge=0,
        le=255,
        description="Priority levels of the classic task queue (x-max-priority); 0 disables "
        "priorities. RabbitMQ advises at most 10; each level costs memory and CPU. Ignored for "
        "quorum queues. Changing it needs a queue migration.",
    )

    @field_validator("url")
    @classmethod
    def _must_be_amqp(cls, value: SecretStr) -> SecretStr:
        split_urls(value.get_secret_value())  # raises ValueError naming the bad entry
        return value

    @property
    def topology(self) -> Topology:
        """The broker names this deployment uses."""
        return Topology(
            prefix=self.prefix,
            queue_type=self.queue_type,
            delivery_limit=self.delivery_limit,
            max_priority=self.max_priority,
        )

    def urls(self) -> list[str]:
        """Every broker address in ``url``, as listed."""
        return split_urls(self.url.get_secret_value())

    def urls_to_try(self) -> list[str]:
        """Every broker address, in the order one new connection tries them (``url_order``).

        Spread rotates the list to a random start, keeping the order after it, so that after a
        failure each client moves on to the next node rather than all to the same one.
        """
        urls = self.urls()
        if self.url_order == "listed":
            return urls
        start = random.randrange(len(urls))
        return urls[start:] + urls[:start]

    def redacted_url(self) -> str:
        """The URL(s) with passwords replaced, safe for logs and error messages."""
        return ",".join(redact_url(url) for url in self.urls())

    def scrub(self, text: str) -> str:
        """``text`` with every broker password in it replaced: AMQP clients may echo the URL
        in their errors, and no password may reach a log line."""
        for url in self.urls():
            secret = urlsplit(url).password
            if secret:
                text = text.replace(secret, "***")
        return text


class LogSettings(BaseSettings):
    """Log level and rendering."""

    model_config = SettingsConfigDict(env_prefix="WQ_LOG_", extra="ignore")

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a TTY, JSON lines otherwise."
    )

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def split_urls(value: str) -> list[str]:
    """Split a comma-separated list of AMQP URLs and check each one.

    A comma inside a password must be written ``%2C``, as any reserved character in a URL's
    user info. Raises ``ValueError`` naming the entry by position, never by its text (it may
    hold a password).
    """
    urls = [part.strip() for part in value.split(",")]
    for position, url in enumerate(urls, start=1):
        where = f"address {position} of {len(urls)}" if len(urls) > 1 else "the URL"
        if not url:
            raise ValueError(f"{where} is empty (a stray comma?)")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{where} is not a valid URL") from exc
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"{where} must start with amqp:// or amqps://")
    return urls


def redact_url(url: str) -> str:
    """Replace the password in a URL with ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Rebuild from the netloc as written: hostname would drop IPv6 brackets and lower-case it.
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def load_settings(cls: type[_S], **overrides: Any) -> _S:
    """Build settings; a validation error becomes a ``ConfigError`` naming the variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Only ``localhost`` and loopback addresses count; any other name may resolve elsewhere.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
