"""The task context: cancel flags and rate-limited progress, with an injected clock."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from uuid import uuid4

import pytest

from common import (
    ProgressUpdate,
    TaskCancelled,
    TaskContext,
    current_task_context,
    running_in,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    """A ``schedule`` stand-in: keeps the callbacks for the test to fire."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, fn: Callable[[], None]) -> None:
        self.pending.append((delay, fn))

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for _, fn in pending:
            fn()


def _context(sent: list[ProgressUpdate], clock: Clock, timers: Timers) -> TaskContext:
    return TaskContext(
        uuid4(), 1, report=sent.append, schedule=timers, min_interval=1.0, clock=clock
    )


def test_a_new_context_is_not_cancelled() -> None:
    context = TaskContext(uuid4())

    assert context.cancelled is False
    context.raise_if_cancelled()
    assert context.wait_for_cancel(0) is False


def test_a_cancelled_context_raises_task_cancelled_with_the_task_id() -> None:
    task_id = uuid4()
    context = TaskContext(task_id)

    context.cancel()

    assert context.cancelled is True
    assert context.wait_for_cancel(0) is True
    with pytest.raises(TaskCancelled) as raised:
        context.raise_if_cancelled()
    assert raised.value.task_id == task_id


def test_wait_for_cancel_wakes_when_another_thread_cancels() -> None:
    context = TaskContext(uuid4())
    waiting = threading.Event()
    woke: list[bool] = []

    def wait() -> None:
        waiting.set()
        woke.append(context.wait_for_cancel(10))

    thread = threading.Thread(target=wait)
    thread.start()
    waiting.wait(5)
    context.cancel()
    thread.join(5)

    assert woke == [True]


def test_the_first_report_is_sent_at_once() -> None:
    sent: list[ProgressUpdate] = []
    context = _context(sent, Clock(), Timers())

    context.progress(10, "started")

    assert sent == [ProgressUpdate(10.0, "started")]


def test_reports_inside_the_interval_are_held_and_the_latest_sent_when_it_ends() -> None:
    sent: list[ProgressUpdate] = []
    clock, timers = Clock(), Timers()
    context = _context(sent, clock, timers)
    context.progress(1)

    clock.now += 0.25
    for percent in range(2, 1000):
        context.progress(min(percent, 100) / 10)

    assert sent == [ProgressUpdate(1.0)]
    assert len(timers.pending) == 1  # one flush for the whole burst
    assert timers.pending[0][0] == pytest.approx(0.75)
    timers.fire()
    assert sent == [ProgressUpdate(1.0), ProgressUpdate(10.0)]


def test_a_report_after_the_interval_is_sent_at_once() -> None:
    sent: list[ProgressUpdate] = []
    clock = Clock()
    context = _context(sent, clock, Timers())
    context.progress(1)

    clock.now += 1.0
    context.progress(2)

    assert [update.percent for update in sent] == [1.0, 2.0]


def test_nothing_is_sent_after_close() -> None:
    sent: list[ProgressUpdate] = []
    clock, timers = Clock(), Timers()
    context = _context(sent, clock, timers)
    context.progress(1)
    clock.now += 0.1
    context.progress(2)

    context.close()
    timers.fire()
    context.progress(3)

    assert sent == [ProgressUpdate(1.0)]


@pytest.mark.parametrize("percent", [-0.1, 100.5, math.nan, math.inf, True, "50"])
def test_percent_must_be_a_number_from_0_to_100(percent: object) -> None:
    context = TaskContext(uuid4(), report=lambda update: None)

    with pytest.raises(ValueError, match="percent"):
        context.progress(percent)  # type: ignore[arg-type]


def test_a_note_longer_than_200_characters_is_refused() -> None:
    context = TaskContext(uuid4(), report=lambda update: None)
    context.progress(0, "x" * 200)

    with pytest.raises(ValueError, match="note"):
        context.progress(0, "x" * 201)


def test_outside_an_executor_the_context_is_detached_and_harmless() -> None:
    context = current_task_context()

    context.progress(50, "reports nowhere")
    assert context.task_id is None
    assert context.cancelled is False


def test_running_in_makes_a_context_current_and_restores_the_previous() -> None:
    context = TaskContext(uuid4())

    with running_in(context):
        assert current_task_context() is context
    assert current_task_context() is not context
