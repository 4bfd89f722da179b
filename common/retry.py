"""Retry maths: exponential backoff with jitter.

Pure functions: the random source is passed in, so they are tested without a clock.
"""

from __future__ import annotations

import random

_RANDOM = random.Random()


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retrying after failed attempt ``attempt`` (1-based).

    Doubles from ``base`` per attempt up to ``cap``; "equal jitter" keeps at least half of
    the wait while spreading retries that failed together.
    """
    doublings = min(max(attempt - 1, 0), 63)  # past 2**63 the cap wins anyway; no overflow
    ceiling: float = min(cap, base * 2.0**doublings)
    return ceiling / 2 + (rng or _RANDOM).uniform(0, ceiling / 2)
