"""Admission on a stub channel: which deliveries run, and how the others are settled.

Bad input is dead-lettered, a cancelled task is answered ``cancelled``, a redelivery on a classic
queue is republished with its count, and a delivery over the limit is dead-lettered; the rest
run, told whether an earlier run may have happened.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from common import AmqpSettings, CancelNotice, StartVerdict, TaskRegistry, Verdict
from executor.admission import Admission, Admitted
from executor.cancellations import Cancellations
from executor.jobs import Job
from executor.monitor import Monitor
from executor.settling import Settler
from tests.unit.executor.stub_channel import StubChannel, StubDelivery, task_delivery

AT = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)

registry = TaskRegistry()


@registry.task("echo")
def echo(value: int) -> dict[str, Any]:
    return {"value": value}


class Verdicts:
    """Stands in for the dispatcher's verdict on a redelivered start."""

    def __init__(self, verdict: Verdict = Verdict.RUN, runs: int = 1) -> None:
        self.verdict, self.runs = verdict, runs
        self.asked: list[tuple[Job, bool]] = []

    async def started(self, job: Job, *, redelivered: bool) -> StartVerdict:
        self.asked.append((job, redelivered))
        task = job.task
        return StartVerdict(
            task_id=task.task_id, attempt=task.attempt, verdict=self.verdict, runs=self.runs
        )


def _admission(
    channel: StubChannel, amqp: AmqpSettings, verdicts: Verdicts | None = None
) -> tuple[Admission, Cancellations]:
    cancellations = Cancellations(executor="e1", max_body_bytes=amqp.max_body_bytes)
    admission = Admission(
        Settler(channel, amqp=amqp, executor="e1"),  # type: ignore[arg-type]
        registry=registry,
        amqp=amqp,
        executor="e1",
        cancellations=cancellations,
        monitor=Monitor(name="e1", slots=1, registry=registry),
        starts=verdicts or Verdicts(),  # type: ignore[arg-type]
    )
    return admission, cancellations


async def _admit(admission: Admission, delivery: StubDelivery) -> Admitted | None:
    job = await admission.job_for(delivery)  # type: ignore[arg-type]
    return None if job is None else await admission.admit(delivery, job)  # type: ignore[arg-type]


def _result(channel: StubChannel) -> dict[str, Any]:
    (message,) = channel.published_to("wq.results")
    document: dict[str, Any] = json.loads(message.body)
    return document


async def test_a_fresh_task_runs_and_nothing_is_settled_yet() -> None:
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings())

    assert await _admit(admission, task_delivery(channel)) is Admitted.FIRST_RUN
    assert channel.events == []


async def test_a_task_it_cannot_run_is_dead_lettered_and_answered() -> None:
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings())

    admitted = await _admit(admission, task_delivery(channel, "no_such_type"))

    assert admitted is None
    assert channel.events == [
        ("published", "wq.tasks.dead"),
        ("published", "wq.results"),
        ("ack",),
    ]
    assert _result(channel)["outcome"] == "dead"
    assert _result(channel)["error"]["kind"] == "unknown_task_type"


async def test_a_task_cancelled_before_it_started_is_answered_cancelled_and_never_runs() -> None:
    channel = StubChannel()
    admission, cancellations = _admission(channel, AmqpSettings())
    delivery = task_delivery(channel)
    assert delivery.message_id is not None
    cancellations.note(
        CancelNotice(
            task_id=UUID(delivery.message_id), requested_at=datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
        )
    )

    assert await _admit(admission, delivery) is Admitted.SETTLED
    assert channel.events == [("published", "wq.results"), ("ack",)]
    assert _result(channel)["outcome"] == "cancelled"


async def test_a_redelivery_asks_the_dispatcher_and_runs_when_told() -> None:
    # After a broker crash every waiting message is flagged redelivered, started or not:
    # the flag alone counts for nothing, the dispatcher's count of starts does.
    channel = StubChannel()
    verdicts = Verdicts(Verdict.RUN, runs=1)
    admission, _ = _admission(channel, AmqpSettings(delivery_limit=1), verdicts)
    delivery = task_delivery(channel, redelivered=True, headers={"x-wq-deliveries": 9})

    assert await _admit(admission, delivery) is Admitted.COUNTED_RERUN
    assert channel.events == []
    assert [redelivered for _, redelivered in verdicts.asked] == [True]


async def test_a_first_delivery_runs_without_asking() -> None:
    channel = StubChannel()
    verdicts = Verdicts()
    admission, _ = _admission(channel, AmqpSettings(), verdicts)

    assert await _admit(admission, task_delivery(channel)) is Admitted.FIRST_RUN
    assert verdicts.asked == []


async def test_a_redelivery_given_up_is_dead_lettered_instead_of_run() -> None:
    channel = StubChannel()
    verdicts = Verdicts(Verdict.GIVE_UP, runs=4)
    admission, _ = _admission(channel, AmqpSettings(delivery_limit=3), verdicts)

    assert await _admit(admission, task_delivery(channel, redelivered=True)) is Admitted.SETTLED
    assert channel.events == [
        ("published", "wq.tasks.dead"),
        ("published", "wq.results"),
        ("ack",),
    ]
    (copy,) = channel.published_to("wq.tasks.dead")
    assert copy.headers["x-wq-dead-reason"] == "delivery_limit"
    error = _result(channel)["error"]
    assert error["kind"] == "delivery_limit"
    assert "started 3 times" in error["message"]


async def test_a_redelivery_of_a_settled_task_is_acked_unrun() -> None:
    # Its outcome was recorded and only the ack was lost: running it again would only
    # make a duplicate, and dead-lettering it would leave a succeeded task in the dead letters.
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings(), Verdicts(Verdict.SETTLED))

    assert await _admit(admission, task_delivery(channel, redelivered=True)) is Admitted.SETTLED
    assert channel.events == [("ack",)]


@pytest.mark.parametrize(
    ("count", "admitted"),
    [(None, Admitted.FIRST_RUN), (0, Admitted.FIRST_RUN), (1, Admitted.RERUN)],
)
async def test_on_a_quorum_queue_the_brokers_count_says_whether_it_ran_before(
    count: int | None, admitted: Admitted
) -> None:
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings(queue_type="quorum"))
    headers = {} if count is None else {"x-delivery-count": count}

    assert await _admit(admission, task_delivery(channel, headers=headers)) is admitted
    assert channel.events == []


async def test_on_a_quorum_queue_a_delivery_over_the_limit_is_dead_lettered() -> None:
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings(queue_type="quorum", delivery_limit=2))
    delivery = task_delivery(channel, headers={"x-delivery-count": 2})

    assert await _admit(admission, delivery) is Admitted.SETTLED
    assert channel.events[0] == ("published", "wq.tasks.dead")
    assert channel.events[-1] == ("ack",)


async def test_a_task_whose_params_nest_100_000_deep_is_dead_lettered_with_its_reasons() -> None:
    channel = StubChannel()
    admission, _ = _admission(channel, AmqpSettings())
    deep = b"[" * 100_000 + b"]" * 100_000
    delivery = task_delivery(channel)
    delivery.body = delivery.body.replace(b'{"value":1}', b'{"value":' + deep + b"}")
    assert deep in delivery.body

    assert await _admit(admission, delivery) is None
    (copy,) = channel.published_to("wq.tasks.dead")
    assert copy.headers["x-wq-dead-reason"] == "rejected"
    assert copy.headers["x-wq-error-kind"] == "decode_error"
    assert _result(channel)["outcome"] == "dead"
    assert channel.events[-1] == ("ack",)
