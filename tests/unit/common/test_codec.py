"""The codec: wire models to bytes and back, and the AMQP properties that go with them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from common import (
    SCHEMA_VERSION,
    CancelNotice,
    DecodeError,
    ErrorKind,
    MessageError,
    Outcome,
    ProgressMessage,
    ResultMessage,
    TaskErrorInfo,
    TaskMessage,
    UnsupportedVersion,
    cancel_properties,
    decode_cancel,
    decode_heartbeat,
    decode_progress,
    decode_result,
    decode_task,
    encode,
    progress_properties,
    result_properties,
    task_id_from_properties,
    task_properties,
)

SUBMITTED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
FINISHED = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)


def _task(**changes: object) -> TaskMessage:
    fields: dict[str, object] = {
        "task_id": uuid4(),
        "task_type": "word_count",
        "params": {"text": "to be or not", "top": 2, "nested": {"a": [1, None, True]}},
        "attempt": 3,
        "submitted_at": SUBMITTED,
    }
    fields.update(changes)
    return TaskMessage.model_validate(fields)


def _result(**changes: object) -> ResultMessage:
    fields: dict[str, object] = {
        "task_id": uuid4(),
        "task_type": "word_count",
        "outcome": Outcome.SUCCEEDED,
        "result": {"words": 4},
        "attempt": 2,
        "executor": "host-1.42",
        "redelivered": True,
        "started_at": SUBMITTED,
        "finished_at": FINISHED,
    }
    fields.update(changes)
    return ResultMessage.model_validate(fields)


def _task_body(**changes: object) -> bytes:
    document: dict[str, object] = {
        "version": SCHEMA_VERSION,
        "task_id": str(uuid4()),
        "task_type": "word_count",
        "params": {},
        "submitted_at": SUBMITTED.isoformat(),
    }
    document.update(changes)
    return json.dumps(document).encode()


def test_task_round_trips_through_encode_and_decode() -> None:
    task = _task()

    assert decode_task(encode(task)) == task


def test_result_round_trips_through_encode_and_decode() -> None:
    result = _result()

    assert decode_result(encode(result)) == result


def test_failed_result_keeps_its_error_through_the_wire() -> None:
    error = TaskErrorInfo(
        kind=ErrorKind.HANDLER_ERROR,
        type="LookupError",
        message="no exchange rate for XXX",
        traceback="Traceback (most recent call last): ...",
        details={"currency": "XXX"},
    )
    result = _result(outcome=Outcome.FAILED, result=None, error=error)

    decoded = decode_result(encode(result))

    assert decoded.error == error
    assert decoded.outcome is Outcome.FAILED


def test_encoded_task_is_compact_utf8_json_with_its_version() -> None:
    body = encode(_task(params={"text": "grüße"}))

    document = json.loads(body.decode("utf-8"))
    assert document["version"] == SCHEMA_VERSION
    assert document["params"] == {"text": "grüße"}
    assert b"\n" not in body
    assert b": " not in body


def test_decoding_ignores_unknown_fields_from_a_newer_producer() -> None:
    body = _task_body(priority=5)

    assert decode_task(body).task_type == "word_count"


def test_missing_version_is_read_as_the_current_one() -> None:
    document = json.loads(_task_body())
    del document["version"]

    assert decode_task(json.dumps(document).encode()).version == SCHEMA_VERSION


def test_non_json_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not UTF-8 JSON"):
        decode_task(b"\xff\xfe not json")


def test_json_that_is_not_an_object_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="not a JSON object"):
        decode_task(b"[1, 2, 3]")


def test_wrong_schema_is_a_decode_error_naming_the_field() -> None:
    with pytest.raises(DecodeError, match="does not match the schema") as caught:
        decode_task(_task_body(task_id="not-a-uuid"))

    assert "task_id" in caught.value.reason


def test_invalid_task_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="task_type"):
        decode_task(_task_body(task_type="has spaces; and more"))


def test_result_with_wrong_schema_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="outcome"):
        decode_result(encode(_result()).replace(b'"succeeded"', b'"maybe"'))


def test_unsupported_version_keeps_the_version() -> None:
    with pytest.raises(UnsupportedVersion) as caught:
        decode_task(_task_body(version=2))

    assert caught.value.version == 2
    assert isinstance(caught.value, MessageError)


def test_unsupported_version_wins_over_other_schema_errors() -> None:
    # A version-2 body may have any shape; the version is the useful explanation.
    with pytest.raises(UnsupportedVersion):
        decode_result(b'{"version": 2, "something": "else"}')


def test_decode_error_keeps_an_excerpt_of_the_body() -> None:
    body = b"garbage " * 100

    with pytest.raises(DecodeError) as caught:
        decode_task(body)

    assert caught.value.excerpt == body[:200]
    assert caught.value.__cause__ is not None


def test_task_properties_identify_the_task() -> None:
    task = _task()

    props = task_properties(task, reply_to="wq.results", app_id="wq-dispatcher")

    assert props.message_id == str(task.task_id)
    assert props.correlation_id == str(task.task_id)
    assert props.type == "word_count"
    assert props.reply_to == "wq.results"
    assert props.app_id == "wq-dispatcher"
    assert props.timestamp == SUBMITTED
    assert props.headers == {"x-wq-attempt": 3}


def test_task_properties_carry_the_task_priority() -> None:
    assert task_properties(_task(), reply_to=None, app_id="a").priority == 0
    assert task_properties(_task(priority=9), reply_to=None, app_id="a").priority == 9


def test_a_task_without_priority_in_its_body_has_priority_zero() -> None:
    body = b'{"task_id": "3f1c9a52-0000-4000-8000-000000000001", "task_type": "t",'
    body += b' "submitted_at": "2026-01-01T00:00:00Z"}'

    assert decode_task(body).priority == 0


def test_task_properties_are_persistent_json() -> None:
    props = task_properties(_task(), reply_to=None, app_id="wq-dispatcher")

    assert props.delivery_mode == 2
    assert props.content_type == "application/json"
    assert props.content_encoding == "utf-8"
    assert props.reply_to is None


def test_result_properties_correlate_with_the_task() -> None:
    result = _result(outcome=Outcome.FAILED, result=None)

    props = result_properties(result, app_id="wq-executor")

    assert props.correlation_id == str(result.task_id)
    assert props.message_id == f"{result.task_id}.2"
    assert props.type == "word_count"
    assert props.timestamp == FINISHED
    assert props.headers == {"x-wq-outcome": "failed", "x-wq-executor": "host-1.42"}
    assert props.delivery_mode == 2
    assert props.content_type == "application/json"
    assert props.reply_to is None


def test_task_id_comes_from_message_id_first() -> None:
    first, second = uuid4(), uuid4()

    assert task_id_from_properties(str(first), str(second)) == first


def test_task_id_falls_back_to_correlation_id() -> None:
    task_id = uuid4()

    assert task_id_from_properties("not-a-uuid", str(task_id)) == task_id
    assert task_id_from_properties(None, str(task_id)) == task_id
    assert task_id_from_properties("", str(task_id)) == task_id


def test_task_id_is_none_when_no_property_holds_one() -> None:
    assert task_id_from_properties(None, None) is None
    assert task_id_from_properties("abc", "def") is None


def test_task_id_from_properties_returns_a_uuid() -> None:
    text = "0b5e2a8e-3f7c-4a0e-9a57-1d8c0c1f6a11"

    assert task_id_from_properties(text, None) == UUID(text)


# Cancel notices and progress reports


def test_cancel_notice_round_trips_with_persistent_typed_properties() -> None:
    notice = CancelNotice(task_id=uuid4(), requested_at=datetime(2026, 1, 2, tzinfo=UTC))

    assert decode_cancel(encode(notice)) == notice
    properties = cancel_properties(notice, app_id="wq-dispatcher")
    assert properties.type == "cancel"
    assert properties.message_id == str(notice.task_id)
    assert properties.delivery_mode == 2


def test_progress_report_round_trips_with_transient_properties() -> None:
    report = ProgressMessage(
        task_id=uuid4(),
        task_type="render",
        attempt=2,
        executor="e1",
        percent=12.5,
        note="page 1",
        reported_at=datetime(2026, 1, 2, tzinfo=UTC),
    )

    assert decode_progress(encode(report)) == report
    properties = progress_properties(report, app_id="wq-executor")
    assert properties.delivery_mode == 1
    assert properties.correlation_id == str(report.task_id)


@pytest.mark.parametrize("percent", [-1, 101, "NaN"])
def test_progress_outside_0_to_100_does_not_decode(percent: object) -> None:
    body = json.dumps(
        {
            "version": 1,
            "task_id": str(uuid4()),
            "task_type": "t",
            "executor": "e",
            "percent": percent,
            "reported_at": "2026-01-02T00:00:00Z",
        }
    ).encode()

    with pytest.raises(DecodeError):
        decode_progress(body)


# Bodies anyone with publish rights can send: every decoder answers with a DecodeError that
# says what is wrong, never an exception of the parser's own (RecursionError, ValueError).
_DECODERS = [decode_task, decode_result, decode_cancel, decode_progress, decode_heartbeat]
_DEEP = b'{"version": 1, "params": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
_HUGE_NUMBER = b'{"version": 1, "attempt": ' + b"9" * 5_000 + b"}"


@pytest.mark.parametrize("decode", _DECODERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    ("body", "reason"),
    [(_DEEP, "recursion limit exceeded"), (_HUGE_NUMBER, "number out of range")],
    ids=["nested 100,000 deep", "a 5,000-digit number"],
)
def test_hostile_json_is_a_decode_error_that_says_why(
    decode: Callable[[bytes], object], body: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason) as caught:
        decode(body)

    assert caught.value.excerpt == body[:200]


_TASK = {
    "version": 1,
    "task_id": "3f1c9a52-0000-4000-8000-000000000001",
    "task_type": "echo",
    "submitted_at": "2026-12-01T21:00:00+00:00",
}


@pytest.mark.parametrize(
    "submitted_at",
    [
        "9999-12-31T23:00:00-05:00",  # no UTC equivalent within datetime's range
        "0001-01-01T00:00:00+05:00",  # the same, at the other end
        "9500-01-01T00:00:00+00:00",  # after the latest time a store must hold
        "1969-12-31T23:59:59+00:00",  # before the earliest
    ],
)
def test_a_time_out_of_range_is_a_decode_error_that_names_the_field(submitted_at: str) -> None:
    body = json.dumps(_TASK | {"submitted_at": submitted_at}).encode()

    with pytest.raises(DecodeError, match=r"submitted_at: .*time out of range"):
        decode_task(body)


def test_times_at_the_edges_of_the_range_decode() -> None:
    for edge in ("1970-01-01T00:00:00+00:00", "8999-12-31T23:59:59.999999+00:00"):
        assert decode_task(json.dumps(_TASK | {"submitted_at": edge}).encode()).submitted_at


@pytest.mark.parametrize(
    ("field", "value"),
    [("retry_in_s", 1e300), ("started_at", "9999-12-31T23:00:00-05:00")],
)
def test_a_result_whose_numbers_or_times_no_store_can_hold_does_not_decode(
    field: str, value: object
) -> None:
    result = ResultMessage(
        task_id=uuid4(),
        task_type="echo",
        outcome=Outcome.RETRYING,
        executor="e",
        started_at=datetime(2026, 12, 1, tzinfo=UTC),
        finished_at=datetime(2026, 12, 1, tzinfo=UTC),
        retry_in_s=1.0,
    ).model_dump(mode="json")

    with pytest.raises(DecodeError, match=field):
        decode_result(json.dumps(result | {field: value}).encode())


@pytest.mark.parametrize("field", ["pid", "processed", "rss_bytes"])
def test_a_heartbeat_count_past_64_bits_does_not_decode(field: str) -> None:
    heartbeat = {
        "event": "heartbeat",
        "executor": "e",
        "host": "h",
        "pid": 1,
        "slots": 1,
        "started_at": "2026-12-01T21:00:00+00:00",
        "sent_at": "2026-12-01T21:00:00+00:00",
    }

    with pytest.raises(DecodeError, match=field):
        decode_heartbeat(json.dumps(heartbeat | {field: 2**63}).encode())
