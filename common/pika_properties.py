"""pika's basic properties to and from the client-independent ``MessageProperties``.

pika carries the ``timestamp`` property as whole seconds since the epoch; the project's
properties carry a timezone-aware datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pika.spec import BasicProperties

from common.codec import MessageProperties


def pika_properties(properties: MessageProperties) -> BasicProperties:
    """pika's basic properties from the client-independent ones."""
    stamp = properties.timestamp
    return BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers=dict(properties.headers),
        delivery_mode=properties.delivery_mode,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        message_id=properties.message_id,
        timestamp=None if stamp is None else int(stamp.timestamp()),
        type=properties.type,
        app_id=properties.app_id,
    )


def timestamp_of(properties: BasicProperties) -> datetime | None:
    """A received ``timestamp`` property as a UTC datetime (None if absent or out of range)."""
    value = properties.timestamp
    if type(value) is not int:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
