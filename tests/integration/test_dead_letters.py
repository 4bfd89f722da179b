"""Operators list, replay and purge the dead-letter queue from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

from common import AmqpSettings
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import TaskState
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_until
from tests.integration.test_cli import run_cli


async def _two_dead_tasks(
    amqp: AmqpSettings, settings: DispatcherSettings, tmp_path: Path
) -> tuple[list[UUID], list[Path]]:
    counters = [tmp_path / "calls-a", tmp_path / "calls-b"]
    async with open_dispatcher(amqp, settings) as dispatcher:
        # 4 failures use up flaky's 3 retries; the 5th call (a replay) succeeds.
        ids = [
            await dispatcher.submit("flaky", {"counter": str(c), "failures": 4}) for c in counters
        ]
        for task_id in ids:
            assert (await dispatcher.wait(task_id, timeout=30)).state is TaskState.DEAD
    return ids, counters


async def test_dead_list_shows_reasons_and_keeps_the_messages(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
    store_path: Path,
) -> None:
    processes.executor("exec-dl")
    ids, _ = await _two_dead_tasks(amqp_settings, dispatcher_settings, tmp_path)
    store = store_path
    listed = run_cli("dispatcher", "dead", "list", "--json", amqp=amqp_settings, store=store)
    assert listed.returncode == codes.OK, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    # In the order they died: their retries' jitter decides which was first.
    assert sorted(letter["task_id"] for letter in letters) == sorted(str(i) for i in ids)
    assert {letter["reason"] for letter in letters} == {"retries_exhausted"}
    assert {letter["attempts"] for letter in letters} == {4}
    assert all("flaky call 4" in letter["error"] for letter in letters)
    # Listing twice shows the same: nothing left the queue.
    again = run_cli("dispatcher", "dead", "list", amqp=amqp_settings, store=store)
    assert again.stdout.count("retries_exhausted") == 2
    assert broker.counts(amqp_settings.topology.task_dead_queue).messages == 2


async def test_dead_replay_runs_the_task_again_as_its_next_attempt(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
    store_path: Path,
) -> None:
    processes.dispatcher("dispatcher", store_path)
    processes.executor("exec-replay")
    ids, counters = await _two_dead_tasks(amqp_settings, dispatcher_settings, tmp_path)
    replayed = run_cli(
        "dispatcher", "dead", "replay", str(ids[0]), amqp=amqp_settings, store=store_path
    )
    assert replayed.returncode == codes.OK, replayed.stderr
    assert f"replayed {ids[0]}" in replayed.stdout
    store = open_store(store_path)
    wait_until(
        lambda: store.get(ids[0]).state is TaskState.SUCCEEDED,
        timeout=20,
        what="the replayed task to succeed",
    )
    record = store.get(ids[0])
    store.close()
    assert record.attempt == 5
    assert len(counters[0].read_text().split()) == 5
    # The other dead task is untouched.
    assert broker.counts(amqp_settings.topology.task_dead_queue).messages == 1
    missing = run_cli(
        "dispatcher", "dead", "replay", str(ids[0]), amqp=amqp_settings, store=store_path
    )
    assert missing.returncode == codes.NOT_FOUND


async def test_dead_purge_needs_yes_and_empties_the_queue(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
    store_path: Path,
) -> None:
    processes.executor("exec-purge")
    await _two_dead_tasks(amqp_settings, dispatcher_settings, tmp_path)
    store = store_path
    refused = run_cli("dispatcher", "dead", "purge", amqp=amqp_settings, store=store)
    assert refused.returncode == codes.USAGE
    assert broker.counts(amqp_settings.topology.task_dead_queue).messages == 2
    purged = run_cli("dispatcher", "dead", "purge", "--yes", amqp=amqp_settings, store=store)
    assert purged.returncode == codes.OK
    assert "purged 2" in purged.stdout
    assert broker.counts(amqp_settings.topology.task_dead_queue).messages == 0
    # An empty list says so, on stderr: stdout stays empty for scripts and --json.
    empty = run_cli("dispatcher", "dead", "list", "--json", amqp=amqp_settings, store=store)
    assert (empty.returncode, empty.stdout) == (codes.OK, "")
    assert f"no dead-lettered tasks in {amqp_settings.topology.task_dead_queue}" in empty.stderr


async def test_replaying_all_off_a_terminal_prints_a_summary_not_a_progress_bar(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    tmp_path: Path,
    store_path: Path,
) -> None:
    processes.executor("exec-replay-all")
    await _two_dead_tasks(amqp_settings, dispatcher_settings, tmp_path)

    replayed = run_cli(
        "dispatcher", "dead", "replay", "--all", amqp=amqp_settings, store=store_path
    )

    assert replayed.returncode == codes.OK, replayed.stderr
    assert replayed.stdout.count("replayed ") == 2
    assert "replayed 2 task(s)" in replayed.stderr
    assert "task/s" not in replayed.stderr  # no tqdm debris in a log
    assert "\r" not in replayed.stderr
