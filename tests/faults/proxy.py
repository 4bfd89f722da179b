"""A TCP proxy between a client and a broker that a test can cut or silence on demand.

The proxy runs its own asyncio loop in a daemon thread, so sync tests (pika) and async tests
(with their own loop) use it the same way. Its methods are plain calls that hand the
work to the proxy's loop and return once it is done (a few milliseconds), e.g.::

    with TcpProxy("127.0.0.1", broker.amqp_port) as proxy:
        connection = pika.BlockingConnection(pika.URLParameters(proxy.url_for(broker.url)))
        proxy.cut()          # both sockets reset: the client sees the connection drop
        proxy.blackhole()    # sockets stay open, nothing moves: only heartbeats notice
        proxy.restore()      # bytes flow again (held ones included)

``blackhole`` holds bytes (and end-of-stream) instead of dropping them, like a network
partition with TCP retransmits: after ``restore`` a connection that nobody gave up on carries
on intact. New connections are accepted while blackholed, but their bytes are held as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

CHUNK = 64 * 1024


def _reset_on_close(writer: asyncio.StreamWriter) -> None:
    """Make the next close send RST (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    task: asyncio.Task[Any] | None = None

    def close(self, *, abrupt: bool) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if abrupt:
                _reset_on_close(writer)
                writer.transport.abort()
            else:
                writer.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; see the module docstring."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        connect_timeout: float = 5.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._connect_timeout = connect_timeout
        self._links: set[_Link] = set()
        self._accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"TcpProxy->{target_port}", daemon=True
        )
        self._thread.start()
        try:
            self._server = self._call(
                asyncio.start_server(self._on_client, listen_host, 0, reuse_address=True)
            )
        except BaseException:
            self._stop_loop()
            raise
        self.port: int = self._server.sockets[0].getsockname()[1]

    # ------------------------------------------------------------------ public

    @property
    def active_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._links)

    @property
    def accepted_connections(self) -> int:
        """Client connections accepted since the proxy started."""
        return self._accepted

    @property
    def blackholed(self) -> bool:
        """Whether bytes are currently held instead of forwarded."""
        return not self._flowing.is_set()

    def url_for(self, amqp_url: str) -> str:
        """``amqp_url`` with host and port replaced by the proxy's (credentials, vhost kept)."""
        parts = urlsplit(amqp_url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{self.listen_host}:{self.port}"
        if userinfo:
            netloc = f"{userinfo}@{netloc}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        """Reset every current client and upstream socket; new connections are still accepted."""
        self._call(self._cut())

    def blackhole(self) -> None:
        """Stop moving bytes in both directions, keeping every socket open."""
        self._call(self._set_flowing(False))

    def restore(self) -> None:
        """Forward again, held bytes first."""
        self._call(self._set_flowing(True))

    def close(self) -> None:
        """Stop listening, reset every connection and stop the proxy's thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._shutdown())
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TcpProxy({self.listen_host}:{self.port} -> {self.target_host}:{self.target_port}, "
            f"active={self.active_connections}, blackholed={self.blackholed})"
        )

    # ----------------------------------------------------------- proxy thread

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the proxy is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        links = list(self._links)
        for link in links:
            link.close(abrupt=True)
        tasks = [link.task for link in links if link.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _shutdown(self) -> None:
        self._server.close()
        await self._cut()
        await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(client=writer, task=asyncio.current_task())
        self._links.add(link)
        self._accepted += 1
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port),
                    self._connect_timeout,
                )
            except (OSError, TimeoutError):
                link.close(abrupt=True)  # target down: the client sees a reset, as it would
                return
            link.upstream = up_writer
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
            link.close(abrupt=False)
        except asyncio.CancelledError:
            link.close(abrupt=True)
        finally:
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until end of stream; hold everything while blackholed."""
        try:
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            return
