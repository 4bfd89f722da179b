"""Reading queue depths while the broker is away: a BrokerError the callers handle, never the
client's own RuntimeError (which stopped the gauges for good and made ``/queues`` answer 500)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aio_pika.abc import AbstractRobustConnection

from common import BrokerError
from dispatcher.amqp.queue_depths import read_queue_depths


class Reconnecting:
    """A robust connection between two connections: it cannot open a channel."""

    async def channel(self, **_: Any) -> None:
        raise RuntimeError("Connection was not opened")


async def test_a_connection_that_is_reconnecting_is_a_broker_error() -> None:
    connection = cast(AbstractRobustConnection, Reconnecting())

    with pytest.raises(BrokerError, match="Connection was not opened"):
        await read_queue_depths(connection, ["wq.tasks"])
