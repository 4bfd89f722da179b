"""Settling a task delivery: copy what must outlive it, report the result, then ack.

The one place that acks, nacks or rejects a task delivery: admission and the consumer decide,
this module settles.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime

from common import (
    EXECUTOR_APP_ID,
    AmqpSettings,
    BrokerError,
    DeadLetterHeaders,
    MessageProperties,
    PublishRejected,
    ResultMessage,
    TaskErrorInfo,
    result_properties,
)
from common.logging import get_logger
from common.pika_link import Channel, Incoming
from executor.decisions import Action, Decision, fit_result
from executor.deliveries import copy_message

log = get_logger(__name__)


class Settler:
    """Publishes dead-letter copies and results with confirms, then acks."""

    def __init__(
        self,
        channel: Channel,
        *,
        amqp: AmqpSettings,
        executor: str,
        queue_of_tag: Mapping[str, str] | None = None,
    ) -> None:
        self._channel = channel
        self._amqp = amqp
        self._topology = amqp.topology
        self._executor = executor
        # Which broker queue each consumer tag reads: where a dead-lettered task came from.
        self._queue_of_tag = queue_of_tag or {}

    async def carry_out(
        self,
        message: Incoming,
        decision: Decision,
        *,
        error: TaskErrorInfo | None,
    ) -> None:
        """Dead-letter the copy a decision needs, report the result, then ack: in that order.

        A crash between any two steps means redelivery, never a lost task or result. A retry
        needs no copy: its ``retrying`` result is the record the dispatcher publishes the next
        attempt from, when it is due.
        """
        if decision.action is Action.DEAD and error is not None:
            try:
                await self._dead_letter(message, decision, error)
            except PublishRejected as exc:
                if exc.reason == "timeout":
                    # The copy may still land (an alarm holds confirms back): requeue rather
                    # than dead-letter twice; the next delivery decides again.
                    log.warning("task_copy_unconfirmed", action=decision.action.value)
                    await give_back(message)
                    return
                log.error("task_copy_not_published", action=decision.action.value, error=str(exc))
                await message.reject(requeue=False)  # the queue's own dead-lettering keeps it
                return
        result = decision.result
        if result is not None and message.reply_to and not await self._reply(message, result):
            return
        await ack(message)

    async def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: MessageProperties
    ) -> None:
        """Publish with ``mandatory`` and wait for the confirm."""
        await self._channel.publish(
            exchange, routing_key, body, properties, timeout=self._amqp.confirm_timeout
        )

    async def _dead_letter(
        self, message: Incoming, decision: Decision, error: TaskErrorInfo
    ) -> None:
        assert decision.dead_reason is not None
        reasons = DeadLetterHeaders.of(
            decision.dead_reason,
            error,
            attempts=decision.result.attempt if decision.result else 1,
            queue=self._queue_of_tag.get(message.consumer_tag or "", self._topology.task_queue),
            executor=self._executor,
            at=datetime.now(UTC),
        )
        body, properties = copy_message(message, headers=reasons.to_headers())
        await self.publish("", self._topology.task_dead_queue, body, properties)
        log.warning("task_dead_lettered", reason=decision.dead_reason.value)

    async def _reply(self, message: Incoming, result: ResultMessage) -> bool:
        """Publish the result and wait for its confirm; False if the delivery was settled."""
        assert message.reply_to is not None
        result, body = fit_result(result, max_body_bytes=self._amqp.max_body_bytes)
        if result.error is not None and result.error.type == "ResultTooLarge":
            log.error("result_too_large", error=result.error.message)
        properties = result_properties(result, app_id=EXECUTOR_APP_ID)
        try:
            await self.publish("", message.reply_to, body, properties)
        except PublishRejected as exc:
            if exc.reason == "timeout":
                # The result may still land; running again is safe because the dispatcher
                # keeps the first outcome per task id.
                log.warning("result_unconfirmed", reply_to=message.reply_to)
                await message.nack(requeue=True)
            else:
                # Nowhere to report to: keep the task message in the dead-letter queue.
                log.error("result_undeliverable", reply_to=message.reply_to, reason=exc.reason)
                await message.reject(requeue=False)
            return False
        return True


async def ack(message: Incoming) -> None:
    """Ack, turning a lost channel into ``BrokerError`` (the broker has requeued it)."""
    try:
        await message.ack()
    except Exception as exc:
        raise BrokerError(f"could not ack the delivery: {exc}") from exc


# Pause before requeueing after a failed publish: the publishing connection is reconnecting
# (every 5 s), and an immediate requeue would redeliver the task into the same failure.
_REQUEUE_PAUSE_S = 1.0


async def give_back(message: Incoming) -> None:
    """Requeue a delivery at once (a run cut short at shutdown); a lost channel did already."""
    with contextlib.suppress(Exception):
        await message.nack(requeue=True)


async def drop(message: Incoming) -> None:
    """Reject a delivery nothing could handle (a bug, not bad input) into the dead letters.

    Kept rather than requeued: requeued, it would loop on the same failure.
    """
    with contextlib.suppress(Exception):
        await message.reject(requeue=False)


async def return_to_queue(message: Incoming) -> None:
    """Requeue a delivery whose settling failed half-way.

    Publishing and consuming use separate connections, so the publisher can be down while
    this delivery's channel is alive: left unacked, it would hold its slot (and its prefetch
    credit) until that channel closed. If the channel is gone too, the broker has already
    requeued the delivery and the nack simply fails.
    """
    await asyncio.sleep(_REQUEUE_PAUSE_S)
    await give_back(message)
