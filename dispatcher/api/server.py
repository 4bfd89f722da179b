"""Serving the API with uvicorn in the dispatcher's own event loop, on a socket bound first."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from common import ConfigError
from common.logging import get_logger

log = get_logger(__name__)

# Seconds open requests (a long-polling wait) get to finish after a stop signal.
_GRACEFUL_SHUTDOWN_S = 5


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); ``ConfigError`` if taken.

    Bound before anything connects, so a port in use stops start-up with exit code 2.
    """
    try:
        family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.create_server(address, family=family)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on WQ_DISPATCHER_HTTP_HOST={host} WQ_DISPATCHER_HTTP_PORT={port}: "
            f"{exc.strerror or exc}"
        ) from exc
    return sock


def url_of(sock: socket.socket) -> str:
    """The base URL the socket answers on (the real port when 0 was asked for)."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    # The dispatcher's own SIGTERM/SIGINT handlers stop everything in order; uvicorn's would
    # replace them and re-raise the signal after its shutdown.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_api(app: FastAPI, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then let open requests finish."""
    config = uvicorn.Config(
        app,
        log_config=None,  # records go to the root logger, which structlog renders
        access_log=False,  # RequestLog writes one structured line per request instead
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()[:2]
    log.info("http_api_listening", url=url_of(sock), host=host, port=port)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
