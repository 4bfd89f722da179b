"""The one clock the tests inject: moved by hand, or ticking on by a fixed step at each reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class Clock:
    """A ``datetime`` clock the test controls; ``now`` may also be set outright.

    With ``tick``, each reading first moves the clock on by that step, so that every event a
    test causes has its own time (the listing then orders by submission).
    """

    def __init__(self, start: datetime = T0, *, tick: timedelta = timedelta()) -> None:
        self.now = start
        self._tick = tick

    def __call__(self) -> datetime:
        self.now += self._tick
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.now += timedelta(seconds=seconds)
