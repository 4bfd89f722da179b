"""The consumer's own ack timeout follows the task types' hard limits on brokers that allow it."""

from __future__ import annotations

import pytest

from common import TaskRegistry
from executor.timeouts import consumer_arguments, supports_consumer_timeout


@pytest.mark.parametrize(
    ("version", "supported"),
    [("3.10.8", False), ("3.11.14", False), ("3.11.15", True), ("3.12.0", True),
     ("4.1.2", True), ("", False), ("4.0.0-rc.1", True)],
)  # fmt: skip
def test_consumer_timeout_argument_needs_rabbitmq_3_11_15_or_later(
    version: str, supported: bool
) -> None:
    assert supports_consumer_timeout(version) is supported


def _registry(*limits: float | None) -> TaskRegistry:
    registry = TaskRegistry()
    for n, limit in enumerate(limits):
        registry.task(f"t{n}", time_limit=limit)(lambda: None)
    return registry


def test_longest_hard_limit_plus_a_margin_becomes_the_consumer_timeout() -> None:
    assert consumer_arguments(_registry(10, 3600), "3.13.1") == {"x-consumer-timeout": 3_660_000}


def test_no_argument_when_a_task_type_has_no_hard_limit() -> None:
    assert consumer_arguments(_registry(10, None), "3.13.1") == {}


def test_no_argument_on_brokers_that_do_not_know_it() -> None:
    assert consumer_arguments(_registry(10), "3.10.8") == {}


def test_no_argument_without_task_types() -> None:
    assert consumer_arguments(TaskRegistry(), "4.1.0") == {}
