"""Keyset cursors: opaque, URL-safe, and refused when they are not ours."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest

from dispatcher.store.query import TaskPosition, decode_cursor, encode_cursor


def test_a_cursor_round_trips_to_the_same_instant_and_id() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    position = TaskPosition(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=india), uuid4())

    decoded = decode_cursor(encode_cursor(position))

    assert decoded == position
    assert decoded.submitted_at.utcoffset() == timedelta(0)


def test_a_cursor_is_url_safe_without_padding() -> None:
    cursor = encode_cursor(TaskPosition(datetime.now(UTC), uuid4()))

    assert cursor.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "e30",  # {}
        "WyJ4IiwieSJd",  # ["x","y"]
        "WyIyMDI2LTAxLTAyVDAzOjA0OjA1IiwiYSJd",  # naive time, bad id
        "WzEsMiwzXQ",  # [1,2,3]
    ],
)
def test_anything_else_is_refused_with_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)


def test_a_cursor_with_a_naive_time_is_refused() -> None:
    raw = json.dumps(["2026-01-02T03:04:05", str(uuid4())]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)
