"""Bar charts for the overview, drawn as SVG on the server: no chart library, no script.

Each chart is a list of bars with their heights already scaled to the chart's box, and a
title per bar for people (and screen readers) who hover or read it as a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Final

from dispatcher.store.records import ActivityBucket

HEIGHT: Final = 80.0
BAR: Final = 10.0
GAP: Final = 2.0

# The spans the overview shows: label, bucket width, number of buckets.
SPANS: Final = (("hour", timedelta(minutes=5), 12), ("day", timedelta(hours=1), 24))


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket's bar: x, and two stacked segments (lower first), with its label."""

    x: float
    lower: float
    upper: float
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart: its bars, the scale's top value and what the chart shows."""

    label: str
    bars: list[Bar]
    top: str
    width: float


def throughput(label: str, buckets: Sequence[ActivityBucket]) -> Chart:
    """Succeeded (lower, green) and failed or dead (upper, red) per bucket."""
    top = max((b.succeeded + b.failed for b in buckets), default=0) or 1
    bars = [
        Bar(
            x=n * (BAR + GAP),
            lower=HEIGHT * b.succeeded / top,
            upper=HEIGHT * b.failed / top,
            title=f"{_when(b)}: {b.succeeded} succeeded, {b.failed} failed",
        )
        for n, b in enumerate(buckets)
    ]
    return Chart(label, bars, str(top), len(bars) * (BAR + GAP))


def durations(label: str, buckets: Sequence[ActivityBucket]) -> Chart:
    """p50 (lower) and p95 (the rest up to it) of the run time per bucket."""
    top = max((b.p95_s or 0.0 for b in buckets), default=0.0) or 1.0
    bars = []
    for n, b in enumerate(buckets):
        p50, p95 = b.p50_s or 0.0, b.p95_s or 0.0
        title = f"{_when(b)}: p50 {_seconds(b.p50_s)}, p95 {_seconds(b.p95_s)}"
        bars.append(
            Bar(n * (BAR + GAP), HEIGHT * p50 / top, HEIGHT * max(p95 - p50, 0.0) / top, title)
        )
    return Chart(label, bars, _seconds(top), len(bars) * (BAR + GAP))


def _when(bucket: ActivityBucket) -> str:
    return bucket.start.astimezone(UTC).strftime("%H:%M UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
