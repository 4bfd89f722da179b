"""The consumer's edge on a stub channel: every delivery is settled, whatever its handling raises.

``Executor._on_message`` is where a delivery enters; a task runs and is settled through the
settler, a broker failure half-way requeues it, and a bug is dead-lettered instead of looping.
Each way, the delivery leaves the in-flight set, so a stop is never held up by it.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from structlog.testing import capture_logs

from common import (
    STARTED_TYPE,
    AmqpSettings,
    LogSettings,
    PermanentTaskError,
    TaskRegistry,
    decode_start,
)
from common.logging import configure, get_logger
from executor import consumer, settling
from executor.consumer import Executor
from tests.unit.executor.stub_channel import StubChannel, StubDelivery, task_delivery

registry = TaskRegistry()


@registry.task("echo")
def echo(value: int) -> dict[str, Any]:
    return {"value": value}


@registry.task("refuse")
def refuse(value: int) -> None:
    raise PermanentTaskError(f"{value} is not allowed")


class StubConnection:
    """Hands out the one stub channel, as a publishing connection would its confirm channel."""

    def __init__(self, channel: StubChannel) -> None:
        self._channel = channel

    async def channel(self, **_: Any) -> StubChannel:
        return self._channel


@pytest.fixture
async def wired() -> AsyncIterator[tuple[Executor, StubChannel]]:
    """An executor whose publishing side is wired to a stub channel, as ``run`` wires it."""
    channel = StubChannel()
    executor = Executor(amqp=AmqpSettings(), registry=registry, name="e1")
    await executor._open_publishing(StubConnection(channel))  # type: ignore[arg-type]
    yield executor, channel
    executor._threads.close()


def _in_flight(executor: Executor) -> int:
    return len(executor._in_flight)


async def test_a_task_is_announced_runs_then_is_reported_then_acked(
    wired: tuple[Executor, StubChannel],
) -> None:
    executor, channel = wired

    await executor._on_message(task_delivery(channel))  # type: ignore[arg-type]

    # The start notice is confirmed before the handler runs: a handler that kills the
    # process has still been counted towards the delivery limit.
    assert channel.events == [("published", "wq.progress"), ("published", "wq.results"), ("ack",)]
    (start,) = channel.published_to("wq.progress")
    assert start.type == STARTED_TYPE
    notice = decode_start(start.body)
    assert (notice.attempt, notice.executor, notice.delivery_limit) == (1, "e1", 5)
    assert notice.redelivered is False
    assert _in_flight(executor) == 0


async def test_a_start_notice_the_broker_refuses_does_not_stop_the_task(
    wired: tuple[Executor, StubChannel],
) -> None:
    executor, channel = wired
    channel.refuse("wq.progress", "nack")

    with capture_logs() as logs:
        await executor._on_message(task_delivery(channel))  # type: ignore[arg-type]

    assert channel.events == [("refused", "wq.progress"), ("published", "wq.results"), ("ack",)]
    assert "start_not_published" in [line["event"] for line in logs]


async def test_a_redelivered_task_runs_and_says_so(wired: tuple[Executor, StubChannel]) -> None:
    # A broker crash flags messages redelivered that never started: the flag alone is no
    # reason to hold a task back, nor to count it towards the delivery limit.
    executor, channel = wired

    await executor._on_message(task_delivery(channel, redelivered=True))  # type: ignore[arg-type]

    assert channel.events == [("published", "wq.progress"), ("published", "wq.results"), ("ack",)]
    assert decode_start(channel.published_to("wq.progress")[0].body).redelivered is True
    assert b'"redelivered":true' in channel.published_to("wq.results")[0].body


async def test_a_bug_in_handling_dead_letters_the_delivery_instead_of_looping(
    wired: tuple[Executor, StubChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    executor, channel = wired

    async def broken(message: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(executor._admission, "job_for", broken)

    with capture_logs() as logs:
        await executor._on_message(task_delivery(channel))  # type: ignore[arg-type]

    assert channel.events == [("reject", "drop")]
    assert [line["event"] for line in logs] == ["delivery_handling_failed"]
    assert _in_flight(executor) == 0


async def test_a_broker_failure_half_way_gives_the_delivery_back(
    wired: tuple[Executor, StubChannel], monkeypatch: pytest.MonkeyPatch
) -> None:
    executor, channel = wired
    monkeypatch.setattr(settling, "_REQUEUE_PAUSE_S", 0.0)
    delivery = task_delivery(channel)
    delivery.fail_ack = True  # the consuming channel is gone when the ack is sent

    with capture_logs() as logs:
        await executor._on_message(delivery)  # type: ignore[arg-type]

    assert channel.events == [
        ("published", "wq.progress"),
        ("published", "wq.results"),
        ("nack", "requeue"),
    ]
    assert "delivery_unsettled" in [line["event"] for line in logs]
    assert _in_flight(executor) == 0


async def test_an_undecodable_body_is_dead_lettered_and_the_consumer_goes_on(
    wired: tuple[Executor, StubChannel],
) -> None:
    executor, channel = wired

    await executor._on_message(StubDelivery(channel, b"\xff not json"))  # type: ignore[arg-type]
    await executor._on_message(task_delivery(channel))  # type: ignore[arg-type]

    assert channel.events == [
        ("published", "wq.tasks.dead"),
        ("ack",),
        ("published", "wq.progress"),
        ("published", "wq.results"),
        ("ack",),
    ]


async def _console_lines(
    executor: Executor,
    channel: StubChannel,
    level: Literal["debug", "info"],
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """What a person at a terminal reads for one task that succeeds and one that fails."""
    out = io.StringIO()
    configure(LogSettings(level=level, format="console"), stream=out)
    # Loggers keep the level of the first configure they were used under (cached on first
    # use): the module's own logger, fresh, as a process that configures once has it.
    monkeypatch.setattr(consumer, "log", get_logger(consumer.__name__))
    await executor._on_message(task_delivery(channel))  # type: ignore[arg-type]
    await executor._on_message(task_delivery(channel, "refuse"))  # type: ignore[arg-type]
    return out.getvalue().splitlines()


async def test_task_lines_name_the_executor_without_delivery_detail_at_info(
    wired: tuple[Executor, StubChannel], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor, channel = wired

    lines = await _console_lines(executor, channel, "info", monkeypatch)

    succeeded = next(line for line in lines if "task_succeeded" in line)
    failed = next(line for line in lines if "task_failed" in line)
    for line in (succeeded, failed):
        assert "executor=e1" in line
        assert "delivery_tag" not in line
    # A final failure is simply acked: nothing to announce about what comes next.
    assert "then=" not in failed
    assert "retry_in_s" not in failed
    assert not any("task_received" in line for line in lines)


async def test_the_delivery_tag_is_debug_detail(
    wired: tuple[Executor, StubChannel], restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor, channel = wired

    lines = await _console_lines(executor, channel, "debug", monkeypatch)

    received = [line for line in lines if "task_received" in line]
    assert len(received) == 2
    assert all("delivery_tag=1" in line and "executor=e1" in line for line in received)
