"""Consuming the results queue: decode, record in batches, then ack.

Results that arrive together are recorded in one store transaction and acked with one
``multiple`` ack: one commit (one fsync on SQLite) and one frame per batch instead of per
result, which is most of the dispatcher's cost per task. A result is still acked only after
the commit that holds it.

The recorder also says whether it is keeping up: a result received and still unsettled, with
nothing settled for ``stalled_after`` seconds, means the consumer is stuck (a hung store, a
bug), and readiness turns false until it moves again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from common import MessageError, ResultMessage, StoreError, check_body_size, decode_result
from common.logging import get_logger
from common.pika_link import Incoming

log = get_logger(__name__)

RecordResults = Callable[[Sequence[ResultMessage]], Awaitable[list[bool]]]
Decoded = tuple[Incoming, ResultMessage]

# A store that fails keeps the results in the queue; wait before they come back so a broken
# disk cannot turn into a hot redelivery loop.
_STORE_RETRY_DELAY_S = 1.0


class ResultRecorder:
    """A results-queue consumer callback that records what arrives together as one batch.

    Deliveries are appended in the order they arrive and recorded by one flushing task at a
    time, in that order, so every delivery tag below a batch's last is settled by the time
    the batch is acked: that is what makes the ``multiple`` ack exact.
    """

    def __init__(
        self,
        record: RecordResults,
        *,
        max_body_bytes: int,
        dead_queue: str,
        max_batch: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._record = record
        self._max_body_bytes = max_body_bytes
        self._dead_queue = dead_queue
        self._max_batch = max_batch
        self._pending: list[Decoded] = []
        self._flushing: asyncio.Task[None] | None = None
        # Received but not yet acked, nacked or rejected; and when that last moved.
        self._clock = clock
        self._unsettled = 0
        self._moved_at = clock()

    def stalled(self, after: float) -> bool:
        """Whether a result has waited unsettled with nothing settled for ``after`` seconds."""
        return self._unsettled > 0 and self._clock() - self._moved_at > after

    def _settled(self, count: int) -> None:
        self._unsettled -= count
        self._moved_at = self._clock()

    async def __call__(self, message: Incoming) -> None:
        try:
            check_body_size(message.body, self._max_body_bytes, what="result")
            result = decode_result(message.body)
        except MessageError as exc:
            log.error(
                "result_rejected",
                message_id=message.message_id,
                error=str(exc),
                dead_letter_queue=self._dead_queue,
            )
            await message.reject(requeue=False)
            return
        except Exception:
            # A bug in decoding, not bad input: dead-lettered rather than left unacked, where
            # it would hold a prefetch slot, or be acked by the next batch's ``multiple`` ack.
            log.exception(
                "result_rejected", message_id=message.message_id, dead_letter_queue=self._dead_queue
            )
            await message.reject(requeue=False)
            return
        if self._unsettled == 0:
            self._moved_at = self._clock()
        self._unsettled += 1
        self._pending.append((message, result))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        try:
            # One turn of the loop first: deliveries already read from the socket join the batch.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._record_batch(batch)
        finally:
            self._flushing = None

    async def _record_batch(self, batch: list[Decoded]) -> None:
        try:
            recorded = await self._record([result for _, result in batch])
        except StoreError as exc:
            log.error("results_not_recorded", count=len(batch), error=str(exc))
            await asyncio.sleep(_STORE_RETRY_DELAY_S)
            try:
                for message, _ in batch:
                    await message.nack(requeue=True)
            finally:
                self._settled(len(batch))
            return
        except Exception:
            # A bug or a value the store cannot hold: find it one result at a time.
            await self._record_one_by_one(batch)
            return
        for (_, result), was_recorded in zip(batch, recorded, strict=True):
            _log_recorded(result, was_recorded)
        try:
            await batch[-1][0].ack(multiple=True)
        finally:
            # Acked, or the channel is gone and the broker requeues them: settled either way.
            self._settled(len(batch))

    async def _record_one_by_one(self, batch: list[Decoded]) -> None:
        for message, result in batch:
            try:
                await self._record_alone(message, result)
            finally:
                self._settled(1)

    async def _record_alone(self, message: Incoming, result: ResultMessage) -> None:
        with structlog.contextvars.bound_contextvars(
            task_id=str(result.task_id), task_type=result.task_type, attempt=result.attempt
        ):
            try:
                (was_recorded,) = await self._record([result])
            except StoreError as exc:
                log.error("result_not_recorded", error=str(exc))
                await asyncio.sleep(_STORE_RETRY_DELAY_S)
                await message.nack(requeue=True)
                return
            except Exception:
                # Keep the result in the dead-letter queue, free the slot.
                log.exception("result_recording_failed", dead_letter_queue=self._dead_queue)
                await message.reject(requeue=False)
                return
        _log_recorded(result, was_recorded)
        await message.ack()


def _log_recorded(result: ResultMessage, recorded: bool) -> None:
    # One line per result at debug only: the executor already logs every outcome at info.
    if recorded:
        log.debug(
            "result_recorded",
            task_id=str(result.task_id),
            task_type=result.task_type,
            attempt=result.attempt,
            outcome=result.outcome.value,
            executor=result.executor,
        )
    else:
        log.info(
            "result_duplicate_ignored",
            task_id=str(result.task_id),
            task_type=result.task_type,
            attempt=result.attempt,
            executor=result.executor,
        )
