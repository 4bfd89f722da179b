"""``prepare``: what a delivery must be before its handler may run."""

from __future__ import annotations

import json
from uuid import uuid4

from common import (
    ErrorKind,
    encode,
)
from executor.jobs import Job, prepare
from tests.unit.executor.handlers import (
    MAX_BODY,
    a_delivery,
    a_rejection,
    a_task,
    prepare_delivery,
    registry,
)

# prepare: validation before anything runs


def test_valid_task_becomes_a_job_with_validated_kwargs() -> None:
    task = a_task(params={"text": "a b c"})

    job = prepare_delivery(a_delivery(encode(task)))

    assert isinstance(job, Job)
    assert job.task == task
    assert job.definition.name == "word_count"
    assert job.kwargs == {"text": "a b c", "top": 3}


def test_oversized_body_is_rejected_before_decoding() -> None:
    task_id = uuid4()
    body = b"{" + b" " * MAX_BODY + b"}"

    rejection = a_rejection(a_delivery(body, message_id=str(task_id), task_type="word_count"))

    assert rejection.error.kind is ErrorKind.MESSAGE_TOO_LARGE
    assert rejection.task_id == task_id
    assert rejection.task_type == "word_count"
    assert str(MAX_BODY) in rejection.error.message


def test_body_at_the_limit_is_accepted() -> None:
    body = encode(a_task())

    assert isinstance(prepare(a_delivery(body), registry, max_body_bytes=len(body)), Job)


def test_non_json_body_is_rejected_with_the_id_from_message_id() -> None:
    task_id = uuid4()

    rejection = a_rejection(a_delivery(b"\x00garbage", message_id=str(task_id), task_type="x"))

    assert rejection.error.kind is ErrorKind.DECODE_ERROR
    assert rejection.error.type == "DecodeError"
    assert rejection.task_id == task_id
    assert rejection.task_type == "x"
    assert rejection.error.details == {"excerpt": "\x00garbage"}


def test_rejection_falls_back_to_correlation_id_and_an_unknown_type() -> None:
    task_id = uuid4()

    rejection = a_rejection(a_delivery(b"[]", message_id="junk", correlation_id=str(task_id)))

    assert rejection.task_id == task_id
    assert rejection.task_type == "unknown"


def test_unsupported_version_is_rejected() -> None:
    task_id = uuid4()
    body = json.dumps({"version": 2, "task_id": str(task_id)}).encode()

    rejection = a_rejection(a_delivery(body, message_id=str(task_id)))

    assert rejection.error.kind is ErrorKind.UNSUPPORTED_VERSION
    assert rejection.error.type == "UnsupportedVersion"
    assert rejection.task_id == task_id


def test_unknown_type_is_rejected_listing_the_known_types() -> None:
    task = a_task("no_such_type")

    rejection = a_rejection(a_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.UNKNOWN_TASK_TYPE
    assert rejection.task_id == task.task_id
    assert rejection.task_type == "no_such_type"
    assert rejection.attempt == 2
    assert rejection.error.details == registry.names()


def test_invalid_params_are_rejected_with_pydantic_errors() -> None:
    task = a_task(params={"text": "a", "top": 99})

    rejection = a_rejection(a_delivery(encode(task)))

    assert rejection.error.kind is ErrorKind.INVALID_PARAMS
    assert rejection.task_id == task.task_id
    assert isinstance(rejection.error.details, list)
    assert rejection.error.details[0] == {
        "loc": ["top"],
        "msg": "Input should be less than or equal to 10",
        "type": "less_than_equal",
    }
