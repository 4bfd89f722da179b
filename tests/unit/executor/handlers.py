"""The executor unit tests' task module (one handler per behaviour) and builders of jobs,
deliveries and attempts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import uuid4

from pydantic import BaseModel, Field

from common import (
    ErrorKind,
    TaskErrorInfo,
    TaskMessage,
    TaskRegistry,
    encode,
)
from executor.decisions import (
    Decision,
    decide,
)
from executor.jobs import Delivery, Job, Rejection, prepare
from executor.runner import Attempt, execute

MAX_BODY = 10_000
SUBMITTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STARTED = datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=2)
FINISHED_AT = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

registry = TaskRegistry()


class Summary(BaseModel):
    words: int
    first: str


class Unavailable(Exception):
    """A handler's own error type that its task options declare permanent."""


@registry.task()
def word_count(text: str, top: Annotated[int, Field(ge=1, le=10)] = 3) -> dict[str, int]:
    return {"words": len(text.split()), "top": top}


@registry.task()
async def shout(text: str) -> str:
    return text.upper()


@registry.task()
def explode(message: str) -> None:
    raise LookupError(message)


@registry.task()
async def explode_async(message: str) -> None:
    raise ValueError(message)


@registry.task()
def opaque() -> object:
    return object()


@registry.task()
def summarise(text: str) -> Summary:
    return Summary(words=len(text.split()), first=text.split()[0])


@registry.task()
def finished() -> datetime:
    return FINISHED_AT


@registry.task("flaky", max_retries=3, retry_backoff=2.0, retry_backoff_max=100.0)
def flaky() -> None:
    raise ConnectionError("try again")


@registry.task("fragile", max_retries=0)
def fragile() -> None:
    raise ConnectionError("no second chance")


@registry.task("slow", soft_time_limit=1.5, time_limit=3.0)
def slow() -> str:
    return "done"


@registry.task("slow_async", time_limit=0.001)
async def slow_async() -> None:
    await asyncio.Event().wait()  # never set: only the time limit ends it


@registry.task("impatient")
async def impatient() -> None:
    raise TimeoutError("upstream did not answer")  # the handler's own timeout, not a limit


@registry.task("impatient_sync", time_limit=30)
def impatient_sync() -> None:
    raise TimeoutError("upstream did not answer")  # a socket timeout, say


@registry.task("picky", permanent=(Unavailable,))
def picky() -> None:
    raise Unavailable("gone for good")


class RecordingThread:
    """A ``run_in_thread`` stand-in that runs the function inline and records its limits."""

    def __init__(self, *, raises: BaseException | None = None) -> None:
        self.calls = 0
        self.limits: list[tuple[float | None, float | None]] = []
        self.raises = raises

    async def __call__(
        self, fn: Callable[[], Any], *, soft_time_limit: float | None, time_limit: float | None
    ) -> Any:
        self.calls += 1
        self.limits.append((soft_time_limit, time_limit))
        if self.raises is not None:
            raise self.raises
        return fn()


def a_task(
    task_type: str = "word_count", params: dict[str, Any] | None = None, *, attempt: int = 2
) -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(),
        task_type=task_type,
        params={"text": "to be or not to be"} if params is None else params,
        attempt=attempt,
        submitted_at=SUBMITTED,
    )


def a_delivery(
    body: bytes,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    task_type: str | None = None,
    redelivered: bool = False,
) -> Delivery:
    return Delivery(body, message_id, correlation_id, task_type, redelivered)


def prepare_delivery(delivery: Delivery) -> Job | Rejection:
    return prepare(delivery, registry, max_body_bytes=MAX_BODY)


def a_job(task_type: str, params: dict[str, Any] | None = None, *, attempt: int = 2) -> Job:
    prepared = prepare_delivery(
        a_delivery(encode(a_task(task_type, params or {}, attempt=attempt)))
    )
    assert isinstance(prepared, Job)
    return prepared


def a_rejection(delivery: Delivery) -> Rejection:
    prepared = prepare_delivery(delivery)
    assert isinstance(prepared, Rejection)
    return prepared


async def run(job: Job, thread: RecordingThread | None = None) -> Attempt:
    return await execute(job, run_in_thread=thread or RecordingThread())


def failed_attempt(exception: BaseException) -> Attempt:
    """An attempt whose handler raised ``exception``, as ``execute`` would describe it."""
    error = TaskErrorInfo(
        kind=ErrorKind.HANDLER_ERROR, type=type(exception).__name__, message=str(exception)
    )
    return Attempt(STARTED, FINISHED, error=error, exception=exception)


def decided(job: Job, attempt: Attempt, *, seed: int = 0) -> Decision:
    return decide(job, attempt, executor="e1", redelivered=False, rng=random.Random(seed))
