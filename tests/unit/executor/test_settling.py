"""Settling on a stub channel: what is published first, and how the delivery ends, per decision.

The order is the guarantee (docs/reliability.md): a dead-letter copy, then the result, then the
ack; a failure at any step leaves the delivery for the broker instead of losing it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common import AmqpSettings, BrokerError, ErrorKind, TaskErrorInfo, TaskRegistry
from executor.decisions import decide, decide_rejection
from executor.jobs import Delivery, Job, Rejection, prepare
from executor.runner import Attempt
from executor.settling import Settler, drop, give_back
from tests.unit.executor.stub_channel import StubChannel, StubDelivery, task_delivery

registry = TaskRegistry()


@registry.task("echo", max_retries=2, retry_backoff=1.0)
def echo(value: int) -> dict[str, Any]:
    return {"value": value}


AMQP = AmqpSettings()
TOPOLOGY = AMQP.topology
ERROR = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ValueError", message="boom")
STARTED = datetime(2026, 12, 1, 21, 0, 1, tzinfo=UTC)


def _ran(*, value: Any = None, error: TaskErrorInfo | None = None) -> Attempt:
    exception = ValueError(error.message) if error is not None else None
    return Attempt(
        STARTED, STARTED + timedelta(seconds=1), value=value, error=error, exception=exception
    )


def _job(delivery: StubDelivery) -> Job:
    prepared = prepare(
        Delivery(
            body=delivery.body,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            task_type_property=delivery.type,
            redelivered=delivery.redelivered,
        ),
        registry,
        max_body_bytes=AMQP.max_body_bytes,
    )
    assert isinstance(prepared, Job)
    return prepared


async def _settle(
    channel: StubChannel, delivery: StubDelivery, attempt: Attempt, job: Job | None = None
) -> None:
    job = job or _job(delivery)
    decision = decide(job, attempt, executor="e1", redelivered=False)
    settler = Settler(channel, amqp=AMQP, executor="e1")  # type: ignore[arg-type]
    await settler.carry_out(delivery, decision, error=attempt.error)  # type: ignore[arg-type]


async def test_a_success_is_reported_before_the_ack() -> None:
    channel = StubChannel()
    delivery = task_delivery(channel)

    await _settle(channel, delivery, _ran(value={"value": 1}))

    assert channel.events == [("published", "wq.results"), ("ack",)]


async def test_a_retry_is_reported_then_acked_with_no_copy() -> None:
    # The dispatcher publishes the next attempt from the recorded result, when it is due.
    channel = StubChannel()
    delivery = task_delivery(channel)

    await _settle(channel, delivery, _ran(error=ERROR))

    assert channel.events == [("published", "wq.results"), ("ack",)]
    (result,) = channel.published_to("wq.results")
    assert b'"outcome":"retrying"' in result.body
    assert channel.declared == []


async def test_the_last_failure_is_dead_lettered_with_its_reasons_before_the_result() -> None:
    channel = StubChannel()
    delivery = task_delivery(channel, attempt=3)

    await _settle(channel, delivery, _ran(error=ERROR))

    assert channel.events == [
        ("published", TOPOLOGY.task_dead_queue),
        ("published", "wq.results"),
        ("ack",),
    ]
    (copy,) = channel.published_to(TOPOLOGY.task_dead_queue)
    assert copy.headers["x-wq-dead-reason"] == "retries_exhausted"
    assert copy.headers["x-wq-attempts"] == 3
    assert copy.headers["x-wq-executor"] == "e1"


@pytest.mark.parametrize("how", ["nack", "unroutable"])
async def test_a_copy_the_broker_refuses_leaves_the_task_to_the_queues_dead_lettering(
    how: str,
) -> None:
    channel = StubChannel()
    channel.refuse(TOPOLOGY.task_dead_queue, how)
    delivery = task_delivery(channel, attempt=3)

    await _settle(channel, delivery, _ran(error=ERROR))

    assert channel.events == [("refused", TOPOLOGY.task_dead_queue), ("reject", "drop")]


async def test_an_unconfirmed_copy_requeues_the_task_rather_than_dead_letter_it_twice() -> None:
    # An alarm holds the confirm back and the copy may still land: rejecting now would put
    # a second copy in the dead letters through the queue's own dead-lettering.
    channel = StubChannel()
    channel.refuse(TOPOLOGY.task_dead_queue, "timeout")
    delivery = task_delivery(channel, attempt=3)

    await _settle(channel, delivery, _ran(error=ERROR))

    assert channel.events == [("refused", TOPOLOGY.task_dead_queue), ("nack", "requeue")]


async def test_a_result_without_a_confirm_requeues_the_task_to_run_again() -> None:
    channel = StubChannel()
    channel.refuse("wq.results", "timeout")
    delivery = task_delivery(channel)

    await _settle(channel, delivery, _ran(value={"value": 1}))

    assert channel.events == [("refused", "wq.results"), ("nack", "requeue")]


async def test_a_result_with_nowhere_to_go_keeps_the_task_in_the_dead_letters() -> None:
    channel = StubChannel()
    channel.refuse("wq.results", "unroutable")
    delivery = task_delivery(channel)

    await _settle(channel, delivery, _ran(value={"value": 1}))

    assert channel.events == [("refused", "wq.results"), ("reject", "drop")]


async def test_an_ack_on_a_lost_channel_is_a_broker_error() -> None:
    channel = StubChannel()
    delivery = task_delivery(channel)
    delivery.fail_ack = True

    with pytest.raises(BrokerError, match="could not ack"):
        await _settle(channel, delivery, _ran(value={"value": 1}))
    assert channel.events == [("published", "wq.results")]


async def test_a_rejection_without_a_task_id_is_dead_lettered_with_no_result() -> None:
    channel = StubChannel()
    delivery = StubDelivery(channel, b"not json", message_id=None, correlation_id=None)
    rejection = Rejection(None, "unknown", 1, ERROR)
    decision = decide_rejection(rejection, executor="e1", redelivered=False)
    settler = Settler(channel, amqp=AMQP, executor="e1")  # type: ignore[arg-type]

    await settler.carry_out(delivery, decision, error=ERROR)  # type: ignore[arg-type]

    assert channel.events == [("published", TOPOLOGY.task_dead_queue), ("ack",)]
    (copy,) = channel.published_to(TOPOLOGY.task_dead_queue)
    assert copy.headers["x-wq-dead-reason"] == "rejected"
    assert copy.body == b"not json"


async def test_give_back_requeues_and_drop_rejects_whatever_the_channel_says() -> None:
    channel = StubChannel()
    delivery = task_delivery(channel)

    await give_back(delivery)  # type: ignore[arg-type]
    await drop(delivery)  # type: ignore[arg-type]

    assert channel.events == [("nack", "requeue"), ("reject", "drop")]
