"""Marking tasks queued in the background, after ``Dispatcher.submit`` has returned."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from structlog.testing import capture_logs

from common import StoreError
from dispatcher.service import Dispatcher
from dispatcher.store.records import TaskState
from dispatcher.store.threaded import ThreadedTaskStore
from tests.unit.dispatcher.fakes import NOW, FakePublisher


class FailingMarks(ThreadedTaskStore):
    """The same store, but every mark as queued fails."""

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> asyncio.Future[None]:
        failed = asyncio.get_running_loop().create_future()
        failed.set_exception(StoreError("disk full"))
        return failed


async def test_a_mark_that_fails_after_the_confirm_leaves_the_task_for_the_outbox(
    publisher: FakePublisher, store: ThreadedTaskStore
) -> None:
    failing = FailingMarks(store.sync)
    dispatcher = Dispatcher(publisher=publisher, store=failing, clock=lambda: NOW)

    with capture_logs() as logs:
        task_id = await dispatcher.submit("word_count", {"text": "a"})
        await asyncio.sleep(0)  # the mark's done callback

    assert [t.task_id for t in publisher.published] == [task_id]
    assert (await store.get(task_id)).state is TaskState.SUBMITTED
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["tasks_not_marked_queued"]
