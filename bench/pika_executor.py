"""What-if prototype: the executor's per-task work, on pika instead of aio-pika.

Per task it does what ``executor`` does: decode and validate the task with the project's
models and registry, bind the log context, run the handler in a worker thread, build and
encode the ``ResultMessage``, log the one summary line, publish the result with confirms and
``mandatory``, then ack. Only the client differs: one pika ``BlockingConnection`` whose
thread does all AMQP I/O, with the handler in a worker thread that hands the publish and
the ack back through ``add_callback_threadsafe``. It is a measuring device, not a service:
no reconnects and no error paths beyond what a no-op needs.

    WQ_AMQP_URL=... WQ_AMQP_PREFIX=... python -m bench.pika_executor --name NAME
"""

from __future__ import annotations

import argparse
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
    Outcome,
    ResultMessage,
    TaskRegistry,
    decode_task,
    encode,
    load_registry,
    load_settings,
    result_properties,
)
from common.logging import configure, get_logger

log = get_logger(__name__)

_Delivery = tuple[int, Any, bytes, bool]


class PikaExecutor:
    """One connection thread (pika) and one worker thread (the handler)."""

    def __init__(self, amqp: AmqpSettings, registry: TaskRegistry, name: str) -> None:
        self._registry = registry
        self._name = name
        self._queue = amqp.topology.task_queue
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
        self._work.put((method.delivery_tag, properties, body, bool(method.redelivered)))

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
        return encode(result), pika.BasicProperties(
            content_type=props.content_type,
            content_encoding=props.content_encoding,
            delivery_mode=props.delivery_mode,
            message_id=props.message_id,
            correlation_id=props.correlation_id,
            type=props.type,
            timestamp=int(props.timestamp.timestamp()),
            app_id=props.app_id,
            headers=dict(props.headers),
        )

    def _reply_and_ack(
        self, tag: int, reply_to: str, body: bytes, properties: pika.BasicProperties
    ) -> None:
        # On the connection's thread: publish waits for the confirm, then the task is acked.
        self._publish.basic_publish("", reply_to, body, properties, mandatory=True)
        self._consume.basic_ack(tag)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; broker and prefix come from ``WQ_AMQP_*`` like the executor's."""
    parser = argparse.ArgumentParser(prog="bench.pika_executor", description=__doc__)
    parser.add_argument("--name", default="pika-executor")
    parser.add_argument("--tasks", default="bench.tasks")
    args = parser.parse_args(argv)
    configure(load_settings(LogSettings))
    amqp = load_settings(AmqpSettings)
    PikaExecutor(amqp, load_registry(args.tasks), args.name).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
