"""``DeadLetterHeaders``: why a task was dead-lettered, as the executor writes it and
``dispatcher dead list`` reads it back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common import DeadLetterHeaders, DeadReason, ErrorKind, TaskErrorInfo

DEAD_AT = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)


def _error(message: str = "no rate for XXX") -> TaskErrorInfo:
    return TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="LookupError", message=message)


def _headers(reason: DeadReason, error: TaskErrorInfo, *, attempts: int = 4) -> DeadLetterHeaders:
    return DeadLetterHeaders.of(
        reason, error, attempts=attempts, queue="wq.tasks", executor="h.7", at=DEAD_AT
    )


def test_dead_letter_headers_say_why_where_and_who() -> None:
    headers = _headers(DeadReason.RETRIES_EXHAUSTED, _error()).to_headers()

    assert headers == {
        "x-wq-dead-reason": "retries_exhausted",
        "x-wq-error-kind": "handler_error",
        "x-wq-error-type": "LookupError",
        "x-wq-error": "no rate for XXX",
        "x-wq-attempts": 4,
        "x-wq-original-queue": "wq.tasks",
        "x-wq-executor": "h.7",
        "x-wq-dead-at": "2026-12-01T21:00:00+00:00",
    }


def test_dead_letter_headers_truncate_long_error_text() -> None:
    message = "x" * 999 + "yz" + "w" * 5000

    headers = _headers(DeadReason.REJECTED, _error(message)).to_headers()

    assert headers["x-wq-error"] == "x" * 999 + "y"


def test_dead_letter_headers_are_amqp_table_values() -> None:
    headers = _headers(DeadReason.DELIVERY_LIMIT, _error()).to_headers()

    assert all(isinstance(v, str | int) for v in headers.values())


def test_what_the_executor_writes_reads_back_the_same() -> None:
    written = _headers(DeadReason.REJECTED, _error(), attempts=1)

    read = DeadLetterHeaders.from_headers(written.to_headers())

    assert read == DeadLetterHeaders(
        reason="rejected",
        error_kind="handler_error",
        error_type="LookupError",
        error="no rate for XXX",
        attempts=1,
        original_queue="wq.tasks",
        executor="h.7",
        dead_at="2026-12-01T21:00:00+00:00",
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-death": [{"reason": "expired"}]}, {"x-wq-attempts": "4"}, {"x-wq-attempts": True}],
)
def test_headers_the_broker_or_a_stranger_wrote_read_as_unknown(headers: dict[str, object]) -> None:
    read = DeadLetterHeaders.from_headers(headers)

    assert read.reason is None
    assert read.attempts is None
