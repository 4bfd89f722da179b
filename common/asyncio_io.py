"""pika's I/O services on asyncio's own transports.

pika's asyncio adapter drives the socket itself: it turns a writability watcher on and off
around every flush (two ``epoll_ctl`` calls), sends each AMQP frame with its own ``send``
(a publish is three) and reads until the socket raises ``EAGAIN``. asyncio's transports
(uvloop's, in C) do that work themselves, and pika's I/O interface
(``pika.adapters.utils.nbio_interface``) is shaped after asyncio's transports and
protocols so that it can run on them: ``AsyncioServices`` is that implementation. The
frames written in one turn of the loop leave in one ``send``.

Given to ``AsyncioConnection`` as its ``custom_ioloop``; everything else about the
connection (its AMQP state, heartbeats, callbacks) stays pika's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, cast

from pika.adapters.utils import nbio_interface


class AsyncioServices(nbio_interface.AbstractIOServices):  # type: ignore[misc]
    """``AbstractIOServices`` on ``loop``: timers, resolution, connect and streams."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def get_native_ioloop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close(self) -> None:
        """Nothing to release: the loop belongs to the application, not to a connection."""

    def run(self) -> None:
        self._loop.run_forever()

    def stop(self) -> None:
        self._loop.stop()

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Timer:
        return _Timer(self._loop.call_later(delay, callback))

    def getaddrinfo(
        self,
        host: str,
        port: int,
        on_done: Callable[[Any], None],
        family: int = 0,
        socktype: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> _Operation:
        resolving = self._loop.getaddrinfo(
            host, port, family=family, type=socktype, proto=proto, flags=flags
        )
        return _Operation(self._loop, resolving, on_done)

    def connect_socket(
        self,
        sock: socket.socket,
        resolved_addr: tuple[str, int],
        on_done: Callable[[BaseException | None], None],
    ) -> _Operation:
        try:
            socket.inet_pton(sock.family, resolved_addr[0])
        except OSError as exc:  # a name, or the other family's address: ValueError, as specified
            raise ValueError(
                f"not an address of the socket's family: {resolved_addr[0]!r}"
            ) from exc
        return _Operation(self._loop, self._loop.sock_connect(sock, resolved_addr), on_done)

    def create_streaming_connection(
        self,
        protocol_factory: Callable[[], nbio_interface.AbstractStreamProtocol],
        sock: socket.socket,
        on_done: Callable[[Any], None],
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> _Operation:
        streaming = self._stream(protocol_factory, sock, ssl_context, server_hostname)
        # The socket is ours from this call on: closed unless a transport took it.
        return _Operation(self._loop, streaming, on_done, unless_done=sock.close)

    async def _stream(
        self,
        protocol_factory: Callable[[], nbio_interface.AbstractStreamProtocol],
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> tuple[_Transport, nbio_interface.AbstractStreamProtocol]:
        protocol = protocol_factory()
        bridge = _Bridge(self._loop, protocol)
        await self._loop.create_connection(
            lambda: bridge,
            sock=sock,
            ssl=ssl_context,
            server_hostname=server_hostname if ssl_context is not None else None,
        )
        assert bridge.transport is not None
        return bridge.transport, protocol


class _Operation(nbio_interface.AbstractIOReference):  # type: ignore[misc]
    """A pending operation: ``on_done`` gets its result or exception, unless cancelled.

    ``unless_done`` runs when it was cancelled or failed (even cancelled before it began).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Coroutine[Any, Any, Any],
        on_done: Callable[[Any], None],
        *,
        unless_done: Callable[[], None] | None = None,
    ) -> None:
        def finished(task: asyncio.Task[Any]) -> None:
            failed = task.cancelled() or task.exception() is not None
            if failed and unless_done is not None:
                unless_done()
            if not task.cancelled():
                on_done(task.exception() or task.result())

        self._task = loop.create_task(work)
        self._task.add_done_callback(finished)

    def cancel(self) -> bool:
        return self._task.cancel()


class _Timer(nbio_interface.AbstractTimerReference):  # type: ignore[misc]
    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle.cancel()


class _Bridge(asyncio.Protocol):
    """asyncio's side of the stream: hands every event to pika's protocol as it comes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, protocol: nbio_interface.AbstractStreamProtocol
    ) -> None:
        self._loop = loop
        self._protocol = protocol
        self.transport: _Transport | None = None
        # Bound once: the transport calls these for every read, with no frame of ours between.
        self.data_received = protocol.data_received  # type: ignore[method-assign]
        self.eof_received = protocol.eof_received  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not a subclass of asyncio.Transport, only alike).
        self.transport = _Transport(self._loop, cast(asyncio.Transport, transport), self._protocol)
        self._protocol.connection_made(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport.lost()
        self._protocol.connection_lost(exc)


class _Transport(nbio_interface.AbstractStreamTransport):  # type: ignore[misc]
    """pika's side of the stream: frames written in one turn of the loop go out together."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        protocol: nbio_interface.AbstractStreamProtocol,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = protocol
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._open = True

    def write(self, data: bytes) -> None:
        if not data:
            raise ValueError("write() of empty data")
        if not self._open:
            return  # as pika's own transport: writes after a loss are dropped
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._pending_bytes += len(data)

    def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if self._open and not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes + self._transport.get_write_buffer_size()

    def get_protocol(self) -> nbio_interface.AbstractStreamProtocol:
        return self._protocol

    def abort(self) -> None:
        self.lost()
        self._transport.abort()

    def lost(self) -> None:
        self._open = False
        self._pending.clear()
        self._pending_bytes = 0
