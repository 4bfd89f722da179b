"""The PostgreSQL store in service: replicas, the command line, lost connections and secrets.

What every store promises is in tests/contract/store/; this module covers what only a store
on a server has: more than one ``dispatcher serve`` on one database, a connection the server
drops, and a URL whose password must never show.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import SecretStr

from common import (
    AmqpSettings,
    ErrorKind,
    Outcome,
    ResultMessage,
    StoreError,
    TaskErrorInfo,
    TaskMessage,
    TaskNotFound,
)
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.requests import TaskRequest
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.postgres.connection import PostgresDialect
from dispatcher.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_async, wait_for_consumers, wait_until
from tests.integration.test_cli import run_cli
from tests.integration.test_dead_letters import _two_dead_tasks
from tests.postgres import IsolatedSchema, with_params

T0 = datetime(2026, 1, 2, tzinfo=UTC)


async def test_two_dispatcher_replicas_record_every_outcome_exactly_once(
    amqp_settings: AmqpSettings,
    processes: Processes,
    broker: Broker,
    postgres_schema: IsolatedSchema,
) -> None:
    # Both start on an empty schema at once: they race to migrate it, too.
    for name in ("dispatcher-a", "dispatcher-b"):
        processes.dispatcher(name, postgres_schema.url)
    processes.executor("exec-pg", concurrency=4)
    wait_for_consumers(broker, amqp_settings.topology.results_queue, 2)
    settings = DispatcherSettings(store=SecretStr(postgres_schema.url))

    async with open_dispatcher(amqp_settings, settings, consume_results=False) as dispatcher:
        ids = await dispatcher.submit_many([TaskRequest("echo", {"value": n}) for n in range(100)])

        async def all_final() -> bool:
            records = await dispatcher.get_many(ids)
            return sum(r.state.is_final for r in records) == len(ids)

        await wait_for_async(all_final, timeout=60, what="an outcome for each of 100 tasks")
        records = await dispatcher.get_many(ids)

    assert_exactly_one_outcome_each("two dispatcher replicas on PostgreSQL", ids, records, faults=0)
    by_id = {r.task_id: r for r in records}
    assert [by_id[i].result for i in ids] == list(range(100))
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    assert sum(r.duplicate_results for r in records) == 0
    # The results queue fed both replicas, so both wrote to the shared store.
    for name in ("dispatcher-a", "dispatcher-b"):
        assert '"result_recorded"' in processes.log(name), f"{name} recorded no result"
    assert broker.counts(amqp_settings.topology.results_queue).messages == 0


def test_status_reads_a_task_from_postgresql(postgres_schema: IsolatedSchema) -> None:
    task = TaskMessage(task_id=uuid4(), task_type="echo", submitted_at=T0)
    store = open_store(postgres_schema.url)
    store.add_submitted([task])
    store.close()

    found = run_cli(
        "dispatcher", "status", str(task.task_id), "--json", amqp=None, store=postgres_schema.url
    )
    missing = run_cli("dispatcher", "status", str(uuid4()), amqp=None, store=postgres_schema.url)

    assert found.returncode == codes.OK, found.stderr
    assert json.loads(found.stdout)["state"] == "submitted"
    assert missing.returncode == codes.NOT_FOUND


async def test_dead_replay_records_the_replay_in_postgresql(
    amqp_settings: AmqpSettings,
    processes: Processes,
    postgres_schema: IsolatedSchema,
    tmp_path: Path,
) -> None:
    processes.dispatcher("dispatcher", postgres_schema.url)
    processes.executor("exec-replay")
    settings = DispatcherSettings(store=SecretStr(postgres_schema.url))
    ids, _ = await _two_dead_tasks(amqp_settings, settings, tmp_path)

    replayed = run_cli(
        "dispatcher", "dead", "replay", str(ids[0]), amqp=amqp_settings, store=postgres_schema.url
    )

    assert replayed.returncode == codes.OK, replayed.stderr
    store = open_store(postgres_schema.url)
    try:
        wait_until(
            lambda: store.get(ids[0]).state is TaskState.SUCCEEDED,
            timeout=20,
            what="the replayed task to succeed",
        )
        assert store.get(ids[0]).attempt == 5
        assert store.get(ids[1]).state is TaskState.DEAD
    finally:
        store.close()


def test_store_reconnects_after_the_server_drops_its_connection(
    postgres_schema: IsolatedSchema,
) -> None:
    store = open_store(postgres_schema.url)
    task = TaskMessage(task_id=uuid4(), task_type="echo", submitted_at=T0)
    store.add_submitted([task])
    with postgres_schema.connect(admin=True) as admin:
        # What a server restart or failover does to every open connection.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (postgres_schema.name,),
        )

    with pytest.raises(StoreError):
        store.get(task.task_id)  # the call that finds the connection gone fails ...
    record = store.get(task.task_id)  # ... and the next one reconnects
    store.close()

    assert record.state is TaskState.SUBMITTED


def test_statements_are_limited_to_30_seconds_unless_the_url_says_otherwise(
    postgres_schema: IsolatedSchema,
) -> None:
    default = PostgresDialect(postgres_schema.url)
    chosen = PostgresDialect(postgres_schema.url_with_options("statement_timeout=5min"))
    try:
        assert default.read("SHOW statement_timeout", {}) == [{"statement_timeout": "30s"}]
        assert chosen.read("SHOW statement_timeout", {}) == [{"statement_timeout": "5min"}]
    finally:
        default.close()
        chosen.close()


def test_a_statement_stuck_behind_a_lock_fails_as_a_store_error(
    postgres_schema: IsolatedSchema,
) -> None:
    store = open_store(postgres_schema.url_with_options("statement_timeout=1s"))
    try:
        with postgres_schema.connect() as holder, holder.transaction():
            # A forgotten session holding the table: the store must not wait for it forever.
            holder.execute("LOCK TABLE wq_tasks IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreError, match="statement timeout"):
                store.get(uuid4())
        with pytest.raises(TaskNotFound):
            store.get(uuid4())  # the lock is gone, and the store works again
    finally:
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://wq:hunter2@127.0.0.1:1/test",  # nothing listens
        "postgresql://wq:hunter2@127.0.0.1:5432/test?no_such_option=1",  # libpq quotes it
        "postgresql://wq:hunter2@[::1/test",  # unparsable
        "postgresql://wq:hun%74er2@127.0.0.1:1/test",  # percent-encoded
    ],
)
def test_store_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)

    assert "hunter2" not in str(caught.value)
    assert "hun%74er2" not in str(caught.value)


def test_status_on_an_unreachable_server_fails_without_the_password(tmp_path: Path) -> None:
    url = with_params("postgresql://wq:hunter2@127.0.0.1:1/test", connect_timeout="2")

    status = run_cli("dispatcher", "status", str(uuid4()), amqp=None, store=url)

    assert status.returncode == codes.BROKER_UNAVAILABLE  # 69: the store is unreachable
    assert "wq:***@127.0.0.1:1" in status.stderr
    assert "hunter2" not in status.stderr + status.stdout


def test_each_migration_is_recorded_once(postgres_schema: IsolatedSchema) -> None:
    for _ in range(3):
        open_store(postgres_schema.url).close()

    with postgres_schema.connect() as db:
        rows = db.execute("SELECT version FROM wq_schema_version ORDER BY version").fetchall()
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (postgres_schema.name,),
        ).fetchall()

    assert [version for (version,) in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert {name for (name,) in tables} == {
        "wq_tasks",
        "wq_schema_version",
        "wq_schedules",
        "wq_executors",
        "wq_task_types",
        "wq_attempts",
    }


def test_a_version_one_schema_is_migrated_and_keeps_its_rows(
    postgres_schema: IsolatedSchema,
) -> None:
    task_id = uuid4()
    with postgres_schema.connect() as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute(
            "CREATE TABLE wq_schema_version (version integer PRIMARY KEY, applied_at"
            " timestamptz NOT NULL DEFAULT now())"
        )
        db.execute("INSERT INTO wq_schema_version (version) VALUES (1)")
        db.execute(
            "INSERT INTO wq_tasks (task_id, task_type, params, state, submitted_at)"
            " VALUES (%s, 'echo', '{}', 'queued', %s)",
            (task_id, T0),
        )

    store = open_store(postgres_schema.url)
    try:
        record = store.get(task_id)
    finally:
        store.close()

    assert record.state is TaskState.QUEUED
    assert (record.priority, record.eta, record.cancel_requested_at, record.progress) == (
        0,
        None,
        None,
        None,
    )


def test_a_result_with_nul_characters_is_recorded_with_replacements(
    postgres_schema: IsolatedSchema,
) -> None:
    # PostgreSQL text cannot hold NUL; refusing the result would requeue it forever.
    store = open_store(postgres_schema.url)
    task_id = uuid4()
    error = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="E", message="bad\x00byte")
    result = ResultMessage(
        task_id=task_id,
        task_type="echo",
        outcome=Outcome.FAILED,
        error=error,
        executor="exec\x00",
        started_at=T0,
        finished_at=T0,
    )
    try:
        assert store.record_result(result) is True
        record = store.get(task_id)
        with pytest.raises(StoreError):
            store.add_submitted(
                [
                    TaskMessage(
                        task_id=uuid4(), task_type="echo", params={"a": "\x00"}, submitted_at=T0
                    )
                ]
            )
    finally:
        store.close()

    assert record.executor == "exec\ufffd"
    assert record.error is not None
    assert record.error.message == "bad\ufffdbyte"
