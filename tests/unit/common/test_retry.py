"""Retry maths: exponential backoff with equal jitter, and the delay bucket a wait is parked in."""

from __future__ import annotations

import random

import pytest

from common.retry import backoff_delay


class Extreme(random.Random):
    """A random source that always draws the low or the high end of the range."""

    def __init__(self, *, high: bool) -> None:
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 512.0), (11, 600.0), (50, 600.0)],
)
def test_backoff_doubles_per_attempt_up_to_the_cap(attempt: int, ceiling: float) -> None:
    high = backoff_delay(attempt, base=1.0, cap=600.0, rng=Extreme(high=True))
    low = backoff_delay(attempt, base=1.0, cap=600.0, rng=Extreme(high=False))

    assert high == ceiling
    assert low == ceiling / 2


def test_backoff_starts_at_the_base() -> None:
    assert backoff_delay(1, base=2.5, cap=600.0, rng=Extreme(high=True)) == 2.5
    assert backoff_delay(2, base=2.5, cap=600.0, rng=Extreme(high=True)) == 5.0


def test_cap_below_the_base_wins() -> None:
    assert backoff_delay(1, base=10.0, cap=3.0, rng=Extreme(high=True)) == 3.0


@pytest.mark.parametrize("attempt", [1, 2, 5, 12])
def test_backoff_stays_within_the_jitter_bounds_for_many_seeds(attempt: int) -> None:
    ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))

    delays = [
        backoff_delay(attempt, base=0.5, cap=60.0, rng=random.Random(seed)) for seed in range(500)
    ]

    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 400  # jitter spreads retries that failed together


def test_backoff_is_reproducible_with_a_seeded_random_source() -> None:
    first = backoff_delay(3, base=1.0, cap=600.0, rng=random.Random(42))

    assert backoff_delay(3, base=1.0, cap=600.0, rng=random.Random(42)) == first


def test_backoff_works_without_a_random_source() -> None:
    assert 2.0 <= backoff_delay(2, base=2.0, cap=600.0) <= 4.0


def test_attempt_zero_is_treated_as_the_first() -> None:
    assert backoff_delay(0, base=1.0, cap=600.0, rng=Extreme(high=True)) == 1.0


def test_backoff_of_a_very_late_attempt_is_the_cap() -> None:
    assert backoff_delay(2000, base=1.0, cap=600.0, rng=Extreme(high=True)) == 600.0
