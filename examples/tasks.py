"""Example task types: a fast one, a slow one (progress, cancel), one that fails sometimes,
and an ``async def`` one that waits on I/O without holding a thread.

Run them with ``executor run --tasks examples.tasks``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from typing import Annotated

from pydantic import Field

from common import TaskRegistry, current_task_context

registry = TaskRegistry()

# Fixed rates keep the example deterministic; a real task would call a rates service.
_RATES_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0062, "CHF": 1.05}


@registry.task("word_count")
def word_count(text: str, top: Annotated[int, Field(ge=1, le=100)] = 3) -> dict[str, object]:
    """Fast: count the words of a text and name the most common ones."""
    words = re.findall(r"[\w']+", text.lower())
    return {"words": len(words), "top": Counter(words).most_common(top)}


# Slow and heavy: on a queue of its own, so that a pool of its own can run it (docker-compose.yml).
@registry.task("render_report", max_retries=5, retry_backoff=2.0, queue="reports")
def render_report(
    title: str,
    pages: Annotated[int, Field(ge=1, le=50)] = 5,
    ms_per_page: Annotated[int, Field(ge=0, le=5_000)] = 40,
) -> dict[str, object]:
    """Slow: render a report page by page, reporting progress and stopping if cancelled."""
    context = current_task_context()
    for page in range(pages):
        context.raise_if_cancelled()
        context.progress(100 * page / pages, f"page {page + 1} of {pages}")
        time.sleep(ms_per_page / 1000)
    return {"title": title, "pages": pages, "bytes": pages * 48_213}


# A missing rate will still be missing on the next attempt: fail at once instead of retrying.
@registry.task("convert_currency", permanent=(LookupError,))
def convert_currency(
    amount: Annotated[float, Field(ge=0)], source: str, target: str
) -> dict[str, object]:
    """Fails for currencies without a rate: the error and traceback reach the task store."""
    try:
        in_eur = amount * _RATES_TO_EUR[source.upper()]
        converted = in_eur / _RATES_TO_EUR[target.upper()]
    except KeyError as exc:
        raise LookupError(f"no exchange rate for {exc.args[0]}") from None
    return {"amount": round(converted, 2), "currency": target.upper()}


# An ``async def`` handler runs on the executor's event loop instead of a thread: right for work
# that mostly awaits I/O (an HTTP call, a database), wrong for anything that blocks or computes,
# which would stall the loop that also carries the broker connection's heartbeats.
@registry.task("notify", time_limit=30)
async def notify(
    recipient: str, message: str, latency_ms: Annotated[int, Field(ge=0, le=10_000)] = 20
) -> dict[str, object]:
    """Async: deliver a message to a (simulated) notification service and await its answer."""
    context = current_task_context()
    context.progress(0, f"sending to {recipient}")
    await asyncio.sleep(latency_ms / 1000)  # stands in for `await client.post(...)`
    return {"recipient": recipient, "delivered": True, "chars": len(message)}
