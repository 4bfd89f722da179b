"""structlog set-up: JSON lines off a TTY, a readable console on one, context bound per task.

Our own events take structlog's native path: a level-filtering bound logger, the processors,
and one ``write`` + ``flush`` per line. Routing them through the standard library's
``ProcessorFormatter`` and ``StreamHandler`` cost about four times the CPU per line, and an
executor writes a line per task. Third-party records (aio-pika, pika, uvicorn) still go through
the root logger, rendered by the same processors into the same stream.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from common.settings import LogSettings


def get_logger(name: str) -> FilteringBoundLogger:
    """The logger for module ``name``: ``log = get_logger(__name__)``, usable before set-up."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def configure(settings: LogSettings, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's root logger once per process."""
    out = stream if stream is not None else sys.stderr
    render_json = settings.format == "json" or (settings.format == "auto" and not out.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if render_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    # Frames without their local variables: structlog's default keeps them, and a local can
    # hold a secret (a broker URL with its password, a task's params).
    without_locals = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    tracebacks: list[Processor] = (
        [structlog.processors.ExceptionRenderer(without_locals)] if render_json else []
    )
    level = logging.getLevelName(settings.level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tracebacks,
            renderer,
        ],
        # The level is checked first, by the bound logger's methods: a debug line that is off
        # costs a call that returns at once, not the processors.
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_NamedLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = _route_standard_library(out, renderer, tracebacks, level)
    assert handler.lock is not None, "logging.Handler creates its lock in __init__"
    _OUTPUT.stream, _OUTPUT.lock = stream, handler.lock


def _route_standard_library(
    out: TextIO, renderer: Processor, tracebacks: list[Processor], level: int
) -> logging.Handler:
    """Render the standard library's records (aio-pika, pika, uvicorn) as our own lines."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                *tracebacks,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The AMQP client narrates every frame at info/debug; keep its warnings only.
    for noisy in ("pika",):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    pika_connection = logging.getLogger("pika.connection")
    if not any(isinstance(f, _LateFrames) for f in pika_connection.filters):
        pika_connection.addFilter(_LateFrames())
    return handler


class _LateFrames(logging.Filter):
    """Drop pika's CRITICAL about frames for a channel it has closed.

    When the broker closes a channel (a consumer timeout, a refused ack) the deliveries it sent
    before its Close still arrive; pika has forgotten the channel and says so at CRITICAL,
    although the broker requeues them and nothing is lost. ``broker_channel_closed`` is the line
    that matters.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and "frame for unregistered channel" in record.msg)


class _Output:
    """Where our lines go, looked up at each write.

    Loggers are cached on first use with the logger the factory made, so a stream fixed in that
    logger would outlive a later ``configure`` (the tests configure many times, capsys swaps
    ``sys.stderr``): the root logger's handler, which this replaces for our events, was looked
    up per record too. ``None`` means whatever ``sys.stderr`` is at the time.
    """

    def __init__(self) -> None:
        self.stream: TextIO | None = None
        # The root handler's lock once configured: our lines and third-party records are
        # written whole, never interleaved, as when they shared that handler.
        self.lock: threading.RLock | threading.Lock = threading.Lock()

    def write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        with self.lock:
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError):
                # A closed or broken stream: a log line never fails the task that wrote it,
                # as logging.Handler.handleError ensured when our lines went through it.
                pass


# The process's one output for structlog events, as the root logger is for the stdlib's:
# configure() points it at its stream.
_OUTPUT = _Output()


class _NamedLogger:
    """What structlog's bound logger writes rendered lines to; it knows its module's name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _OUTPUT.write(message + "\n")

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _NamedLoggerFactory:
    def __call__(self, *args: Any) -> _NamedLogger:
        return _NamedLogger(str(args[0]) if args else "")


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    event_dict["logger"] = logger.name
    return event_dict
