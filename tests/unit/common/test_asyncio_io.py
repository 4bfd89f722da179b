"""pika's I/O services on asyncio's transports, against real local servers (plain and TLS)."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from pika.adapters.utils import nbio_interface

from common.asyncio_io import AsyncioServices


class Recorder(nbio_interface.AbstractStreamProtocol):  # type: ignore[misc]
    """pika's side of a stream, reduced to what it was told."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.arrived = asyncio.Event()
        self.eof = False
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, error: BaseException | None) -> None:
        self.lost.set_result(error)

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client aborted
    finally:
        writer.close()


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _serve(handler: Handler, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _connected(services: AsyncioServices, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    services.connect_socket(sock, ("127.0.0.1", port), done.set_result)
    assert await done is None
    return sock


async def _stream(
    services: AsyncioServices,
    port: int,
    *,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[Any, Recorder]:
    sock = await _connected(services, port)
    linked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    services.create_streaming_connection(
        Recorder, sock, linked.set_result, ssl_context=tls, server_hostname=server_hostname
    )
    result = await asyncio.wait_for(linked, 10)
    assert not isinstance(result, BaseException), result
    transport, protocol = result
    assert protocol.transport is transport
    assert transport.get_protocol() is protocol
    return transport, protocol


async def _received(protocol: Recorder, size: int) -> bytes:
    async with asyncio.timeout(10):
        while len(protocol.data) < size:
            protocol.arrived.clear()
            await protocol.arrived.wait()
    return bytes(protocol.data)


Run = Callable[[Callable[[AsyncioServices], Coroutine[Any, Any, None]]], None]


@pytest.fixture(params=[asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a test on a loop of its own, on both loops: uvloop's transports are only alike
    asyncio's (not subclasses), and the services must work on either."""

    def run(test: Callable[[AsyncioServices], Coroutine[Any, Any, None]]) -> None:
        async def main() -> None:
            await test(AsyncioServices(asyncio.get_running_loop()))

        with asyncio.Runner(loop_factory=request.param) as runner:
            runner.run(main())

    return run


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``, made by the openssl command."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def _client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate[0]))


def test_frames_written_in_one_turn_wait_for_it_and_arrive_whole_in_order(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        server = await _serve(_echo)
        async with server:
            transport, protocol = await _stream(services, _port(server))
            frames = [b"method", b"header", b"body" * 1000]
            for frame in frames:
                transport.write(frame)
            # Held for the end of this turn of the loop, then sent together.
            assert transport.get_write_buffer_size() == sum(map(len, frames))
            assert await _received(protocol, 4012) == b"".join(frames)
            transport.abort()
            assert await protocol.lost is None

    run(test)


def test_a_tls_stream_verifies_the_server_name(run: Run, certificate: tuple[Path, Path]) -> None:
    async def test(services: AsyncioServices) -> None:
        server = await _serve(_echo, _server_tls(certificate))
        async with server:
            transport, protocol = await _stream(
                services, _port(server), tls=_client_tls(certificate), server_hostname="localhost"
            )
            transport.write(b"over tls")
            assert await _received(protocol, 8) == b"over tls"
            transport.abort()
            await protocol.lost

    run(test)


def test_a_tls_stream_to_the_wrong_name_fails_and_closes_its_socket(
    run: Run, certificate: tuple[Path, Path]
) -> None:
    async def test(services: AsyncioServices) -> None:
        server = await _serve(_echo, _server_tls(certificate))
        async with server:
            sock = await _connected(services, _port(server))
            linked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            services.create_streaming_connection(
                Recorder,
                sock,
                linked.set_result,
                ssl_context=_client_tls(certificate),
                server_hostname="elsewhere.example",
            )
            outcome = await asyncio.wait_for(linked, 10)
        assert isinstance(outcome, ssl.SSLCertVerificationError)
        assert sock.fileno() == -1

    run(test)


def test_the_peer_closing_is_an_eof_then_a_loss(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        server = await _serve(_close_at_once)
        async with server:
            transport, protocol = await _stream(services, _port(server))
            assert await asyncio.wait_for(protocol.lost, 10) is None
        assert protocol.eof
        transport.write(b"after the loss")  # dropped, as pika's own transport drops it

    run(test)


def test_an_abort_is_reported_after_the_call_and_drops_what_was_pending(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        server = await _serve(_echo)
        async with server:
            transport, protocol = await _stream(services, _port(server))
            transport.write(b"never sent")
            transport.abort()
            assert not protocol.lost.done()  # asynchronously, as the interface says
            assert await asyncio.wait_for(protocol.lost, 10) is None
            assert transport.get_write_buffer_size() == 0

    run(test)


def test_a_cancelled_connection_never_reports_and_closes_its_socket(
    run: Run, certificate: tuple[Path, Path]
) -> None:
    async def test(services: AsyncioServices) -> None:
        release = asyncio.Event()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await release.wait()  # a handshake the server never answers
            finally:
                writer.close()

        silent = await asyncio.start_server(hold, "127.0.0.1", 0)
        async with silent:
            sock = await _connected(services, _port(silent))
            reports: list[object] = []
            before = asyncio.all_tasks()
            pending = services.create_streaming_connection(
                Recorder,
                sock,
                reports.append,
                ssl_context=_client_tls(certificate),
                server_hostname="localhost",
            )
            (linking,) = asyncio.all_tasks() - before
            assert pending.cancel() is True
            await asyncio.wait([linking], timeout=10)
            release.set()
        assert linking.cancelled()
        assert sock.fileno() == -1
        assert reports == []
        assert pending.cancel() is False

    run(test)


def test_a_timer_runs_unless_cancelled(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        fired: list[str] = []
        done = asyncio.Event()

        def fire(name: str) -> None:
            fired.append(name)
            done.set()

        services.call_later(0, lambda: fire("cancelled")).cancel()
        services.call_later(0, lambda: fire("ran"))
        await asyncio.wait_for(done.wait(), 10)
        assert fired == ["ran"]

    run(test)


def test_connecting_wants_an_address_not_a_name(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        with socket.socket() as sock, pytest.raises(ValueError, match="not an address"):
            services.connect_socket(sock, ("localhost", 5672), lambda _: None)

    run(test)


def test_a_refused_connection_is_reported(run: Run) -> None:
    async def test(services: AsyncioServices) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # bound, never listening: refused
            sock = socket.socket()
            sock.setblocking(False)
            done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
            services.connect_socket(sock, ("127.0.0.1", port), done.set_result)
            assert isinstance(await asyncio.wait_for(done, 10), ConnectionRefusedError)
            sock.close()

    run(test)
