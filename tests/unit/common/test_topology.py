"""Broker names and queue arguments all derive from one prefix."""

from __future__ import annotations

import pytest

from common import Topology
from common.topology import DEFAULT_PREFIX, QueueType, dead_letter_queue


def test_default_names_use_the_wq_prefix() -> None:
    topology = Topology()

    assert DEFAULT_PREFIX == "wq"
    assert topology.task_exchange == "wq.tasks"
    assert topology.task_queue == "wq.tasks"
    assert topology.results_queue == "wq.results"
    assert topology.task_dead_queue == "wq.tasks.dead"
    assert topology.results_dead_queue == "wq.results.dead"


@pytest.mark.parametrize("prefix", ["test.abc123", "staging"])
def test_every_name_derives_from_the_prefix(prefix: str) -> None:
    topology = Topology(prefix=prefix)

    names = [
        topology.task_exchange,
        topology.task_queue,
        topology.results_queue,
        topology.task_dead_queue,
        topology.results_dead_queue,
    ]
    assert all(name.startswith(f"{prefix}.") for name in names)
    assert topology.results_dead_queue == f"{prefix}.results.dead"


def test_dead_letter_queue_appends_dead() -> None:
    assert dead_letter_queue("x.tasks") == "x.tasks.dead"


def test_task_queue_dead_letters_to_its_dead_queue_via_the_default_exchange() -> None:
    arguments = Topology(prefix="p").task_queue_arguments()

    assert arguments["x-dead-letter-exchange"] == ""
    assert arguments["x-dead-letter-routing-key"] == "p.tasks.dead"


def test_results_queue_dead_letters_to_its_dead_queue_via_the_default_exchange() -> None:
    arguments = Topology(prefix="p").results_queue_arguments()

    assert arguments["x-dead-letter-exchange"] == ""
    assert arguments["x-dead-letter-routing-key"] == "p.results.dead"


def test_queues_are_classic() -> None:
    topology = Topology()

    assert topology.task_queue_arguments()["x-queue-type"] == "classic"
    assert topology.results_queue_arguments()["x-queue-type"] == "classic"


def test_queue_arguments_are_fresh_copies() -> None:
    # Callers hand the dict to a client library that may mutate it.
    topology = Topology()
    topology.task_queue_arguments()["x-dead-letter-routing-key"] = "elsewhere"

    assert topology.task_queue_arguments()["x-dead-letter-routing-key"] == "wq.tasks.dead"


def test_topologies_with_the_same_prefix_are_equal() -> None:
    assert Topology(prefix="a") == Topology(prefix="a")
    assert Topology(prefix="a") != Topology(prefix="b")


def test_quorum_queues_carry_a_delivery_limit_one_above_ours_and_safe_dead_lettering() -> None:
    topology = Topology(prefix="wq", queue_type="quorum", delivery_limit=4)

    arguments = topology.task_queue_arguments()

    assert arguments["x-queue-type"] == "quorum"
    assert arguments["x-delivery-limit"] == 5
    assert arguments["x-dead-letter-strategy"] == "at-least-once"
    assert arguments["x-overflow"] == "reject-publish"
    assert arguments["x-dead-letter-routing-key"] == "wq.tasks.dead"
    assert topology.results_queue_arguments()["x-queue-type"] == "quorum"
    assert topology.dead_queue_arguments() == {"x-queue-type": "quorum"}


def test_classic_queues_have_no_quorum_arguments() -> None:
    arguments = Topology(prefix="wq").task_queue_arguments()

    assert arguments["x-queue-type"] == "classic"
    assert "x-delivery-limit" not in arguments
    assert "x-overflow" not in arguments


def test_cancel_notices_live_in_a_bounded_stream_declared_with_the_rest() -> None:
    topology = Topology(prefix="p", queue_type="quorum")

    arguments = topology.cancel_stream_arguments()

    assert topology.cancel_stream == "p.cancellations"
    assert arguments["x-queue-type"] == "stream"
    assert arguments["x-max-age"] == "7D"
    assert (topology.cancel_stream, arguments) in topology.queue_declarations()


def test_progress_goes_to_a_bounded_queue_of_the_deployments_type() -> None:
    topology = Topology(prefix="p", queue_type="quorum")

    arguments = topology.progress_queue_arguments()

    assert topology.progress_queue == "p.progress"
    assert arguments == {"x-queue-type": "quorum", "x-max-length": 10_000}
    assert (topology.progress_queue, arguments) in topology.queue_declarations()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_every_queue_but_retries_follows_the_queue_type(queue_type: QueueType) -> None:
    # A classic queue whose node is down cannot be declared, and every client re-declares
    # the whole topology on reconnect: in a cluster, one such queue stops every failover.
    topology = Topology(prefix="p", queue_type=queue_type)

    types = {name: arguments["x-queue-type"] for name, arguments in topology.queue_declarations()}

    assert types.pop(topology.cancel_stream) == "stream"
    assert set(types.values()) == {queue_type}


def test_a_classic_task_queue_gets_its_priority_levels() -> None:
    topology = Topology(max_priority=10)

    assert topology.task_queue_arguments()["x-max-priority"] == 10
    assert "x-max-priority" not in topology.results_queue_arguments()
    assert "x-max-priority" not in topology.dead_queue_arguments()


def test_max_priority_zero_declares_no_priority_queue() -> None:
    assert "x-max-priority" not in Topology(max_priority=0).task_queue_arguments()


def test_a_quorum_task_queue_never_gets_x_max_priority() -> None:
    topology = Topology(queue_type="quorum", max_priority=10)

    assert "x-max-priority" not in topology.task_queue_arguments()


def test_every_queue_names_each_declared_queue_once() -> None:
    topology = Topology(prefix="p")

    names = topology.every_queue()

    assert names == [name for name, _ in topology.queue_declarations()]
    assert len(names) == len(set(names))
    assert not any(".retry." in name for name in names)  # retries wait in the store
