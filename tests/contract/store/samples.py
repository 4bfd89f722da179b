"""What the store contract's tests record: sample tasks and results, fixed times, and races."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from common import (
    ErrorKind,
    ExecutorEvent,
    Heartbeat,
    Outcome,
    ProgressMessage,
    ResultMessage,
    RunningTask,
    StartNotice,
    TaskErrorInfo,
    TaskMessage,
    TaskTypeInfo,
)
from dispatcher.store.protocol import SyncTaskStore

_T = TypeVar("_T")

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T1, T2, T3, T4, T5 = (T0 + timedelta(seconds=n) for n in range(1, 6))
ERROR = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ConnectionError", message="reset")


def a_task(*, submitted_at: datetime = T0, params: dict[str, Any] | None = None) -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(),
        task_type="word_count",
        params={"text": "a b", "top": 2} if params is None else params,
        submitted_at=submitted_at,
    )


def an_outcome(
    task_id: UUID,
    outcome: Outcome = Outcome.SUCCEEDED,
    *,
    attempt: int = 1,
    retry_in_s: float | None = None,
    finished_at: datetime = T3,
    executor: str = "e1",
    result: Any = None,
    redelivered: bool = False,
) -> ResultMessage:
    succeeded = outcome is Outcome.SUCCEEDED
    return ResultMessage(
        task_id=task_id,
        task_type="word_count",
        outcome=outcome,
        result=(result if result is not None else {"words": 2}) if succeeded else None,
        error=None if succeeded else ERROR,
        attempt=attempt,
        executor=executor,
        redelivered=redelivered,
        started_at=finished_at - timedelta(seconds=1),
        finished_at=finished_at,
        retry_in_s=retry_in_s,
    )


def a_retry(
    task_id: UUID, *, attempt: int, retry_in_s: float = 4.0, at: datetime = T3
) -> ResultMessage:
    return an_outcome(
        task_id, Outcome.RETRYING, attempt=attempt, retry_in_s=retry_in_s, finished_at=at
    )


def a_queued_task(store: SyncTaskStore) -> TaskMessage:
    task = a_task()
    store.add_submitted([task])
    store.mark_queued([task.task_id], T1)
    return task


def race(*calls: Callable[[], _T]) -> list[_T]:
    """Run ``calls`` on their own threads, released together by a barrier; their results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[n] = calls[n]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    return results


def a_heartbeat(
    executor: str = "host-1.42",
    *,
    at: datetime = T1,
    event: ExecutorEvent = ExecutorEvent.HEARTBEAT,
    processed: int = 0,
    running: int = 0,
) -> Heartbeat:
    return Heartbeat(
        event=event,
        executor=executor,
        host="host-1",
        pid=42,
        slots=4,
        started_at=T0,
        sent_at=at,
        task_types=[TaskTypeInfo(name="word_count", params_schema={"type": "object"})],
        current_tasks=[
            RunningTask(task_id=uuid4(), task_type="word_count", started_at=at)
            for _ in range(running)
        ],
        processed=processed,
        failed=1,
        cpu_percent=12.5,
        rss_bytes=30_000_000,
    )


def a_progress(
    task_id: UUID, percent: float, at: datetime, note: str | None = None
) -> ProgressMessage:
    return ProgressMessage(
        task_id=task_id,
        task_type="word_count",
        executor="e1",
        percent=percent,
        note=note,
        reported_at=at,
    )


def a_start(
    task_id: UUID, *, attempt: int = 1, at: datetime = T2, executor: str = "e1"
) -> StartNotice:
    return StartNotice(
        task_id=task_id,
        task_type="word_count",
        attempt=attempt,
        executor=executor,
        delivery_limit=5,
        started_at=at,
    )
