"""Logging set-up: JSON lines with bound context, and stdlib records through the same renderer."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timedelta

import pytest
import structlog

from common import LogSettings
from common.logging import configure, get_logger


@pytest.fixture(autouse=True)
def _restore_logging(restore_logging: None) -> None:
    """Every test here configures logging."""


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_carries_event_level_timestamp_and_bound_context() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)

    with structlog.contextvars.bound_contextvars(task_id="t-1", attempt=2):
        get_logger("wq.test").info("task_started", queue="wq.tasks")

    (line,) = _lines(stream)
    assert line["event"] == "task_started"
    assert line["level"] == "info"
    assert line["task_id"] == "t-1"
    assert line["attempt"] == 2
    assert line["queue"] == "wq.tasks"
    assert line["logger"] == "wq.test"
    timestamp = datetime.fromisoformat(str(line["timestamp"]))
    assert timestamp.utcoffset() == timedelta(0)


def test_context_is_gone_once_unbound() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)
    log = get_logger("wq.test")

    with structlog.contextvars.bound_contextvars(task_id="t-1"):
        log.info("task_started")
    log.info("idle")

    first, second = _lines(stream)
    assert first["task_id"] == "t-1"
    assert "task_id" not in second


def test_records_below_the_level_are_dropped() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json", level="warning"), stream=stream)
    log = get_logger("wq.test")

    log.info("task_started")
    log.warning("task_retry_scheduled")

    assert [line["event"] for line in _lines(stream)] == ["task_retry_scheduled"]


def test_debug_lines_are_written_at_debug_level() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json", level="debug"), stream=stream)

    get_logger("wq.test").debug("result_recorded")

    assert [line["event"] for line in _lines(stream)] == ["result_recorded"]


def test_a_logger_used_before_configure_is_called_again_writes_to_the_new_stream() -> None:
    first, second = io.StringIO(), io.StringIO()
    log = get_logger("wq.test")
    configure(LogSettings(format="json"), stream=first)
    log.info("task_started")

    configure(LogSettings(format="json"), stream=second)
    log.info("task_succeeded")

    assert [line["event"] for line in _lines(first)] == ["task_started"]
    assert [line["event"] for line in _lines(second)] == ["task_succeeded"]


def test_our_lines_and_stdlib_records_share_one_stream_in_order() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)

    get_logger("wq.test").warning("broker_connection_lost")
    logging.getLogger("pika").warning("reconnecting")
    get_logger("wq.test").info("broker_reconnected")

    lines = _lines(stream)
    assert [line["event"] for line in lines] == [
        "broker_connection_lost",
        "reconnecting",
        "broker_reconnected",
    ]
    assert [line["logger"] for line in lines] == ["wq.test", "pika", "wq.test"]


def test_a_closed_stream_does_not_fail_the_caller() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)
    stream.close()

    get_logger("wq.test").info("task_succeeded")


def test_stdlib_records_are_rendered_as_json_too() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)

    logging.getLogger("some.library").warning("disk %s", "full")

    (line,) = _lines(stream)
    assert line["event"] == "disk full"
    assert line["level"] == "warning"
    assert "timestamp" in line


def test_amqp_client_chatter_is_kept_to_warnings() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json", level="debug"), stream=stream)

    logging.getLogger("pika.channel").info("frame sent")
    logging.getLogger("pika").warning("connection blocked")

    assert [line["event"] for line in _lines(stream)] == ["connection blocked"]


def test_pikas_critical_about_frames_for_a_closed_channel_is_dropped() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)
    connection = logging.getLogger("pika.connection")

    connection.critical("Received %s frame for unregistered channel %i on %s", "METHOD", 2, "c")
    connection.critical("something else")

    assert [line["event"] for line in _lines(stream)] == ["something else"]


def test_exceptions_become_structured_tracebacks_in_json() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)

    try:
        raise LookupError("no rate")
    except LookupError:
        get_logger("wq.test").exception("task_failed")

    (line,) = _lines(stream)
    assert line["event"] == "task_failed"
    assert isinstance(line["exception"], list)
    assert "LookupError" in json.dumps(line["exception"])


def test_console_format_is_not_json() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="console"), stream=stream)

    get_logger("wq.test").info("task_started", task_id="t-1")

    text = stream.getvalue()
    assert "task_started" in text
    assert "t-1" in text
    assert not text.lstrip().startswith("{")


def test_auto_format_writes_json_off_a_tty() -> None:
    stream = io.StringIO()  # isatty() is False
    configure(LogSettings(format="auto"), stream=stream)

    get_logger("wq.test").info("task_started")

    assert _lines(stream)[0]["event"] == "task_started"


def test_exception_lines_keep_the_frames_but_not_their_local_variables() -> None:
    stream = io.StringIO()
    configure(LogSettings(format="json"), stream=stream)

    def connect() -> None:
        url = "amqp://wq:s3cret-pass@rabbit/"  # a local the traceback must not show
        raise ConnectionError(f"refused by {url.split('@')[1]}")

    try:
        connect()
    except ConnectionError:
        get_logger("wq.test").exception("broker_unreachable")

    (line,) = _lines(stream)
    assert "s3cret-pass" not in stream.getvalue()
    exception = line["exception"]
    assert isinstance(exception, list)
    (trace,) = exception
    assert trace["exc_type"] == "ConnectionError"
    assert [frame["name"] for frame in trace["frames"]][-1] == "connect"
