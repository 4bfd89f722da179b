"""Readiness as a file: present while the process consumes, absent otherwise.

Neither service has a health port it can count on (the dispatcher's HTTP API can be turned
off, the executor has none), so orchestrators probe with ``test -f PATH`` (a compose
healthcheck, a Kubernetes exec probe). The file disappears when the connection is lost and
comes back when the robust connection has restored the consumer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from common.logging import get_logger

log = get_logger(__name__)


class _CallbackSet(Protocol):
    def add(self, callback: Callable[..., Any], /) -> Any: ...


class RobustConnection(Protocol):
    """A connection that says when it is lost and when it is restored (either client's)."""

    @property
    def close_callbacks(self) -> _CallbackSet: ...

    @property
    def reconnect_callbacks(self) -> _CallbackSet: ...


class ReadyFile:
    """A readiness file at ``path``; every method is a no-op when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._following = True

    def set(self) -> None:
        """Mark the process ready."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("ready\n")

    def clear(self) -> None:
        """Mark the process not ready."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def follow(self, connection: RobustConnection) -> None:
        """Clear on connection loss, set again once the robust connection is restored."""

        def lost(_: object, exc: BaseException | None = None) -> None:
            self.clear()

        def restored(_: object) -> None:
            if self._following:
                self.set()

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(restored)

    def stop_following(self) -> None:
        """Not ready for good: a stopping process stays so, whatever its connection does."""
        self._following = False
        self.clear()
