"""The runner's decisions for one delivery: reject, run, describe the outcome, settle."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

import pytest
from pydantic import BaseModel, Field

from common import ErrorKind, Outcome, TaskMessage, TaskRegistry, encode
from executor.runner import (
    Delivery,
    Job,
    Rejection,
    Settlement,
    execute,
    prepare,
    rejection_result,
    settlement_after_run,
)

MAX_BODY = 10_000
SUBMITTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
FINISHED_AT = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

registry = TaskRegistry()


class Summary(BaseModel):
    words: int
    first: str


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


class RecordingThread:
    """A ``run_in_thread`` stand-in that runs the function inline and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, fn: Callable[[], Any]) -> Any:
        self.calls += 1
        return fn()


def _task(task_type: str = "word_count", params: dict[str, Any] | None = None) -> TaskMessage:
    return TaskMessage(
        task_id=uuid4(),
        task_type=task_type,
        params={"text": "to be or not to be"} if params is None else params,
        attempt=2,
        submitted_at=SUBMITTED,
    )


def _delivery(
    body: bytes,
    *,
    message_id: str | None = None,
    correlation_id: str | None = None,
    task_type: str | None = None,
    redelivered: bool = False,
) -> Delivery:
    return Delivery(body, message_id, correlation_id, task_type, redelivered)


def _prepare(delivery: Delivery) -> Job | Rejection:
    return prepare(delivery, registry, max_body_bytes=MAX_BODY)


def _job(task_type: str, params: dict[str, Any]) -> Job:
    prepared = _prepare(_delivery(encode(_task(task_type, params))))
    assert isinstance(prepared, Job)
    return prepared


def _rejection(delivery: Delivery) -> Rejection:
    prepared = _prepare(delivery)
    assert isinstance(prepared, Rejection)
    return prepared


def test_valid_task_becomes_a_job_with_validated_kwargs() -> None:
    task = _task(params={"text": "a b c"})

    job = _prepare(_delivery(encode(task)))

    assert isinstance(job, Job)
    assert job.task == task
    assert job.definition.name == "word_count"
    assert job.kwargs == {"text": "a b c", "top": 3}


def test_oversized_body_is_rejected_before_decoding() -> None:
    task_id = uuid4()
    body = b"{" + b" " * MAX_BODY + b"}"

    rejection = _rejection(_delivery(body, message_id=str(task_id), task_type="word_count"))

    assert rejection.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert rejection.task_id == task_id
    assert rejection.task_type == "word_count"
    assert str(MAX_BODY) in rejection.error.message


def test_body_at_the_limit_is_accepted() -> None:
    body = encode(_task())

    assert isinstance(prepare(_delivery(body), registry, max_body_bytes=len(body)), Job)


def test_non_json_body_is_rejected_with_the_id_from_message_id() -> None:
    task_id = uuid4()

    rejection = _rejection(_delivery(b"\x00garbage", message_id=str(task_id), task_type="x"))

    assert rejection.error.kind is ErrorKind.DECODE_ERROR
    assert rejection.error.type == "DecodeError"
    assert rejection.task_id == task_id
    assert rejection.task_type == "x"
    assert rejection.error.details == {"excerpt": "\x00garbage"}


def test_rejection_falls_back_to_correlation_id_and_an_unknown_type() -> None:
    task_id = uuid4()

    rejection = _rejection(_delivery(b"[]", message_id="junk", correlation_id=str(task_id)))

    assert rejection.task_id == task_id
    assert rejection.task_type == "unknown"


def test_unsupported_version_is_rejected() -> None:
    task_id = uuid4()
    body = json.dumps({"version": 2, "task_id": str(task_id)}).encode()

    rejection = _rejection(_delivery(body, message_id=str(task_id)))

    assert rejection.error.kind is ErrorKind.UNSUPPORTED_VERSION
    assert rejection.error.type == "UnsupportedVersion"
    assert rejection.task_id == task_id


