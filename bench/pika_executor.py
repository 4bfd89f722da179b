"""What-if prototype: the executor's per-task work, on pika instead of aio-pika.

Per task it does what ``executor`` does: announce the start on the progress queue (a
``StartNotice``, confirmed before the handler runs, as the delivery limit needs), decode and
validate the task with the project's models and registry, bind the log context, run the
handler in a worker thread, build and encode the ``ResultMessage``, log the one summary line,
publish the result with confirms and ``mandatory``, then ack. Only the client differs:

- ``--io blocking``: one pika ``BlockingConnection`` whose thread does all AMQP I/O, with the
  handler in a worker thread that hands the publish and the ack back through
  ``add_callback_threadsafe``;
- ``--io asyncio``: pika's ``AsyncioConnection`` on the event loop (uvloop where installed),
  two connections as the executor has, each publish awaited on a future its confirm
  resolves, the handler in the executor's own handler threads (``executor.threads``).

It is a measuring device, not a service: no reconnects, no heartbeats or cancellations, no
error paths beyond what a no-op needs.

    WQ_AMQP_URL=... WQ_AMQP_PREFIX=... python -m bench.pika_executor --name NAME [--io asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import queue
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pika
import structlog
from pydantic_core import to_jsonable_python

from common import (
    AmqpSettings,
    LogSettings,
    MessageProperties,
    Outcome,
    ResultMessage,
    StartNotice,
    TaskRegistry,
    decode_task,
    encode,
    load_registry,
    load_settings,
    result_properties,
    start_properties,
)
from common.logging import configure, get_logger
from common.pika_properties import pika_properties

log = get_logger(__name__)

_Delivery = tuple[int, Any, bytes, bool]


class PikaExecutor:
    """One connection thread (pika) and one worker thread (the handler)."""

    def __init__(self, amqp: AmqpSettings, registry: TaskRegistry, name: str) -> None:
        self._registry = registry
        self._name = name
        self._queue = amqp.topology.task_queue
        self._progress_queue = amqp.topology.progress_queue
        self._delivery_limit = amqp.delivery_limit
        parameters = pika.URLParameters(amqp.url.get_secret_value())
        parameters.client_properties = {"connection_name": f"wqbench pika executor {name}"}
        self._connection = pika.BlockingConnection(parameters)
        self._publish = self._connection.channel()
        self._publish.confirm_delivery()
        self._consume = self._connection.channel()
        # Prefetch 1: one slot, one unacked task, as ``executor run --concurrency 1``.
        self._consume.basic_qos(prefetch_count=1)
        self._work: queue.SimpleQueue[_Delivery | None] = queue.SimpleQueue()

    def run(self) -> None:
        """Consume until SIGTERM."""
        worker = threading.Thread(target=self._work_loop, name="wq-task", daemon=True)
        worker.start()
        self._consume.basic_consume(self._queue, self._on_message)
        signal.signal(signal.SIGTERM, lambda *_: self._consume.stop_consuming())
        log.info("executor_started", executor=self._name, queue=self._queue, client="pika")
        self._consume.start_consuming()
        self._work.put(None)
        worker.join(timeout=5)
        self._connection.close()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        # On the connection's thread: the start is confirmed before the handler may run.
        redelivered = bool(method.redelivered)
        task = decode_task(body)
        notice = StartNotice(
            task_id=task.task_id,
            task_type=task.task_type,
            attempt=task.attempt,
            executor=self._name,
            redelivered=redelivered,
            delivery_limit=self._delivery_limit,
            started_at=datetime.now(UTC),
        )
        props = start_properties(notice, app_id="wq-executor")
        self._publish.basic_publish(
            "", self._progress_queue, encode(notice), pika_properties(props), mandatory=True
        )
        self._work.put((method.delivery_tag, properties, body, redelivered))

    def _next_delivery(self) -> _Delivery | None:
        # Its own frame, so that a profile can tell waiting for work from doing it.
        return self._work.get()

    def _work_loop(self) -> None:
        while (delivery := self._next_delivery()) is not None:
            tag, properties, body, redelivered = delivery
            structlog.contextvars.clear_contextvars()
            with structlog.contextvars.bound_contextvars(delivery_tag=tag):
                reply = self._handle(body, redelivered)
            self._connection.add_callback_threadsafe(
                functools.partial(self._reply_and_ack, tag, properties.reply_to, *reply)
            )

    def _handle(self, body: bytes, redelivered: bool) -> tuple[bytes, pika.BasicProperties]:
        began = time.perf_counter()
        started = datetime.now(UTC)
        task = decode_task(body)
        kwargs = self._registry.get(task.task_type).validate(task.params)
        with structlog.contextvars.bound_contextvars(
            task_id=str(task.task_id), task_type=task.task_type, attempt=task.attempt
        ):
            value = self._registry.get(task.task_type).handler(**kwargs)
            result = ResultMessage(
                task_id=task.task_id,
                task_type=task.task_type,
                outcome=Outcome.SUCCEEDED,
                result=to_jsonable_python(value),
                attempt=task.attempt,
                executor=self._name,
                redelivered=redelivered,
                started_at=started,
                finished_at=datetime.now(UTC),
            )
            duration_ms = round((time.perf_counter() - began) * 1000, 3)
            log.info("task_succeeded", duration_ms=duration_ms, redelivered=redelivered)
        props = result_properties(result, app_id="wq-executor")
        return encode(result), pika_properties(props)

    def _reply_and_ack(
        self, tag: int, reply_to: str, body: bytes, properties: pika.BasicProperties
    ) -> None:
        # On the connection's thread: publish waits for the confirm, then the task is acked.
        self._publish.basic_publish("", reply_to, body, properties, mandatory=True)
        self._consume.basic_ack(tag)


class AsyncPikaExecutor:
    """The same per-task work on pika's ``AsyncioConnection``, on the event loop (uvloop).

    The executor's shape: the handler in one of the executor's own handler threads
    (``executor.threads``), everything else on the loop, each publish awaited on a future
    its confirm resolves. Two connections, as the executor has (publishing, consuming).
    """

    def __init__(self, amqp: AmqpSettings, registry: TaskRegistry, name: str) -> None:
        from executor.threads import HandlerThreads

        self._amqp = amqp
        self._registry = registry
        self._name = name
        self._threads = HandlerThreads()
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._published = 0
        self._publish_channel: Any = None
        self._consume_channel: Any = None

    async def run(self) -> None:
        """Consume until SIGTERM."""
        loop = asyncio.get_running_loop()
        publishing = await _open(self._amqp, f"wqbench pika-asyncio executor {self._name} publish")
        self._publish_channel = await _channel(publishing)
        confirming: asyncio.Future[None] = loop.create_future()
        self._publish_channel.confirm_delivery(
            self._on_confirm, callback=lambda _: confirming.set_result(None)
        )
        await confirming
        consuming = await _open(self._amqp, f"wqbench pika-asyncio executor {self._name} consume")
        self._consume_channel = await _channel(consuming)
        qos: asyncio.Future[None] = loop.create_future()
        self._consume_channel.basic_qos(prefetch_count=1, callback=lambda _: qos.set_result(None))
        await qos
        self._consume_channel.basic_consume(self._amqp.topology.task_queue, self._on_message)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        log.info("executor_started", executor=self._name, client="pika-asyncio")
        await stop.wait()
        consuming.close()
        publishing.close()
        self._threads.close()

    def _publish(self, routing_key: str, body: bytes, props: MessageProperties) -> Any:
        self._publish_channel.basic_publish(
            "", routing_key, body, pika_properties(props), mandatory=True
        )
        self._published += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._confirms[self._published] = future
        return future

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        last = method.delivery_tag
        tags = [t for t in self._confirms if t <= last] if method.multiple else [last]
        for tag in tags:
            future = self._confirms.pop(tag)
            if not future.done():
                future.set_result(None)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(
            self._handle(method.delivery_tag, properties.reply_to, body, bool(method.redelivered))
        )
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)

    async def _handle(self, tag: int, reply_to: str, body: bytes, redelivered: bool) -> None:
        began = time.perf_counter()
        task = decode_task(body)
        definition = self._registry.get(task.task_type)
        kwargs = definition.validate(task.params)
        with structlog.contextvars.bound_contextvars(
            task_id=str(task.task_id), task_type=task.task_type, attempt=task.attempt
        ):
            notice = StartNotice(
                task_id=task.task_id,
                task_type=task.task_type,
                attempt=task.attempt,
                executor=self._name,
                redelivered=redelivered,
                delivery_limit=self._amqp.delivery_limit,
                started_at=datetime.now(UTC),
            )
            props = start_properties(notice, app_id="wq-executor")
            await self._publish(self._amqp.topology.progress_queue, encode(notice), props)
            started = datetime.now(UTC)
            value = await self._threads.run(lambda: definition.handler(**kwargs))
            result = ResultMessage(
                task_id=task.task_id,
                task_type=task.task_type,
                outcome=Outcome.SUCCEEDED,
                result=to_jsonable_python(value),
                attempt=task.attempt,
                executor=self._name,
                redelivered=redelivered,
                started_at=started,
                finished_at=datetime.now(UTC),
            )
            duration_ms = round((time.perf_counter() - began) * 1000, 3)
            log.info("task_succeeded", duration_ms=duration_ms, redelivered=redelivered)
            props = result_properties(result, app_id="wq-executor")
            await self._publish(reply_to, encode(result), props)
        self._consume_channel.basic_ack(tag)


_RUNNING: set[asyncio.Task[None]] = set()


async def _open(amqp: AmqpSettings, connection_name: str) -> Any:
    from pika.adapters.asyncio_connection import AsyncioConnection

    loop = asyncio.get_running_loop()
    opened: asyncio.Future[Any] = loop.create_future()
    parameters = pika.URLParameters(amqp.url.get_secret_value())
    parameters.client_properties = {"connection_name": connection_name}
    AsyncioConnection(
        parameters,
        on_open_callback=opened.set_result,
        on_open_error_callback=lambda _, exc: opened.set_exception(exc),
        custom_ioloop=loop,
    )
    return await opened


async def _channel(connection: Any) -> Any:
    opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    connection.channel(on_open_callback=opened.set_result)
    return await opened


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; broker and prefix come from ``WQ_AMQP_*`` like the executor's."""
    parser = argparse.ArgumentParser(prog="bench.pika_executor", description=__doc__)
    parser.add_argument("--name", default="pika-executor")
    parser.add_argument("--tasks", default="bench.tasks")
    parser.add_argument("--io", choices=("blocking", "asyncio"), default="blocking")
    args = parser.parse_args(argv)
    configure(load_settings(LogSettings))
    amqp = load_settings(AmqpSettings)
    registry = load_registry(args.tasks)
    if args.io == "blocking":
        PikaExecutor(amqp, registry, args.name).run()
    else:
        from common.loop import run as run_loop

        run_loop(AsyncPikaExecutor(amqp, registry, args.name).run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
