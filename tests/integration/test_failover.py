"""Several broker addresses: the services connect to the first one that answers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pika
from pydantic import SecretStr

from common import AmqpSettings
from common.amqp import connect
from dispatcher.sync_client import _connection_parameters


def _dead_address(url: str) -> str:
    """``url`` pointed at a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return urlsplit(url)._replace(netloc=f"guest:guest@127.0.0.1:{port}").geturl()


async def test_connect_skips_an_address_that_refuses(amqp_settings: AmqpSettings) -> None:
    live = amqp_settings.url.get_secret_value()
    settings = amqp_settings.model_copy(update={"url": SecretStr(f"{_dead_address(live)},{live}")})

    connection = await connect(settings, name="test failover first connect")
    try:
        channel = await connection.channel()
        await channel.close()
        assert connection.url.port == urlsplit(live).port
    finally:
        await connection.close()


def test_sync_client_parameters_skip_an_address_that_refuses(
    amqp_settings: AmqpSettings,
) -> None:
    live = amqp_settings.url.get_secret_value()
    settings = amqp_settings.model_copy(update={"url": SecretStr(f"{_dead_address(live)},{live}")})

    connection = pika.BlockingConnection(_connection_parameters(settings))
    try:
        assert connection.is_open
    finally:
        connection.close()
