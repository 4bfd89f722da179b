"""Retry maths: exponential backoff with jitter, and the delay bucket a wait is parked in.

Pure functions: the random source is passed in, so they are tested without a clock.
"""

from __future__ import annotations

import random
from typing import Final

# Waiting retries sit in the broker, never in an executor's memory: one durable delay queue
# per power-of-two bucket, each message carrying its own TTL. A classic queue only expires
# messages at its head, so a wait may overrun by less than its bucket's lower bound
# (https://www.rabbitmq.com/docs/ttl#per-message-ttl-caveats); buckets keep that bounded.
MIN_BUCKET_S: Final = 1
MAX_BUCKET_S: Final = 2**16  # about 18 hours

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


def delay_bucket(delay_s: float) -> int:
    """The bucket (seconds, a power of two) whose range [bucket, 2 x bucket) holds ``delay_s``."""
    bucket = MIN_BUCKET_S
    while bucket * 2 <= delay_s and bucket < MAX_BUCKET_S:
        bucket *= 2
    return bucket