def test_unknown_type_is_rejected_listing_the_known_types() -> None:
    task = _task("no_such_type")

    rejection = _rejection(_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.UNKNOWN_TASK_TYPE
    assert rejection.task_id == task.task_id
    assert rejection.task_type == "no_such_type"
    assert rejection.attempt == 2
    assert rejection.error.details == registry.names()


def test_invalid_params_are_rejected_with_pydantic_errors() -> None:
    task = _task(params={"text": "a", "top": 99})

    rejection = _rejection(_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.INVALID_PARAMS
    assert rejection.task_id == task.task_id
    assert isinstance(rejection.error.details, list)
    assert rejection.error.details[0] == {
        "loc": ["top"],
        "msg": "Input should be less than or equal to 10",
        "type": "less_than_equal",
    }


def test_rejection_without_any_task_id_has_no_result() -> None:
    rejection = _rejection(_delivery(b"not json"))

    assert rejection.task_id is None
    assert rejection_result(rejection, executor="e1", redelivered=False) is None


def test_rejection_result_reports_the_error_for_the_task() -> None:
    task = _task("no_such_type")
    rejection = _rejection(_delivery(encode(task)))

    result = rejection_result(rejection, executor="e1", redelivered=True)

    assert result is not None
    assert result.task_id == task.task_id
    assert result.outcome is Outcome.FAILED
    assert result.error == rejection.error
    assert result.attempt == 2
    assert result.executor == "e1"
    assert result.redelivered


async def test_sync_handler_runs_through_run_in_thread() -> None:
    thread = RecordingThread()

    result = await execute(
        _job("word_count", {"text": "a b"}), executor="e1", redelivered=False, run_in_thread=thread
    )

    assert thread.calls == 1
    assert result.outcome is Outcome.SUCCEEDED
    assert result.result == {"words": 2, "top": 3}
    assert result.error is None


async def test_async_handler_runs_on_the_loop() -> None:
    thread = RecordingThread()

    result = await execute(
        _job("shout", {"text": "hi"}), executor="e1", redelivered=False, run_in_thread=thread
    )

    assert thread.calls == 0
    assert result.result == "HI"


@pytest.mark.parametrize(
    ("task_type", "exc_type"), [("explode", "LookupError"), ("explode_async", "ValueError")]
)
async def test_handler_exception_becomes_a_failed_result(task_type: str, exc_type: str) -> None:
    result = await execute(
        _job(task_type, {"message": "no rate for XXX"}),
        executor="e1",
        redelivered=False,
        run_in_thread=RecordingThread(),
    )

    assert result.outcome is Outcome.FAILED
    assert result.result is None
    assert result.error is not None
    assert result.error.kind is ErrorKind.HANDLER_ERROR
    assert result.error.type == exc_type
    assert result.error.message == "no rate for XXX"
    assert result.error.traceback is not None
    assert "Traceback" in result.error.traceback
    assert f"{exc_type}: no rate for XXX" in result.error.traceback


async def test_result_that_is_not_json_fails_the_task() -> None:
    result = await execute(
        _job("opaque", {}), executor="e1", redelivered=False, run_in_thread=RecordingThread()
    )

    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.kind is ErrorKind.RESULT_NOT_JSON
    assert "object" in result.error.message


async def test_pydantic_model_result_is_serialised() -> None:
    result = await execute(
        _job("summarise", {"text": "hello world"}),
        executor="e1",
        redelivered=False,
        run_in_thread=RecordingThread(),
    )

    assert result.result == {"words": 2, "first": "hello"}


async def test_datetime_result_is_serialised() -> None:
    result = await execute(
        _job("finished", {}), executor="e1", redelivered=False, run_in_thread=RecordingThread()
    )

    assert result.result == "2030-05-06T07:08:09Z"
    assert json.loads(encode(result))["result"] == "2030-05-06T07:08:09Z"


async def test_result_carries_executor_attempt_and_redelivery() -> None:
    job = _job("word_count", {"text": "a"})

    result = await execute(
        job, executor="host.7", redelivered=True, run_in_thread=RecordingThread()
    )

    assert result.task_id == job.task.task_id
    assert result.task_type == "word_count"
    assert result.executor == "host.7"
    assert result.attempt == 2
    assert result.redelivered
    assert result.started_at <= result.finished_at
    assert result.finished_at.tzinfo is not None


async def test_a_task_that_ran_is_acked_whatever_its_outcome() -> None:
    thread = RecordingThread()
    ok = await execute(
        _job("shout", {"text": "x"}), executor="e", redelivered=False, run_in_thread=thread
    )
    failed = await execute(
        _job("explode", {"message": "m"}), executor="e", redelivered=False, run_in_thread=thread
    )

    assert settlement_after_run(ok) is Settlement.ACK
    assert settlement_after_run(failed) is Settlement.ACK
