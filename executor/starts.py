"""Start notices, and the dispatcher's verdict on a redelivered start.

Only starts count towards the delivery limit. After an unclean broker stop a classic queue
flags every recovered message redelivered, started or not, so the flag proves nothing; the
dispatcher counts the starts it is told of instead. Every start is announced on the progress
queue and confirmed before the handler runs, so that a handler which kills its process has
still been counted. A redelivered start also asks, on a reply queue of this executor's own,
whether it may run: ``run``, ``settled`` (the task already has its outcome, or its retry is
owed: ack it unrun) or ``give_up`` (past the limit: dead-letter it).

With no dispatcher to answer, the task runs after ``verdict_timeout`` (the limit cannot be
counted then), and later redeliveries stop asking for a while instead of each waiting.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from uuid import uuid4

from common import (
    EXECUTOR_APP_ID,
    BrokerError,
    MessageError,
    StartNotice,
    StartVerdict,
    Topology,
    Verdict,
    WorkQueueError,
    check_body_size,
    decode_verdict,
    encode,
    start_properties,
)
from common.logging import get_logger
from common.pika_link import Incoming, Link, Publish
from executor.jobs import Job

log = get_logger(__name__)

# How long redeliveries stop asking once a verdict did not come: a dispatcher that is down
# must not make every task of a recovered backlog wait out the timeout.
_QUIET_AFTER_SILENCE_S = 30.0


class StartReporter:
    """Announces each start; asks the dispatcher before a redelivered one runs."""

    def __init__(
        self,
        publish: Publish,
        *,
        queue: str,
        executor: str,
        delivery_limit: int,
        verdict_timeout: float,
        max_body_bytes: int,
    ) -> None:
        self._publish = publish
        self._queue = queue
        self._executor = executor
        self._limit = delivery_limit
        self._timeout = verdict_timeout
        self._max_body_bytes = max_body_bytes
        self._reply_queue: str | None = None
        self._pending: dict[str, asyncio.Future[StartVerdict]] = {}
        self._quiet_until = 0.0

    async def listen(self, connection: Link, topology: Topology) -> None:
        """Consume this executor's own reply queue (exclusive: it goes with the connection)."""
        name = f"{topology.prefix}.verdicts.{self._executor}.{uuid4().hex[:8]}"
        try:
            channel = await connection.channel()
            await channel.declare_queue(name, exclusive=True, auto_delete=True)
            await channel.consume(name, self._on_verdict, consumer_tag=name, no_ack=True)
        except BrokerError as exc:
            raise BrokerError(f"cannot consume {name}: {exc}") from exc
        self._reply_queue = name

    async def started(self, job: Job, *, redelivered: bool) -> StartVerdict:
        """Announce that ``job`` starts now; for a redelivery, the dispatcher's verdict.

        Without a verdict (not redelivered, nobody answering, the notice not published) the
        answer is ``run``, with no runs counted.
        """
        notice = StartNotice(
            task_id=job.task.task_id,
            task_type=job.task.task_type,
            attempt=job.task.attempt,
            executor=self._executor,
            redelivered=redelivered,
            delivery_limit=self._limit,
            started_at=datetime.now(UTC),
        )
        if not redelivered or self._reply_queue is None or time.monotonic() < self._quiet_until:
            await self._announce(notice)
            return _run_anyway(notice)
        return await self._ask(notice, self._reply_queue)

    async def _announce(self, notice: StartNotice) -> None:
        properties = start_properties(notice, app_id=EXECUTOR_APP_ID)
        try:
            await self._publish("", self._queue, encode(notice), properties)
        except WorkQueueError as exc:
            # The start may go uncounted, which lets a poison task start once more.
            log.warning("start_not_published", error=str(exc))

    async def _ask(self, notice: StartNotice, reply_to: str) -> StartVerdict:
        request_id = f"{notice.task_id}.{notice.attempt}.started.{uuid4().hex}"
        properties = start_properties(
            notice, app_id=EXECUTOR_APP_ID, request_id=request_id, reply_to=reply_to
        )
        answer: asyncio.Future[StartVerdict] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            await self._publish("", self._queue, encode(notice), properties)
            async with asyncio.timeout(self._timeout):
                verdict = await answer
        except WorkQueueError as exc:
            log.warning("start_not_published", error=str(exc))
            return _run_anyway(notice)
        except TimeoutError:
            self._quiet_until = time.monotonic() + _QUIET_AFTER_SILENCE_S
            log.warning("start_verdict_missing", waited_s=self._timeout)
            return _run_anyway(notice)
        finally:
            del self._pending[request_id]
        if (verdict.task_id, verdict.attempt) != (notice.task_id, notice.attempt):
            log.warning("start_verdict_mismatched", verdict_task_id=str(verdict.task_id))
            return _run_anyway(notice)
        log.info("start_verdict", verdict=verdict.verdict.value, runs=verdict.runs)
        return verdict

    async def _on_verdict(self, message: Incoming) -> None:
        """Hand a verdict to the start waiting for it; anything else is logged and dropped."""
        answer = self._pending.get(message.correlation_id or "")
        if answer is None or answer.done():
            log.warning("start_verdict_unexpected", correlation_id=message.correlation_id)
            return
        try:
            check_body_size(message.body, self._max_body_bytes, what="start verdict")
            answer.set_result(decode_verdict(message.body))
        except MessageError as exc:
            log.warning("start_verdict_rejected", error=str(exc))


def _run_anyway(notice: StartNotice) -> StartVerdict:
    return StartVerdict(task_id=notice.task_id, attempt=notice.attempt, verdict=Verdict.RUN, runs=0)
