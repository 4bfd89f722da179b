"""Cancel and progress against the real broker: skipped before start, stopped while running."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from common import AmqpSettings, ErrorKind, TaskNotFound
from common import exit_codes as codes
from dispatcher.client import open_dispatcher
from dispatcher.requests import CancelOutcome
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from dispatcher.sync_client import SyncDispatcher
from tests.integration.broker import Broker
from tests.integration.conftest import (
    Processes,
    wait_for_async,
    wait_for_consumers,
    wait_until_async,
)


async def test_a_task_cancelled_before_any_executor_ran_never_runs(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    trace = tmp_path / "ran"
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("sleep_ms", {"ms": 0, "marker": str(trace)})
        report = await dispatcher.cancel(task_id)
        assert report.outcome is CancelOutcome.REQUESTED
        assert report.record.cancel_requested_at is not None

        processes.executor("exec-late")
        record = await dispatcher.wait(task_id, timeout=30)
        # The executor goes on serving: a task submitted after the cancel runs.
        after = await dispatcher.submit("echo", {"value": 1})
        assert (await dispatcher.wait(after, timeout=20)).state is TaskState.SUCCEEDED

    assert not trace.exists(), "the cancelled task's handler ran"
    assert record.state is TaskState.CANCELLED
    assert record.executor == "exec-late"
    assert record.error is not None
    assert record.error.kind is ErrorKind.CANCELLED
    assert broker.counts(amqp_settings.topology.task_queue).messages == 0
    log = processes.log("exec-late")
    assert '"cancellations_caught_up"' in log
    assert '"task_skipped_cancelled"' in log


async def test_an_executor_that_was_offline_during_the_cancel_still_skips_the_task(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    broker: Broker,
    tmp_path: Path,
) -> None:
    trace = tmp_path / "ran"
    first = processes.executor("exec-1")
    wait_for_consumers(broker, amqp_settings.topology.task_queue, 1)
    first.terminate()
    assert first.wait(timeout=20) == codes.OK
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        cancelled = await dispatcher.submit("sleep_ms", {"ms": 0, "marker": str(trace)})
        await dispatcher.cancel(cancelled)
        other = await dispatcher.submit("echo", {"value": "runs"})

        processes.executor("exec-2")
        record = await dispatcher.wait(cancelled, timeout=30)
        other_record = await dispatcher.wait(other, timeout=20)

    assert not trace.exists(), "the cancelled task's handler ran"
    assert record.state is TaskState.CANCELLED
    assert other_record.state is TaskState.SUCCEEDED


async def test_a_running_task_that_honours_the_cancel_ends_cancelled_with_its_progress(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    processes.executor("exec-run")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit(
            "await_cancel", {"marker": str(started), "percent": 40, "timeout": 20}
        )
        await wait_until_async(started.exists, timeout=20, what="the task to start")

        async def progress_recorded() -> bool:
            return (await dispatcher.get(task_id)).progress == 40

        async def shown_running() -> bool:
            return (await dispatcher.get(task_id)).state is TaskState.RUNNING

        await wait_for_async(progress_recorded, timeout=20, what="the progress to be recorded")
        await wait_for_async(shown_running, timeout=20, what="the task to be shown running")
        running = await dispatcher.get(task_id)
        report = await dispatcher.cancel(task_id)
        record = await dispatcher.wait(task_id, timeout=20)

    assert running.progress_note == "waiting for a cancel"
    assert running.progress_at is not None
    assert running.executor == "exec-run"
    assert running.started_at is not None
    assert report.outcome is CancelOutcome.REQUESTED
    assert record.state is TaskState.CANCELLED
    assert record.error is not None
    assert record.error.kind is ErrorKind.CANCELLED
    assert record.progress == 40  # the last report stays on the record
    assert '"task_cancelled"' in processes.log("exec-run")


async def test_a_running_task_that_ignores_the_cancel_keeps_its_outcome(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    processes.executor("exec-ignore")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit(
            "await_cancel", {"marker": str(started), "honour": False, "timeout": 20}
        )
        await wait_until_async(started.exists, timeout=20, what="the task to start")
        await dispatcher.cancel(task_id)
        record = await dispatcher.wait(task_id, timeout=20)

    assert record.state is TaskState.SUCCEEDED
    assert record.result == "cancel ignored"  # it was told, and chose to finish
    assert record.cancel_requested_at is not None


async def test_cancelling_a_finished_task_changes_nothing(
    amqp_settings: AmqpSettings, dispatcher_settings: DispatcherSettings, processes: Processes
) -> None:
    processes.executor("exec-done")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("echo", {"value": "done"})
        before = await dispatcher.wait(task_id, timeout=20)
        report = await dispatcher.cancel(task_id)
        after = await dispatcher.get(task_id)

    assert report.outcome is CancelOutcome.ALREADY_FINAL
    assert before.state is TaskState.SUCCEEDED
    assert after == before
    assert after.cancel_requested_at is None


def test_the_sync_client_cancels_as_the_async_one_does(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    store_path: Path,
    processes: Processes,
    tmp_path: Path,
) -> None:
    trace = tmp_path / "ran"
    processes.dispatcher("dispatcher", store_path)
    with SyncDispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = dispatcher.submit("sleep_ms", {"ms": 0, "marker": str(trace)})
        report = dispatcher.cancel(task_id)
        assert report.outcome is CancelOutcome.REQUESTED

        processes.executor("exec-sync")
        record = dispatcher.wait(task_id, timeout=30)
        again = dispatcher.cancel(task_id)
        with pytest.raises(TaskNotFound):
            dispatcher.cancel(uuid4())

    assert not trace.exists(), "the cancelled task's handler ran"
    assert record.state is TaskState.CANCELLED
    assert again.outcome is CancelOutcome.ALREADY_FINAL
