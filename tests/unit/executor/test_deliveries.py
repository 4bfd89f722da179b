"""Message-level plumbing: the quorum run count, copying messages, the dead-letter headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from common import ATTEMPT_HEADER
from common.codec import PERSISTENT
from common.pika_properties import pika_properties
from executor.deliveries import copy_message, quorum_run_number
from tests.unit.executor.stub_channel import Sent, StubChannel, StubDelivery

SENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _incoming(**fields: Any) -> StubDelivery:
    """A delivered task message with every property ``copy_message`` reads set."""
    defaults: dict[str, Any] = {
        "body": b'{"task": 1}',
        "message_id": "3f1c9a52-0000-4000-8000-000000000001",
        "correlation_id": "3f1c9a52-0000-4000-8000-000000000001",
        "type": "word_count",
        "timestamp": SENT_AT,
        "priority": 7,
    }
    return StubDelivery(StubChannel(), **{**defaults, **fields})


def _copy(incoming: StubDelivery, **kwargs: Any) -> Sent:
    message: Any = incoming
    return Sent(*copy_message(message, **kwargs))


# copy_message


def test_copy_keeps_the_body_and_identity_properties() -> None:
    incoming = _incoming()

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


def test_a_copy_keeps_the_task_priority() -> None:
    copy = _copy(_incoming(), headers={"x-wq-dead-reason": "rejected"})

    assert copy.priority == 7


def test_copy_is_persistent_and_does_not_expire() -> None:
    copy = _copy(_incoming())

    assert copy.delivery_mode == PERSISTENT
    assert pika_properties(copy.properties).expiration is None


def test_copy_merges_new_headers_over_the_old_ones() -> None:
    incoming = _incoming(headers={"trace": "abc", ATTEMPT_HEADER: 1, "x-wq-error": "old"})

    copy = _copy(incoming, headers={"x-wq-error": "new"})

    assert copy.headers == {"trace": "abc", ATTEMPT_HEADER: 1, "x-wq-error": "new"}
    assert incoming.headers == {"trace": "abc", ATTEMPT_HEADER: 1, "x-wq-error": "old"}


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
    incoming = _incoming(headers={"trace": "abc", **broker_headers})

    copy = _copy(incoming, headers={ATTEMPT_HEADER: 3})

    assert copy.headers == {"trace": "abc", ATTEMPT_HEADER: 3}


def test_copy_of_a_message_without_headers() -> None:
    assert _copy(_incoming(headers=None)).headers == {}
    assert _copy(_incoming(headers=None), headers={"a": 1}).headers == {"a": 1}


def test_copy_of_a_message_with_bare_properties() -> None:
    incoming = _incoming(
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
    assert copy.delivery_mode == PERSISTENT


@pytest.mark.parametrize(
    ("headers", "expected"),
    [(None, 1), ({}, 1), ({"x-delivery-count": 0}, 1), ({"x-delivery-count": 2}, 3),
     ({"x-delivery-count": "2"}, 1), ({"x-delivery-count": True}, 1)],
)  # fmt: skip
def test_quorum_run_number_follows_the_brokers_delivery_count(
    headers: dict[str, object] | None, expected: int
) -> None:
    assert quorum_run_number(headers) == expected
