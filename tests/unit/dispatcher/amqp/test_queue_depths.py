"""Reading queue depths while the broker is away: a BrokerError the callers handle, never a
client's own error (one such stopped the gauges for good and made ``/queues`` answer 500)."""

from __future__ import annotations

import pytest

from common import AmqpSettings, BrokerError
from common.pika_link import Link
from dispatcher.amqp.queue_depths import read_queue_depths


async def test_a_link_that_is_not_connected_is_a_broker_error() -> None:
    link = Link(AmqpSettings(), name="test")  # never connected: as between two connections

    with pytest.raises(BrokerError, match="not connected"):
        await read_queue_depths(link, ["wq.tasks"])
