"""RabbitMQ's delivery acknowledgement timeout against the task types' hard time limits.

RabbitMQ closes a channel whose delivery stays unacked past ``consumer_timeout`` (30 min by
default) and redelivers every task on it. From 3.11.15/3.12 a consumer may ask for its own
timeout (the ``x-consumer-timeout`` consumer argument); older brokers only get a warning.
https://www.rabbitmq.com/docs/consumers#acknowledgement-timeout
"""

from __future__ import annotations

import re

from common import TaskRegistry
from common.logging import get_logger

log = get_logger(__name__)

# Time to report and ack after the hard limit; the limit itself bounds the handler.
_MARGIN_S = 60.0


def supports_consumer_timeout(broker_version: str) -> bool:
    """Whether the broker honours the ``x-consumer-timeout`` consumer argument."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", broker_version)[:3])
    return numbers >= (3, 12) or (3, 11, 15) <= numbers < (3, 12)


def consumer_arguments(registry: TaskRegistry, broker_version: str) -> dict[str, int]:
    """The consumer's own ack timeout: the longest hard limit plus a margin, when all have one."""
    limits = [registry.get(name).options.time_limit for name in registry.names()]
    if not limits or None in limits or not supports_consumer_timeout(broker_version):
        return {}
    longest = max(limit for limit in limits if limit is not None)
    return {"x-consumer-timeout": int((longest + _MARGIN_S) * 1000)}


def report(registry: TaskRegistry, arguments: dict[str, int], consumer_timeout: float) -> None:
    """Log what protects long tasks from the broker's timeout, or warn that nothing does."""
    if arguments:
        log.info("consumer_timeout_set", consumer_timeout_ms=arguments["x-consumer-timeout"])
        return
    limits = {name: registry.get(name).options.time_limit for name in registry.names()}
    too_long = [name for name, limit in limits.items() if limit and limit >= consumer_timeout]
    unlimited = [name for name, limit in limits.items() if limit is None]
    if too_long:
        log.warning(
            "consumer_timeout_risk",
            task_types=too_long,
            consumer_timeout_s=consumer_timeout,
            hint="give these task types a time_limit below the broker's consumer_timeout, or "
            "raise consumer_timeout in rabbitmq.conf and WQ_AMQP_CONSUMER_TIMEOUT to match",
        )
    if unlimited:
        log.info("no_time_limit", task_types=unlimited, consumer_timeout_s=consumer_timeout)
