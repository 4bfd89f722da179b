"""Marking confirmed tasks ``queued`` in the background, after their submit has returned.

Each mark is ordered before any later store call when it is made (``TaskStore.mark_queued``),
so no later call sees the task unmarked; a mark that fails is logged, and the outbox publishes
its tasks again.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import partial
from uuid import UUID

from common.logging import get_logger
from dispatcher.store.protocol import TaskStore

log = get_logger(__name__)


class QueuedMarks:
    """Marks as ``queued`` written in the background; each kept referenced until it is done."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._marking: set[asyncio.Future[None]] = set()

    def add(self, task_ids: list[UUID], at: datetime) -> None:
        """Start marking ``task_ids`` queued at ``at``; a failure is logged, not raised."""
        marking = asyncio.ensure_future(self._store.mark_queued(task_ids, at))
        self._marking.add(marking)
        marking.add_done_callback(partial(self._marked, len(task_ids)))

    def _marked(self, count: int, marking: asyncio.Future[None]) -> None:
        self._marking.discard(marking)
        if not marking.cancelled() and (error := marking.exception()) is not None:
            # They stay submitted; the outbox publishes them again.
            log.warning("tasks_not_marked_queued", count=count, error=str(error))
