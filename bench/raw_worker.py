"""Raw baseline worker: the executor's protocol with a bare AMQP client and nothing else.

Consume the task queue with manual acks and a prefetch, run the task (a no-op, or a sleep for
the fairness workload), publish the result with confirms and ``mandatory``, then ack. No
validation, no models, no logging: the physical limit of the client on this machine.

    python -m bench.raw_worker --client pika --amqp-url URL --prefix P [--prefetch 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bench.workload import RawNames, raw_result, sleep_ms_of, worker_name


def run_pika(url: str, names: RawNames, prefetch: int) -> None:
    """BlockingConnection; the callback runs on the connection's thread."""
    # Each client is imported only where it is used, so the worker's RSS is its own client's.
    import pika

    parameters = pika.URLParameters(url)
    parameters.client_properties = {"connection_name": "wqbench raw pika worker"}
    connection = pika.BlockingConnection(parameters)
    publish = connection.channel()
    publish.confirm_delivery()
    consume = connection.channel()
    consume.basic_qos(prefetch_count=prefetch)
    executor = worker_name()

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        started = datetime.now(UTC)
        task = json.loads(body)
        if ms := sleep_ms_of(task):
            time.sleep(ms / 1000)
        result, result_properties = raw_result(task, executor, started)
        # With confirm_delivery, basic_publish returns once the broker confirmed (or raises
        # on a nack or, with mandatory, a return).
        publish.basic_publish(
            "",
            properties.reply_to,
            result,
            pika.BasicProperties(**result_properties),
            mandatory=True,
        )
        channel.basic_ack(method.delivery_tag)

    consume.basic_consume(names.tasks, on_message)
    # Unacked deliveries go back to the queue when the connection drops: just leave.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    consume.start_consuming()


async def run_aio_pika(url: str, names: RawNames, prefetch: int) -> None:
    """A plain (not robust) aio-pika connection; the callback runs on the event loop."""
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    connection = await aio_pika.connect(
        url, client_properties={"connection_name": "wqbench raw aio-pika worker"}
    )
    publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
    consume = await connection.channel()
    await consume.set_qos(prefetch_count=prefetch)
    queue = await consume.get_queue(names.tasks, ensure=False)
    executor = worker_name()

    async def on_message(message: AbstractIncomingMessage) -> None:
        started = datetime.now(UTC)
        task = json.loads(message.body)
        if ms := sleep_ms_of(task):
            await asyncio.sleep(ms / 1000)
        result, result_properties = raw_result(task, executor, started)
        assert message.reply_to is not None
        await publish.default_exchange.publish(
            aio_pika.Message(result, **result_properties),
            routing_key=message.reply_to,
            mandatory=True,
        )
        await message.ack()

    await queue.consume(on_message)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await connection.close()


async def run_pika_asyncio(url: str, names: RawNames, prefetch: int) -> None:
    """pika's ``AsyncioConnection`` on the event loop: callbacks, no task per frame."""
    import pika
    from pika.adapters.asyncio_connection import AsyncioConnection

    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    stop = asyncio.Event()
    executor = worker_name()
    parameters = pika.URLParameters(url)
    parameters.client_properties = {"connection_name": "wqbench raw pika-asyncio worker"}
    # Publish sequence number -> the task delivery it reports, acked once it is confirmed.
    awaiting: dict[int, int] = {}
    channels: dict[str, Any] = {}
    published = 0

    def on_confirm(frame: Any) -> None:
        method = frame.method
        tags = (
            [t for t in awaiting if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            task_tag = awaiting.pop(tag)
            channels["consume"].basic_ack(task_tag)

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal published
        started = datetime.now(UTC)
        task = json.loads(body)
        result, result_properties = raw_result(task, executor, started)
        channels["publish"].basic_publish(
            "",
            properties.reply_to,
            result,
            pika.BasicProperties(**result_properties),
            mandatory=True,
        )
        published += 1
        awaiting[published] = method.delivery_tag

    def on_consume_channel(channel: Any) -> None:
        channels["consume"] = channel
        channel.basic_qos(
            prefetch_count=prefetch,
            callback=lambda _: channel.basic_consume(names.tasks, on_message),
        )
        ready.set_result(None)

    def on_publish_channel(channel: Any) -> None:
        channels["publish"] = channel
        channel.confirm_delivery(
            on_confirm, callback=lambda _: connection.channel(on_open_callback=on_consume_channel)
        )

    connection = AsyncioConnection(
        parameters,
        on_open_callback=lambda c: c.channel(on_open_callback=on_publish_channel),
        custom_ioloop=loop,
    )
    await ready
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    connection.close()


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.raw_worker", description=__doc__)
    parser.add_argument("--client", choices=("pika", "aio-pika", "pika-asyncio"), required=True)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--prefetch", type=int, default=1)
    args = parser.parse_args(argv)
    names = RawNames(args.prefix)
    if args.client == "pika":
        run_pika(args.amqp_url, names, args.prefetch)
    elif args.client == "pika-asyncio":
        with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
            runner.run(run_pika_asyncio(args.amqp_url, names, args.prefetch))
    else:
        # On uvloop where installed, as this project's services run: raw aio-pika is then the
        # fastest bare asyncio client here (the figures: docs/benchmarks.md).
        with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
            runner.run(run_aio_pika(args.amqp_url, names, args.prefetch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
