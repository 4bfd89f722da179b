"""Several broker addresses: the services connect to the first one that answers."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pika
from pydantic import SecretStr

from common import AmqpSettings
from common.pika_link import Link
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

    link = Link(settings, name="test failover first connect")
    await link.connect()
    try:
        channel = await link.channel()
        await channel.close()
        assert urlsplit(link.url).port == urlsplit(live).port
    finally:
        await link.close()


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


async def test_the_heartbeat_setting_reaches_every_address(amqp_settings: AmqpSettings) -> None:
    # A silent network is only noticed within two heartbeats: the setting must be negotiated.
    live = amqp_settings.url.get_secret_value()
    settings = amqp_settings.model_copy(
        update={"url": SecretStr(f"{_dead_address(live)},{live}"), "heartbeat": 7}
    )

    link = Link(settings, name="test failover heartbeat")
    await link.connect()
    try:
        assert link.connection is not None
        assert link.connection.params.heartbeat == 7  # as negotiated: pika writes it back
    finally:
        await link.close()
