"""Which deliveries may run their handler, and settling those that may not (aio-pika).

A delivery that can never run (bad input), a task cancelled before it started, a redelivery
that has started too often without being settled, and one whose task already has its outcome
are settled here; the consumer runs the rest.

Only starts count towards the delivery limit: the dispatcher counts them from the executors'
start notices and answers each redelivered start with a verdict (``executor.starts``). A
quorum queue also counts returned deliveries itself.
"""

from __future__ import annotations

from enum import Enum

import structlog

from common import (
    AmqpSettings,
    DeadReason,
    ErrorKind,
    Outcome,
    TaskErrorInfo,
    TaskRegistry,
    Verdict,
)
from common.logging import get_logger
from common.pika_link import Incoming
from executor.cancellations import Cancellations
from executor.decisions import decide_cancelled, decide_rejection
from executor.deliveries import quorum_run_number
from executor.jobs import Delivery, Job, Rejection, prepare
from executor.monitor import Monitor
from executor.settling import Settler, ack
from executor.starts import StartReporter

log = get_logger(__name__)


class Admitted(Enum):
    """What admission made of a delivery that carries a valid task."""

    FIRST_RUN = "first_run"  # run it: no earlier run of this delivery can have happened
    RERUN = "rerun"  # run it: an earlier run may have happened, never settled
    COUNTED_RERUN = "counted_rerun"  # as RERUN, and its start is announced and counted already
    SETTLED = "settled"  # do not run it: settled here (cancelled, over the limit, done)


class Admission:
    """Settles the deliveries that must not run now; says whether the others run again."""

    def __init__(
        self,
        settler: Settler,
        *,
        registry: TaskRegistry,
        amqp: AmqpSettings,
        executor: str,
        cancellations: Cancellations,
        monitor: Monitor,
        starts: StartReporter,
    ) -> None:
        self._settler = settler
        self._starts = starts
        self._registry = registry
        self._amqp = amqp
        self._topology = amqp.topology
        self._executor = executor
        self._cancellations = cancellations
        self._monitor = monitor

    async def job_for(self, message: Incoming) -> Job | None:
        """The valid task ``message`` carries; ``None`` when it can never run.

        A delivery that can never run is dead-lettered here, with a ``dead`` result when its
        task id is known.
        """
        delivery = Delivery(
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            task_type_property=message.type,
            redelivered=bool(message.redelivered),
        )
        prepared = prepare(delivery, self._registry, max_body_bytes=self._amqp.max_body_bytes)
        if isinstance(prepared, Job):
            return prepared
        await self._reject(message, prepared, redelivered=delivery.redelivered)
        return None

    async def _reject(self, message: Incoming, rejection: Rejection, *, redelivered: bool) -> None:
        with structlog.contextvars.bound_contextvars(
            task_id=str(rejection.task_id) if rejection.task_id else None,
            task_type=rejection.task_type,
        ):
            log.error(
                "task_rejected",
                error_kind=rejection.error.kind.value,
                error=rejection.error.message,
                dead_letter_queue=self._topology.task_dead_queue,
            )
            decision = decide_rejection(rejection, executor=self._executor, redelivered=redelivered)
            await self._settler.carry_out(message, decision, error=rejection.error)
            self._monitor.settled(rejection.task_type, Outcome.DEAD, duration_s=None)

    async def admit(self, message: Incoming, job: Job) -> Admitted:
        """Whether ``job`` runs now, and whether it may have run before; settles it if not.

        The cancellations are checked here, once; a notice read while a redelivery waits for
        its verdict reaches the run through ``Cancellations.tracking``.
        """
        if self._cancellations.is_cancelled(job.task.task_id, job.task.attempt):
            await self._skip_cancelled(message, job)
            return Admitted.SETTLED
        if self._topology.queue_type == "quorum":
            run = quorum_run_number(message.headers)
            if run > self._amqp.delivery_limit:
                await self._dead_letter_over_limit(message, job, run - 1)
                return Admitted.SETTLED
            if run > 1 and not message.redelivered:
                return Admitted.RERUN
        if not message.redelivered:
            return Admitted.FIRST_RUN
        verdict = await self._starts.started(job, redelivered=True)
        if verdict.verdict is Verdict.GIVE_UP:
            await self._dead_letter_over_limit(message, job, verdict.runs - 1)
            return Admitted.SETTLED
        if verdict.verdict is Verdict.SETTLED:
            # Its outcome is recorded (the ack was lost), or its retry is owed by the store.
            log.info("task_already_settled", runs=verdict.runs)
            await ack(message)
            return Admitted.SETTLED
        return Admitted.COUNTED_RERUN

    async def _skip_cancelled(self, message: Incoming, job: Job) -> None:
        """Ack a task cancelled before it started, after its ``cancelled`` result."""
        log.info("task_skipped_cancelled")
        redelivered = bool(message.redelivered)
        decision = decide_cancelled(job, executor=self._executor, redelivered=redelivered)
        await self._settler.carry_out(message, decision, error=None)

    async def _dead_letter_over_limit(self, message: Incoming, job: Job, runs: int) -> None:
        error = TaskErrorInfo(
            kind=ErrorKind.DELIVERY_LIMIT,
            type="DeliveryLimitExceeded",
            message=f"started {runs} times without being settled (the executor died or lost "
            f"its connection each time); limit {self._amqp.delivery_limit}",
        )
        log.error("task_delivery_limit_reached", runs=runs)
        rejection = Rejection(job.task.task_id, job.task.task_type, job.task.attempt, error)
        decision = decide_rejection(
            rejection,
            executor=self._executor,
            redelivered=True,
            reason=DeadReason.DELIVERY_LIMIT,
        )
        await self._settler.carry_out(message, decision, error=error)
