"""``dispatcher topology delete`` on the real broker, under the test's own prefix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from common import AmqpSettings, load_registry
from common import exit_codes as codes
from dispatcher.store.backends import open_store
from tests.integration.broker import Broker
from tests.integration.conftest import TEST_TASKS, Processes, wait_for_consumers
from tests.integration.test_cli import run_cli


def _declare_named_queue(broker: Broker, amqp: AmqpSettings, queue: str) -> str:
    topology = amqp.topology
    name = topology.task_queue_of(queue)
    channel = broker.channel()
    channel.queue_declare(name, durable=True, arguments=topology.task_queue_arguments())
    channel.queue_bind(name, topology.task_exchange, topology.routing_key_of(queue))
    channel.close()
    return name


def test_delete_refuses_while_consumed_lists_without_yes_and_deletes_everything_with_it(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    topology = amqp_settings.topology
    store_path = tmp_path / "tasks.sqlite3"
    # The store knows of the queue "reports" (published by a pool); "nightly" only the user.
    store = open_store(store_path)
    pool = load_registry("tests.integration.pool_tasks")
    infos = [pool.get(name).describe() for name in pool.names()]
    store.publish_task_types(infos, published_by="exec-pool", at=datetime.now(UTC))
    store.close()
    executor = processes.executor("exec-teardown", tasks=TEST_TASKS)
    wait_for_consumers(broker, topology.task_queue, 1)
    named = [_declare_named_queue(broker, amqp_settings, q) for q in ("reports", "nightly")]
    every_queue = [*topology.every_queue(), *named]
    prefix = ("--prefix", amqp_settings.prefix)

    refused = run_cli(
        "dispatcher", "topology", "delete", *prefix, "--yes", amqp=amqp_settings, store=store_path
    )

    assert refused.returncode == codes.NOT_PUBLISHED, refused.stderr
    assert f"consumers are attached to {topology.task_queue} (1)" in refused.stderr
    assert "stop the executors" in refused.stderr
    assert all(broker.exists(name) for name in every_queue)

    executor.terminate()
    assert executor.wait(timeout=30) == codes.OK
    listed = run_cli(
        "dispatcher", "topology", "delete", *prefix, amqp=amqp_settings, store=store_path
    )

    assert listed.returncode == codes.USAGE
    assert "add --yes" in listed.stderr
    expected = {f"would delete queue {name}" for name in every_queue if name != named[1]}
    assert {line.split(" (")[0] for line in listed.stdout.splitlines()} == {
        *expected,
        f"would delete exchange {topology.task_exchange}",
    }
    assert all(broker.exists(name) for name in every_queue)

    deleted = run_cli(
        "dispatcher", "topology", "delete", *prefix, "--queue", "nightly", "--yes",
        amqp=amqp_settings, store=store_path,
    )  # fmt: skip

    assert deleted.returncode == codes.OK, deleted.stderr
    assert f"deleted queue {named[1]}" in deleted.stdout
    assert not any(broker.exists(name) for name in every_queue)
    assert not broker.exists(topology.task_exchange, exchange=True)
    again = run_cli(
        "dispatcher", "topology", "delete", *prefix, "--yes", amqp=amqp_settings, store=store_path
    )
    assert again.returncode == codes.OK
    assert "nothing to delete" in again.stdout


def test_delete_finds_the_named_queues_of_a_task_module(
    amqp_settings: AmqpSettings, broker: Broker, tmp_path: Path
) -> None:
    channel = broker.channel()
    channel.exchange_declare(amqp_settings.topology.task_exchange, "direct", durable=True)
    channel.close()
    reports = _declare_named_queue(broker, amqp_settings, "reports")

    store = tmp_path / "none.sqlite3"

    listed = run_cli(
        "dispatcher", "topology", "delete", "--prefix", amqp_settings.prefix,
        "--tasks", "tests.integration.pool_tasks", amqp=amqp_settings, store=store,
    )  # fmt: skip

    assert listed.returncode == codes.USAGE
    assert f"would delete queue {reports} (0 message(s))" in listed.stdout.splitlines()
    assert not store.exists()  # a missing store is not created
    assert broker.exists(reports)
