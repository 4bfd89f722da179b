"""FailoverConnection walks the broker addresses; no broker needed (attempts are faked)."""

from __future__ import annotations

from dataclasses import dataclass, field

import aio_pika
import pytest

from common.amqp import FailoverConnection

URLS = ["amqp://u:p@node-1:5672/", "amqp://u:p@node-2:5672/", "amqp://u:p@node-3:5672/"]


@dataclass
class FakeNodes:
    """Stands in for single-address attempts: hosts in ``down`` refuse, the rest accept."""

    down: set[str] = field(default_factory=set)
    tried: list[str] = field(default_factory=list)

    async def attempt(self, connection: FailoverConnection) -> None:
        host = str(connection.url.host)
        self.tried.append(host)
        if host in self.down:
            raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture
def nodes(monkeypatch: pytest.MonkeyPatch) -> FakeNodes:
    fake = FakeNodes()
    monkeypatch.setattr("common.amqp._CONNECT_TRANSPORT", fake.attempt)
    return fake


async def attempt(connection: FailoverConnection) -> None:
    """One connection attempt, as RobustConnection's reconnect loop makes it."""
    await connection._RobustConnection__connect_transport()


def test_aio_pika_still_has_the_attempt_hook_we_override() -> None:
    # A rename in aio-pika would silently bring back single-address reconnects.
    assert "_RobustConnection__connect_transport" in vars(aio_pika.RobustConnection)


async def test_the_first_attempt_uses_the_first_address(nodes: FakeNodes) -> None:
    connection = FailoverConnection(URLS)

    await attempt(connection)

    assert nodes.tried == ["node-1"]
    assert connection.url.host == "node-1"


async def test_an_attempt_skips_dead_addresses(nodes: FakeNodes) -> None:
    nodes.down.add("node-1")
    connection = FailoverConnection(URLS)

    await attempt(connection)

    assert nodes.tried == ["node-1", "node-2"]
    assert connection.url.host == "node-2"


async def test_a_reconnect_starts_after_the_address_used_last(nodes: FakeNodes) -> None:
    connection = FailoverConnection(URLS)
    await attempt(connection)
    nodes.down.add("node-2")

    await attempt(connection)

    assert nodes.tried == ["node-1", "node-2", "node-3"]
    assert connection.url.host == "node-3"


async def test_an_attempt_fails_only_when_every_address_failed(nodes: FakeNodes) -> None:
    nodes.down.update({"node-1", "node-2", "node-3"})
    connection = FailoverConnection(URLS)

    with pytest.raises(ConnectionRefusedError):
        await attempt(connection)

    assert nodes.tried == ["node-1", "node-2", "node-3"]


def test_an_empty_address_list_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FailoverConnection([])
