"""The broker restarts, drops connections, goes silent or raises an alarm mid-run.

Each test submits a batch, injects its fault while the batch runs, and counts every task id
with the one checker: exactly one recorded outcome each, nothing lost, nothing unexpected.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest

from common import AmqpSettings, PublishRejected
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.faults.private_broker import PrivateBroker
from tests.faults.proxy import TcpProxy
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until

BATCH = 200
# 200 tasks of 150 ms on 4 slots take about 8 s: long enough for a fault to land mid-run.
TASK = TaskRequest("sleep_ms", {"ms": 150})


def _finished(store: SyncTaskStore, ids: list[UUID]) -> int:
    return sum(record.state.is_final for record in store.get_many(ids))


async def _submit(amqp: AmqpSettings, store: Path, requests: list[TaskRequest]) -> list[UUID]:
    async with open_dispatcher(
        amqp, DispatcherSettings(store=store), consume_results=False
    ) as dispatcher:
        return await dispatcher.submit_many(requests)


async def _batch_through_fault(
    scenario: str,
    amqp: AmqpSettings,
    processes: Processes,
    tmp_path: Path,
    inject: Callable[[], None],
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    processes.dispatcher("dispatcher", store_path)
    processes.executor("exec-a", concurrency=2)
    processes.executor("exec-b", concurrency=2)
    watcher = Broker(amqp.url.get_secret_value(), scenario)
    wait_for_consumers(watcher, amqp.topology.task_queue, 2)
    wait_for_consumers(watcher, amqp.topology.results_queue, 1)
    watcher.close()
    ids = await _submit(amqp, store_path, [TASK] * BATCH)
    store = open_store(store_path)
    wait_until(lambda: _finished(store, ids) >= BATCH // 10, timeout=60, what="a tenth done")
    inject()
    assert _finished(store, ids) < BATCH, "the fault came too late to hit the run"
    wait_until(lambda: _finished(store, ids) == BATCH, timeout=90, what="every outcome")
    records = store.get_many(ids)
    store.close()
    tally = assert_exactly_one_outcome_each(scenario, ids, records)
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    assert tally.lost == 0


async def test_broker_restart_mid_run_loses_nothing(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    def restart() -> None:
        private_broker.stop_app()
        private_broker.start_app()

    await _batch_through_fault(
        "broker stop_app/start_app", fault_amqp_settings, fault_processes, tmp_path, restart
    )
    for name in ("exec-a", "exec-b", "dispatcher"):
        assert '"broker_reconnected"' in fault_processes.log(name), name
        assert '"broker_connection_lost"' in fault_processes.log(name), name


async def test_all_connections_closed_mid_run_loses_nothing(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    await _batch_through_fault(
        "rabbitmqctl close_all_connections",
        fault_amqp_settings,
        fault_processes,
        tmp_path,
        lambda: private_broker.close_all_connections("fault test"),
    )
    assert '"broker_connection_lost"' in fault_processes.log("exec-a")


async def test_silent_network_is_detected_by_heartbeats_and_survived(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    proxied_amqp_settings: AmqpSettings,
    tcp_proxy: TcpProxy,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    fault_processes.dispatcher("dispatcher", store_path)
    fault_processes.executor("exec-direct")
    # This executor reaches the broker through the proxy, with a 1 s heartbeat.
    silent = Processes(proxied_amqp_settings, tmp_path)
    silent.executor("exec-proxied", WQ_AMQP_HEARTBEAT="1")
    try:
        watcher = Broker(private_broker.url, "blackhole")
        wait_for_consumers(watcher, fault_amqp_settings.topology.task_queue, 2)
        watcher.close()
        ids = await _submit(fault_amqp_settings, store_path, [TASK] * BATCH)
        store = open_store(store_path)
        wait_until(lambda: _finished(store, ids) >= BATCH // 10, timeout=60, what="a tenth done")
        tcp_proxy.blackhole()
        wait_until(
            lambda: '"broker_connection_lost"' in silent.log("exec-proxied"),
            timeout=30,
            what="the proxied executor to notice the silence",
        )
        tcp_proxy.restore()
        wait_until(lambda: _finished(store, ids) == BATCH, timeout=90, what="every outcome")
        wait_until(
            lambda: '"broker_reconnected"' in silent.log("exec-proxied"),
            timeout=60,
            what="the proxied executor to reconnect",
        )
        records = store.get_many(ids)
        store.close()
    finally:
        silent.kill_all()
    assert_exactly_one_outcome_each("network blackhole (heartbeat detection)", ids, records)
    assert {r.state for r in records} == {TaskState.SUCCEEDED}


async def test_network_cut_mid_run_loses_nothing(
    proxied_amqp_settings: AmqpSettings,
    tcp_proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    # Every process reaches the broker through the proxy; cut() resets every socket at once,
    # as a failing switch or a NAT timeout would.
    through_proxy = Processes(proxied_amqp_settings, tmp_path)
    try:
        await _batch_through_fault(
            "network cut (connections reset)",
            proxied_amqp_settings,
            through_proxy,
            tmp_path,
            tcp_proxy.cut,
        )
        for name in ("exec-a", "exec-b", "dispatcher"):
            wait_until(
                lambda name=name: '"broker_reconnected"' in through_proxy.log(name),  # type: ignore[misc]
                timeout=30,
                what=f"{name} to reconnect",
            )
    finally:
        through_proxy.kill_all()


async def test_memory_alarm_blocks_publishing_clearly_and_loses_nothing(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    settings = DispatcherSettings(store=store_path)
    amqp = fault_amqp_settings.model_copy(update={"confirm_timeout": 3})
    fault_processes.dispatcher("dispatcher", store_path)
    fault_processes.executor("exec-a", concurrency=2)
    async with open_dispatcher(amqp, settings, consume_results=False) as dispatcher:
        before = await dispatcher.submit_many(
            [TaskRequest("echo", {"value": n}) for n in range(20)]
        )
        private_broker.set_memory_alarm()
        try:
            # The broker stops reading from publishers: the submission fails with a clear
            # error instead of hanging, and the tasks stay recorded as submitted.
            with pytest.raises(PublishRejected) as blocked:
                await dispatcher.submit_many([TaskRequest("echo", {"value": n}) for n in range(20)])
            assert blocked.value.reason == "timeout"
        finally:
            private_broker.clear_memory_alarm()
    with sqlite3.connect(store_path) as db:
        ids = [UUID(row[0]) for row in db.execute("SELECT task_id FROM tasks")]
    assert len(ids) == 40
    assert set(before) <= set(ids)
    # An unconfirmed publish may still land once the alarm clears (the client had written it);
    # whatever is still unconfirmed, the outbox publishes again (serve does so every sweep).
    async with open_dispatcher(amqp, settings, consume_results=False) as dispatcher:
        await dispatcher.republish_unconfirmed(older_than_s=0)
    store = open_store(store_path)
    wait_until(lambda: _finished(store, ids) == len(ids), timeout=60, what="every outcome")
    records = store.get_many(ids)
    store.close()
    assert_exactly_one_outcome_each("memory alarm while publishing", ids, records)


async def test_retry_waiting_in_the_store_survives_a_broker_restart(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "tasks.sqlite3"
    counter = tmp_path / "calls"
    fault_processes.dispatcher("dispatcher", store_path)
    fault_processes.executor("exec-a")
    ids = await _submit(
        fault_amqp_settings,
        store_path,
        [TaskRequest("flaky_slow_backoff", {"counter": str(counter), "failures": 1})],
    )
    store = open_store(store_path)
    wait_until(
        lambda: store.get(ids[0]).state is TaskState.RETRYING,
        timeout=30,
        what="the first attempt to fail and its retry to be recorded",
    )
    # The retry waits in the store: the restart (and a release due while the broker is down)
    # cannot lose it, where a copy expiring out of a classic delay queue could be.
    private_broker.stop_app()
    private_broker.start_app()
    wait_until(lambda: _finished(store, ids) == 1, timeout=90, what="the retried outcome")
    record = store.get(ids[0])
    store.close()
    assert_exactly_one_outcome_each("broker restart with a retry waiting", ids, [record])
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 2


def _close_connections_named(broker: PrivateBroker, pattern: str) -> int:
    """Close the connections whose client-provided name matches ``pattern``."""
    listed = broker.rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    ).stdout
    closed = 0
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        if re.search(pattern, properties):
            broker.rabbitmqctl("close_connection", pid.strip(), "fault test: publisher only")
            closed += 1
    return closed


async def test_losing_only_the_publishing_connection_stalls_no_slot(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    # Executors publish on their own connection. While it reconnects, deliveries whose result
    # cannot be published must go back to the queue, not sit unacked on the live consuming
    # channel holding every slot (which stalled all executors for good).
    closed: list[int] = []

    def close_publishers() -> None:
        closed.append(_close_connections_named(private_broker, r"\S+ executor \S+ publish"))

    await _batch_through_fault(
        "publishing connection lost, consuming one kept",
        fault_amqp_settings,
        fault_processes,
        tmp_path,
        close_publishers,
    )
    assert closed == [2]  # one per executor


async def test_broker_crashes_dead_letter_no_task_that_never_started(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    # After an unclean stop a classic queue flags every recovered message redelivered, started
    # or not. Counting that flag, three crashes with a limit of 2 would dead-letter the whole
    # backlog; only starts count, so every task runs and succeeds.
    crashes, limit = 3, 2
    private_broker.settle_streams()  # before anything declares its stream
    store_path = tmp_path / "tasks.sqlite3"
    fault_processes.dispatcher("dispatcher", store_path, WQ_AMQP_DELIVERY_LIMIT=str(limit))
    fault_processes.executor("exec-a", concurrency=2, WQ_AMQP_DELIVERY_LIMIT=str(limit))
    watcher = Broker(fault_amqp_settings.url.get_secret_value(), "crashes")
    wait_for_consumers(watcher, fault_amqp_settings.topology.task_queue, 1)
    wait_for_consumers(watcher, fault_amqp_settings.topology.results_queue, 1)
    watcher.close()
    # 120 tasks of 150 ms on 2 slots: about 9 s of backlog, most of it waiting at each crash.
    ids = await _submit(fault_amqp_settings, store_path, [TASK] * 120)
    store = open_store(store_path)
    for crash in range(crashes):
        done = _finished(store, ids)
        wait_until(lambda: _finished(store, ids) > done, timeout=60, what="progress")  # noqa: B023
        assert _finished(store, ids) < len(ids), f"crash {crash + 1} came too late"
        private_broker.crash()
    wait_until(lambda: _finished(store, ids) == len(ids), timeout=120, what="every outcome")
    records = store.get_many(ids)
    store.close()
    tally = assert_exactly_one_outcome_each(f"{crashes} broker crashes", ids, records)
    assert tally.lost == 0
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    watcher = Broker(fault_amqp_settings.url.get_secret_value(), "crashes")
    dead = []
    while (got := watcher.get(fault_amqp_settings.topology.task_dead_queue)) is not None:
        dead.append(
            (
                got[0].message_id,
                got[0].headers.get("x-wq-dead-reason"),
                got[0].headers.get("x-wq-error"),
                got[0].headers.get("x-death"),
            )
        )
    watcher.close()
    runs = {str(r.task_id): (r.runs, r.redelivered, r.duplicate_results) for r in records}
    assert dead == [], [(d, runs.get(d[0])) for d in dead]


@pytest.mark.parametrize("service", ["executor", "dispatcher"])
async def test_sigterm_while_the_broker_is_away_ends_the_process_within_its_grace(
    service: str,
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
    tmp_path: Path,
) -> None:
    # In compose, a process that ignores SIGTERM while it reconnects is killed (137) after
    # the grace period; it must stop on its own, with its documented exit code.
    grace = 3.0
    if service == "executor":
        process = fault_processes.executor("exec-a", WQ_EXECUTOR_SHUTDOWN_GRACE=str(grace))
        queue = fault_amqp_settings.topology.task_queue
    else:
        process = fault_processes.dispatcher("dispatcher", tmp_path / "tasks.sqlite3")
        queue = fault_amqp_settings.topology.results_queue
    watcher = Broker(fault_amqp_settings.url.get_secret_value(), "sigterm in outage")
    wait_for_consumers(watcher, queue, 1)
    watcher.close()
    private_broker.stop_app()
    try:
        wait_until(
            lambda: '"broker_connection_lost"' in fault_processes.log(process_name(service)),
            timeout=30,
            what="the connection loss to be noticed",
        )
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = process.wait(timeout=grace + 20)
        stopped_after = time.monotonic() - started
    finally:
        private_broker.start_app()
    assert code == 0, fault_processes.log(process_name(service))
    assert stopped_after < grace + 10
    assert "Traceback" not in fault_processes.log(process_name(service))


def process_name(service: str) -> str:
    return "exec-a" if service == "executor" else "dispatcher"


async def test_an_executor_started_during_a_memory_alarm_waits_for_it_to_clear(
    private_broker: PrivateBroker,
    fault_amqp_settings: AmqpSettings,
    fault_processes: Processes,
) -> None:
    # It used to exit 69 after the confirm timeout ("nothing read for 30s"), so an executor
    # restarted during a long alarm crash-looped.
    private_broker.set_memory_alarm()
    try:
        process = fault_processes.executor("exec-a", WQ_AMQP_CONFIRM_TIMEOUT="1")
        wait_until(
            lambda: fault_processes.log("exec-a").count('"cancellations_waiting"') >= 2,
            timeout=60,
            what="the executor to say it waits for the alarm, twice",
        )
        assert process.poll() is None, fault_processes.log("exec-a")
    finally:
        private_broker.clear_memory_alarm()
    watcher = Broker(fault_amqp_settings.url.get_secret_value(), "alarm at start")
    wait_for_consumers(watcher, fault_amqp_settings.topology.task_queue, 1, timeout=60)
    watcher.close()
    assert process.poll() is None
