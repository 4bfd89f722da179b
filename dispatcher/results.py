"""Consuming the results queue: decode, record, then ack (aio-pika)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aio_pika.abc import AbstractIncomingMessage

from common import MessageError, ResultMessage, StoreError, decode_result
from common.logging import get_logger

log = get_logger(__name__)

RecordResult = Callable[[ResultMessage], Awaitable[bool]]

# A store that fails keeps the result in the queue; wait before it comes back so a broken
# disk cannot turn into a hot redelivery loop.
_STORE_RETRY_DELAY_S = 1.0


def result_handler(
    record: RecordResult, *, max_body_bytes: int, dead_queue: str
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """A consumer callback that acks a result only once the store has it."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            if len(message.body) > max_body_bytes:
                raise MessageError(f"result body of {len(message.body)} bytes is over the limit")
            result = decode_result(message.body)
        except MessageError as exc:
            log.error(
                "result_rejected",
                message_id=message.message_id,
                error=str(exc),
                dead_letter_queue=dead_queue,
            )
            await message.reject(requeue=False)
            return
        with structlog.contextvars.bound_contextvars(
            task_id=str(result.task_id), task_type=result.task_type, attempt=result.attempt
        ):
            try:
                recorded = await record(result)
            except StoreError as exc:
                log.error("result_not_recorded", error=str(exc))
                await asyncio.sleep(_STORE_RETRY_DELAY_S)
                await message.nack(requeue=True)
                return
            except Exception:
                # A bug or a value the store cannot hold: keep the result, free the slot.
                log.exception("result_recording_failed", dead_letter_queue=dead_queue)
                await message.reject(requeue=False)
                return
            if recorded:
                log.info("result_recorded", outcome=result.outcome.value, executor=result.executor)
            else:
                log.info("result_duplicate_ignored", executor=result.executor)
            await message.ack()

    return on_message
