"""structlog set-up: JSON lines off a TTY, a readable console on one, context bound per task."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from common.settings import LogSettings

get_logger = structlog.stdlib.get_logger


def configure(settings: LogSettings, *, stream: Any = None) -> None:
    """Configure structlog and the standard library's root logger once per process."""
    out = stream if stream is not None else sys.stderr
    render_json = settings.format == "json" or (settings.format == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if render_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if render_json:
        shared.append(structlog.processors.dict_tracebacks)
    level = logging.getLevelName(settings.level.upper())
    structlog.configure(
        # Level first: a debug line costs one comparison, not the whole chain, when it is off.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Route the standard library's records (aio-pika, pika) through the same renderer.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The AMQP clients narrate every frame at info/debug; keep their warnings only.
    for noisy in ("aio_pika", "aiormq", "pika"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
