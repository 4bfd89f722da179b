"""The executor's AMQP side: consume the task queue, report results, settle deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from common import (
    AmqpSettings,
    BrokerError,
    PublishRejected,
    ResultMessage,
    TaskRegistry,
    encode,
    result_properties,
)
from common.amqp import connect, declare_topology, publish_confirmed, to_message
from common.logging import get_logger
from executor.runner import (
    Delivery,
    Job,
    Rejection,
    Settlement,
    execute,
    prepare,
    rejection_result,
    settlement_after_run,
)

log = get_logger(__name__)


class Executor:
    """Runs tasks from the task queue with ``concurrency`` slots of prefetch 1 each."""

    def __init__(
        self,
        *,
        amqp: AmqpSettings,
        registry: TaskRegistry,
        name: str,
        concurrency: int = 1,
        shutdown_grace: float = 30.0,
    ) -> None:
        self._amqp = amqp
        self._registry = registry
        self._name = name
        self._concurrency = concurrency
        self._grace = shutdown_grace
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="wq-task")
        self._reply_exchange: AbstractExchange | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then let in-flight tasks finish within the grace."""
        connection = await connect(self._amqp, name=f"wq executor {self._name}")
        try:
            publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._reply_exchange = publish_channel.default_exchange
            channel = await connection.channel()
            # Prefetch = slots: the broker never hands this executor a task it has no free
            # slot for, so a waiting task goes to an idle executor instead (fair dispatch).
            await channel.set_qos(prefetch_count=self._concurrency)
            queue = (await declare_topology(channel, self._amqp.topology)).task_queue
            tag = await queue.consume(self._on_message, consumer_tag=f"wq.executor.{self._name}")
            log.info(
                "executor_started",
                executor=self._name,
                queue=queue.name,
                concurrency=self._concurrency,
                task_types=self._registry.names(),
            )
            self.ready.set()
            await stop.wait()
            await queue.cancel(tag)
            await self._drain()
        finally:
            await connection.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            log.info("executor_stopped", executor=self._name)

    async def _drain(self) -> None:
        if self._inflight:
            log.info("executor_draining", in_flight=self._inflight, grace_s=self._grace)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self._grace)
        except TimeoutError:
            # Closing the connection returns the unfinished deliveries to the queue.
            log.warning("executor_grace_expired", in_flight=self._inflight)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inflight += 1
        self._idle.clear()
        try:
            with structlog.contextvars.bound_contextvars(delivery_tag=message.delivery_tag):
                await self._handle(message)
        except BrokerError as exc:
            # The channel is gone; the broker requeues the delivery and another slot runs it.
            log.warning("delivery_unsettled", error=str(exc))
        except Exception:
            # A bug, not bad input: keep the message (dead-lettered) rather than loop on it.
            log.exception("delivery_handling_failed")
            with contextlib.suppress(BrokerError):
                await _settle(message, Settlement.REJECT)
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(
            body=message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            task_type_property=message.type,
            redelivered=bool(message.redelivered),
        )
        prepared = prepare(delivery, self._registry, max_body_bytes=self._amqp.max_body_bytes)
        if isinstance(prepared, Rejection):
            await self._reject(message, prepared)
            return
        with structlog.contextvars.bound_contextvars(
            task_id=str(prepared.task.task_id),
            task_type=prepared.task.task_type,
            attempt=prepared.task.attempt,
        ):
            await self._run(message, prepared)

    async def _run(self, message: AbstractIncomingMessage, job: Job) -> None:
        began = time.perf_counter()
        result = await execute(
            job,
            executor=self._name,
            redelivered=bool(message.redelivered),
            run_in_thread=self._run_in_thread,
        )
        duration_ms = round((time.perf_counter() - began) * 1000, 3)
        if result.error is None:
            log.info("task_succeeded", duration_ms=duration_ms, redelivered=result.redelivered)
        else:
            log.warning(
                "task_failed",
                duration_ms=duration_ms,
                error_kind=result.error.kind.value,
                error=result.error.message,
                error_type=result.error.type,
            )
        if message.reply_to and not await self._reply(message, result):
            return
        await _settle(message, settlement_after_run(result))

    async def _reject(self, message: AbstractIncomingMessage, rejection: Rejection) -> None:
        with structlog.contextvars.bound_contextvars(
            task_id=str(rejection.task_id) if rejection.task_id else None,
            task_type=rejection.task_type,
        ):
            log.error(
                "task_rejected",
                error_kind=rejection.error.kind.value,
                error=rejection.error.message,
                dead_letter_queue=self._amqp.topology.task_dead_queue,
            )
            result = rejection_result(
                rejection, executor=self._name, redelivered=bool(message.redelivered)
            )
            if result is not None and message.reply_to:
                await self._reply(message, result)
            await _settle(message, Settlement.REJECT)

    async def _reply(self, message: AbstractIncomingMessage, result: ResultMessage) -> bool:
        """Publish the result and wait for its confirm; False if the delivery was settled."""
        assert self._reply_exchange is not None
        assert message.reply_to is not None
        properties = result_properties(result, app_id="wq-executor")
        try:
            await publish_confirmed(
                self._reply_exchange,
                message.reply_to,
                to_message(encode(result), properties),
                timeout=self._amqp.confirm_timeout,
            )
        except PublishRejected as exc:
            if exc.reason == "timeout":
                # The result may still land; running again is safe because the dispatcher
                # keeps the first outcome per task id.
                log.warning("result_unconfirmed", reply_to=message.reply_to)
                await message.nack(requeue=True)
            else:
                # Nowhere to report to: keep the task message in the dead-letter queue.
                log.error("result_undeliverable", reply_to=message.reply_to, reason=exc.reason)
                await _settle(message, Settlement.REJECT)
            return False
        return True

    async def _run_in_thread(self, fn: Callable[[], Any]) -> Any:
        # Task code never runs on the event loop: heartbeats keep flowing during long or
        # CPU-bound handlers. Context is copied so log lines keep the task id.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, fn)


async def _settle(message: AbstractIncomingMessage, settlement: Settlement) -> None:
    try:
        if settlement is Settlement.ACK:
            await message.ack()
        else:
            await message.reject(requeue=False)
    except Exception as exc:
        # Settling fails only when the channel is gone: the broker has requeued the delivery.
        raise BrokerError(f"could not {settlement.value} the delivery: {exc}") from exc
