"""The synchronous client hands pika every broker address, in the order to try them."""

from __future__ import annotations

from pydantic import SecretStr

from common import AmqpSettings
from dispatcher.sync_client import _connection_parameters


def test_every_address_becomes_one_pika_parameter_set_in_order() -> None:
    amqp = AmqpSettings(
        url=SecretStr("amqp://u:p@node-1:5672/,amqp://u:p@node-2:5673/"),
        heartbeat=7,
        url_order="listed",
    )

    parameters = _connection_parameters(amqp)

    assert [(p.host, p.port) for p in parameters] == [("node-1", 5672), ("node-2", 5673)]
    assert {p.heartbeat for p in parameters} == {7}
    assert {p.client_properties["connection_name"] for p in parameters} == {
        "wq dispatcher sync client"
    }


def test_spread_rotates_the_addresses_it_hands_pika() -> None:
    amqp = AmqpSettings(url=SecretStr("amqp://u:p@node-1:5672/,amqp://u:p@node-2:5673/"))

    orders = {tuple(p.host for p in _connection_parameters(amqp)) for _ in range(100)}

    assert orders == {("node-1", "node-2"), ("node-2", "node-1")}
