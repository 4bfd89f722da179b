"""Time limits: the handler is told at the soft limit; at the hard limit the slot is freed."""

from __future__ import annotations

from common import AmqpSettings, ErrorKind
from dispatcher.client import open_dispatcher
from dispatcher.settings import DispatcherSettings
from dispatcher.store.records import TaskState
from tests.checker import assert_exactly_one_outcome_each
from tests.integration.conftest import Processes


async def test_handler_is_told_at_its_soft_time_limit_and_may_clean_up(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
) -> None:
    processes.executor("exec-soft")
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        task_id = await dispatcher.submit("cooperative_overrun", {"seconds": 30})
        record = await dispatcher.wait(task_id, timeout=20)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == "cleaned up"


async def test_task_past_its_hard_time_limit_is_recorded_and_the_slot_freed(
    amqp_settings: AmqpSettings,
    dispatcher_settings: DispatcherSettings,
    processes: Processes,
) -> None:
    executor = processes.executor("exec-hard")  # one slot
    async with open_dispatcher(amqp_settings, dispatcher_settings) as dispatcher:
        hung = await dispatcher.submit("hang", {"seconds": 600})
        record = await dispatcher.wait(hung, timeout=20)
        # The only slot is free again although the hung thread still sleeps.
        after = await dispatcher.wait(await dispatcher.submit("echo", {"value": 1}), timeout=20)

    assert_exactly_one_outcome_each("handler hangs past its hard limit", [hung], [record])
    assert record.state is TaskState.FAILED
    assert record.error is not None
    assert record.error.kind is ErrorKind.TIME_LIMIT
    assert "1s" in record.error.message
    assert record.attempt == 1
    assert after.state is TaskState.SUCCEEDED
    assert executor.poll() is None
