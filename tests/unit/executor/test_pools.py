"""Which queues an executor consumes, and how its slots are shared between them."""

from __future__ import annotations

import pytest

from common import ConfigError, TaskRegistry
from executor.pools import (
    ChannelPlan,
    consumer_tag,
    foreign_queues,
    parse_queues,
    plan_channels,
    queues_to_consume,
    unconsumed_types,
)


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task()
    def plain() -> None: ...

    @registry.task(queue="reports")
    def render() -> None: ...

    return registry


def test_an_executor_consumes_the_queues_its_task_types_declare() -> None:
    assert queues_to_consume(_registry(), None) == ["default", "reports"]
    assert queues_to_consume(TaskRegistry(), None) == ["default"]
    assert queues_to_consume(_registry(), ["reports"]) == ["reports"]


def test_queue_names_are_checked_and_deduplicated() -> None:
    assert parse_queues("reports, default,reports") == ["reports", "default"]
    for bad in ("", "a,,b", "Reports", "dead", "a.b", "x" * 65):
        with pytest.raises(ConfigError):
            parse_queues(bad)


def test_a_task_type_may_not_name_a_reserved_or_malformed_queue() -> None:
    registry = TaskRegistry()
    for bad in ("dead", "with space", ""):
        with pytest.raises(ConfigError):
            registry.task(f"t_{len(bad)}", queue=bad)


def test_classic_queues_share_every_slot_on_one_channel() -> None:
    assert plan_channels("classic", ["default", "reports"], 4) == [
        ChannelPlan(("default", "reports"), 4, shared=True)
    ]
    assert plan_channels("classic", ["default"], 3) == [ChannelPlan(("default",), 3, shared=False)]


def test_quorum_queues_split_the_slots_since_they_ignore_a_global_prefetch() -> None:
    assert plan_channels("quorum", ["a", "b", "c"], 5) == [
        ChannelPlan(("a",), 2, shared=False),
        ChannelPlan(("b",), 2, shared=False),
        ChannelPlan(("c",), 1, shared=False),
    ]
    assert sum(p.prefetch for p in plan_channels("quorum", ["a", "b"], 7)) == 7
    assert plan_channels("quorum", ["a"], 2) == [ChannelPlan(("a",), 2, shared=False)]


def test_quorum_queues_need_a_slot_each() -> None:
    with pytest.raises(ConfigError, match="at least 3 slots"):
        plan_channels("quorum", ["a", "b", "c"], 2)


def test_mismatches_between_queues_and_task_types_are_found() -> None:
    registry = _registry()

    assert foreign_queues(registry, ["default", "other"]) == ["other"]
    assert unconsumed_types(registry, ["default"]) == {"render": "reports"}
    assert unconsumed_types(registry, ["default", "reports"]) == {}


def test_the_default_queue_keeps_the_consumer_tag_it_always_had() -> None:
    assert consumer_tag("exec-1", "default") == "wq.executor.exec-1"
    assert consumer_tag("exec-1", "reports") == "wq.executor.exec-1.reports"
