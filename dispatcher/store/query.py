"""Listing tasks page by page: the filter, the keyset position, and its opaque cursor.

Tasks are listed newest first, ordered by ``(submitted_at, task_id)`` descending. A page ends
at a position; the next page starts strictly after it. Unlike an offset, a keyset position
stays correct while new tasks arrive: they sort before it, so no task is skipped or repeated.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from dispatcher.store.records import TaskRecord, TaskState


@dataclass(frozen=True, slots=True)
class TaskPosition:
    """Where a page of the listing ended: the last task's submission time and id."""

    submitted_at: datetime
    task_id: UUID

    @classmethod
    def of(cls, record: TaskRecord) -> TaskPosition:
        """The position of ``record`` in the listing."""
        return cls(record.submitted_at, record.task_id)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which tasks to list, newest first; every filter given must hold.

    Attributes:
        states: any of these states (all states when empty).
        task_type: only this task type.
        queue: only tasks routed to this task queue.
        executor: only tasks whose last attempt ran on this executor.
        error_text: only tasks whose error message contains this text (case-insensitive
            for ASCII letters).
        submitted_after: submitted strictly after this instant.
        submitted_before: submitted strictly before this instant.
        after: continue strictly after this position (the previous page's last task).
        limit: at most this many tasks.
    """

    states: tuple[TaskState, ...] = ()
    task_type: str | None = None
    queue: str | None = None
    executor: str | None = None
    error_text: str | None = None
    submitted_after: datetime | None = None
    submitted_before: datetime | None = None
    after: TaskPosition | None = None
    limit: int = 100


def encode_cursor(position: TaskPosition) -> str:
    """An opaque, URL-safe token for ``position``."""
    instant = position.submitted_at.astimezone(UTC).isoformat()
    raw = json.dumps([instant, str(position.task_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> TaskPosition:
    """The position ``encode_cursor`` made ``cursor`` from; ``ValueError`` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        instant, task_id = json.loads(raw)
        submitted_at = datetime.fromisoformat(instant)
        position = TaskPosition(submitted_at, UUID(task_id))
    except (binascii.Error, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise ValueError("not a cursor returned by this API") from exc
    if submitted_at.tzinfo is None:
        raise ValueError("not a cursor returned by this API")
    return position
