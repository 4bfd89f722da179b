"""Message-level plumbing: counting runs, copying messages, the dead-letter headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from common import ATTEMPT_HEADER, DELIVERIES_HEADER
from executor.deliveries import copy_message, quorum_run_number, run_number

SENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class FakeIncoming:
    """The properties of an incoming message that ``copy_message`` reads."""

    body: bytes = b'{"task": 1}'
    headers: dict[str, Any] | None = field(default_factory=dict)
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    message_id: str | None = "3f1c9a52-0000-4000-8000-000000000001"
    correlation_id: str | None = "3f1c9a52-0000-4000-8000-000000000001"
    type: str | None = "word_count"
    reply_to: str | None = "wq.results"
    timestamp: datetime | None = SENT_AT
    app_id: str | None = "wq-dispatcher"
    priority: int | None = 7


def _copy(incoming: FakeIncoming, **kwargs: Any) -> aio_pika.Message:
    message: Any = incoming
    return copy_message(message, **kwargs)


# run_number


@pytest.mark.parametrize(
    ("headers", "redelivered", "run"),
    [
        (None, False, 1),
        ({}, False, 1),
        (None, True, 2),
        ({DELIVERIES_HEADER: 1}, False, 2),
        ({DELIVERIES_HEADER: 1}, True, 3),
        ({DELIVERIES_HEADER: 4}, True, 6),
        ({DELIVERIES_HEADER: 0}, False, 1),
    ],
)
def test_run_number_counts_earlier_runs_and_this_redelivery(
    headers: dict[str, Any] | None, redelivered: bool, run: int
) -> None:
    assert run_number(headers, redelivered=redelivered) == run


@pytest.mark.parametrize("junk", ["3", -2, 2.5, None, b"1", [1]])
def test_junk_deliveries_header_counts_as_no_earlier_runs(junk: object) -> None:
    assert run_number({DELIVERIES_HEADER: junk}, redelivered=False) == 1
    assert run_number({DELIVERIES_HEADER: junk}, redelivered=True) == 2


def test_other_headers_do_not_count() -> None:
    assert run_number({ATTEMPT_HEADER: 5, "x-death": []}, redelivered=False) == 1


# copy_message


def test_copy_keeps_the_body_and_identity_properties() -> None:
    incoming = FakeIncoming()

    copy = _copy(incoming)

    assert copy.body == incoming.body
    assert copy.content_type == "application/json"
    assert copy.content_encoding == "utf-8"
    assert copy.message_id == incoming.message_id
    assert copy.correlation_id == incoming.correlation_id
    assert copy.type == "word_count"
    assert copy.reply_to == "wq.results"
    assert copy.timestamp == SENT_AT
    assert copy.app_id == "wq-dispatcher"


@pytest.mark.parametrize("expiration_s", [None, 4.0])
def test_every_copy_keeps_the_task_priority(expiration_s: float | None) -> None:
    # Retry copies (with an expiration), counted redeliveries and dead-letter copies alike.
    copy = _copy(FakeIncoming(), headers={"x-wq-deliveries": 1}, expiration_s=expiration_s)

    assert copy.priority == 7


def test_copy_is_persistent_and_does_not_expire_by_default() -> None:
    copy = _copy(FakeIncoming())

    assert copy.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert copy.expiration is None
    assert copy.properties.expiration is None


@pytest.mark.parametrize(("seconds", "wire"), [(7, "7000"), (2.5, "2500"), (0, "0")])
def test_copy_expires_after_the_given_seconds(seconds: float, wire: str) -> None:
    copy = _copy(FakeIncoming(), expiration_s=seconds)

    assert copy.properties.expiration == wire


def test_copy_can_replace_the_body() -> None:
    copy = _copy(FakeIncoming(), body=b"new")

    assert copy.body == b"new"
    assert copy.message_id == FakeIncoming().message_id


def test_copy_merges_new_headers_over_the_old_ones() -> None:
    incoming = FakeIncoming(headers={"trace": "abc", ATTEMPT_HEADER: 1, DELIVERIES_HEADER: 2})

    copy = _copy(incoming, headers={ATTEMPT_HEADER: 2, DELIVERIES_HEADER: 0})

    assert copy.headers == {"trace": "abc", ATTEMPT_HEADER: 2, DELIVERIES_HEADER: 0}
    assert incoming.headers == {"trace": "abc", ATTEMPT_HEADER: 1, DELIVERIES_HEADER: 2}


def test_copy_drops_the_headers_the_broker_adds_when_dead_lettering() -> None:
    broker_headers = {
        "x-death": [{"count": 1, "queue": "wq.tasks.retry.4s", "reason": "expired"}],
        "x-first-death-exchange": "",
        "x-first-death-queue": "wq.tasks.retry.4s",
        "x-first-death-reason": "expired",
        "x-last-death-exchange": "",
        "x-last-death-queue": "wq.tasks.retry.4s",
        "x-last-death-reason": "expired",
    }
    incoming = FakeIncoming(headers={"trace": "abc", **broker_headers})

    copy = _copy(incoming, headers={ATTEMPT_HEADER: 3})

    assert copy.headers == {"trace": "abc", ATTEMPT_HEADER: 3}


def test_copy_of_a_message_without_headers() -> None:
    assert _copy(FakeIncoming(headers=None)).headers == {}
    assert _copy(FakeIncoming(headers=None), headers={"a": 1}).headers == {"a": 1}


def test_copy_of_a_message_with_bare_properties() -> None:
    incoming = FakeIncoming(
        content_type=None,
        content_encoding=None,
        message_id=None,
        correlation_id=None,
        type=None,
        reply_to=None,
        timestamp=None,
        app_id=None,
    )

    copy = _copy(incoming)

    assert copy.message_id is None
    assert copy.reply_to is None
    assert copy.timestamp is None
    assert copy.delivery_mode is aio_pika.DeliveryMode.PERSISTENT


@pytest.mark.parametrize(
    ("headers", "expected"),
    [(None, 1), ({}, 1), ({"x-delivery-count": 0}, 1), ({"x-delivery-count": 2}, 3),
     ({"x-delivery-count": "2"}, 1), ({"x-delivery-count": True}, 1)],
)  # fmt: skip
def test_quorum_run_number_follows_the_brokers_delivery_count(
    headers: dict[str, object] | None, expected: int
) -> None:
    assert quorum_run_number(headers) == expected
