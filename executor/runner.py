"""Running a job's handler: whatever happens becomes an ``Attempt``.

No AMQP here: ``consumer.py`` runs the jobs that ``admission.py`` lets through and hands each
attempt to ``decisions.py``.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic_core import PydanticSerializationError, to_jsonable_python

from common import (
    ErrorKind,
    JsonValue,
    SoftTimeLimitExceeded,
    TaskCancelled,
    TaskContext,
    TaskErrorInfo,
    TimeLimitExceeded,
    running_in,
)
from executor.jobs import Job, error_info


class RunInThread(Protocol):
    """Runs a sync handler off the event loop, enforcing its time limits."""

    def __call__(
        self,
        fn: Callable[[], Any],
        *,
        soft_time_limit: float | None,
        time_limit: float | None,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened when the handler ran."""

    started_at: datetime
    finished_at: datetime
    value: JsonValue = None
    error: TaskErrorInfo | None = None
    exception: BaseException | None = None


async def execute(
    job: Job, *, run_in_thread: RunInThread, context: TaskContext | None = None
) -> Attempt:
    """Run the handler; whatever it raises becomes the attempt's error.

    ``context`` is the handler's ``current_task_context()`` (cancel requests, progress).
    """
    with running_in(context or TaskContext(job.task.task_id, job.task.attempt)):
        return await _execute(job, run_in_thread=run_in_thread)


async def _execute(job: Job, *, run_in_thread: RunInThread) -> Attempt:
    started = _now()
    handler, options = job.definition.handler, job.definition.options
    try:
        if job.definition.is_async:
            # An async handler is cancelled at its first limit; it may clean up in finally.
            first_limit = options.soft_time_limit or options.time_limit
            try:
                async with asyncio.timeout(first_limit) as limit:
                    value = await handler(**job.kwargs)
            except TimeoutError:
                if not limit.expired():
                    raise  # the handler's own timeout: an ordinary, retryable error
                raise TimeLimitExceeded(first_limit or 0) from None
        else:
            value = await run_in_thread(
                lambda: handler(**job.kwargs),
                soft_time_limit=options.soft_time_limit,
                time_limit=options.time_limit,
            )
    except (SoftTimeLimitExceeded, TimeLimitExceeded) as exc:
        message = str(exc) or f"ran past its soft time limit of {options.soft_time_limit:g}s"
        error = error_info(ErrorKind.TIME_LIMIT, exc, message, tb=traceback.format_exc())
        return Attempt(started, _now(), error=error, exception=exc)
    except TaskCancelled as exc:
        error = error_info(ErrorKind.CANCELLED, exc, "the handler stopped: its task was cancelled")
        return Attempt(started, _now(), error=error, exception=exc)
    except Exception as exc:
        # The process edge for task code: whatever a handler raises is the task's outcome.
        error = error_info(ErrorKind.HANDLER_ERROR, exc, str(exc), tb=traceback.format_exc())
        return Attempt(started, _now(), error=error, exception=exc)
    try:
        jsonable: JsonValue = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        message = f"handler returned {type(value).__name__}, which is not JSON"
        error = error_info(ErrorKind.RESULT_NOT_JSON, exc, message)
        # No exception: the handler did its work; running it again would repeat its effects.
        return Attempt(started, _now(), error=error)
    return Attempt(started, _now(), value=jsonable)


def _now() -> datetime:
    return datetime.now(UTC)
