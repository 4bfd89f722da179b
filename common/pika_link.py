"""The robust AMQP client both services run on: pika's ``AsyncioConnection`` on the loop.

pika on the loop measured about a quarter less executor CPU per task than aio-pika
(docs/benchmarks.md, "Choosing the executor's client"): a publish is one write to the
transport and one future for its confirm. What aio-pika's robust connection did, this module
does for the executor and the dispatcher:

- a ``Link`` connects to the first broker address that answers (in ``urls_to_try`` order) and,
  when the connection is lost, tries every address again each ``RECONNECT_INTERVAL_S``;
- a ``Channel`` remembers what was set up on it (QoS, confirms, declarations, consumers) and
  replays it, in order, on a new channel after a reconnect, or after the broker closed the
  channel alone (a consumer timeout, a refused ack); a consumer the broker cancels alone (its
  queue was deleted) declares its queue again and consumes it again;
- a confirmed ``publish`` is always ``mandatory`` and ends in a confirm, or raises
  ``PublishRejected`` (a return: ``unroutable``; a nack; no confirm in time: ``timeout``) or
  ``BrokerError`` (the channel went away first);
- an ``Incoming`` settles on the channel it came from, and raises ``BrokerError`` when that
  channel is gone (the broker has requeued the message then);
- a scratch channel (``Link.scratch_channel``) is for one-off requests that may end it
  (passive declares, gets, purges, deletes): it is closed after them and never replayed.

Callbacks from pika run on the loop's thread, so no state here needs a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, cast
from urllib.parse import urlsplit

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel as PikaChannel
from pika.spec import Basic, BasicProperties

from common import (
    TASK_ROUTING_KEY,
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    MessageProperties,
    PublishRejected,
    Topology,
    WorkQueueError,
    redact_url,
    shutdown,
    topology_mismatch,
)
from common.asyncio_io import AsyncioServices
from common.logging import get_logger
from common.pika_properties import pika_properties

log = get_logger(__name__)

# Pause between two rounds of connection attempts over every address (aio-pika's default).
RECONNECT_INTERVAL_S = 5.0
# Pause before a channel the broker closed alone is opened again.
CHANNEL_REOPEN_S = 1.0
# How long a one-off request (a passive declare, a get, a scratch channel's opening) may wait
# for the broker's answer.
REQUEST_TIMEOUT_S = 15.0


class ChannelClosed(BrokerError):
    """The channel or its connection closed; ``code`` and ``text`` are the broker's reason."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"channel closed: {code} {text}".strip())
        self.code = code
        self.text = text


def _closed(exc: BaseException | None) -> ChannelClosed:
    if isinstance(exc, pika.exceptions.ChannelClosed | pika.exceptions.ConnectionClosed):
        return ChannelClosed(exc.reply_code, exc.reply_text)
    return ChannelClosed(0, type(exc).__name__ if exc is not None else "closed")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """A queue's ready messages and consumers, as a declare answers them."""

    messages: int
    consumers: int

    @classmethod
    def of(cls, frame: Any) -> QueueCounts:
        method = frame.method
        return cls(int(method.message_count or 0), int(method.consumer_count or 0))


@dataclass(slots=True)
class Incoming:
    """One message delivered to a consumer, settled on the channel it came on."""

    body: bytes
    properties: BasicProperties
    delivery_tag: int
    redelivered: bool
    consumer_tag: str
    routing_key: str
    exchange: str
    _channel: PikaChannel
    _owner: Channel

    @property
    def headers(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.properties.headers or {})

    @property
    def message_id(self) -> str | None:
        return cast(str | None, self.properties.message_id)

    @property
    def correlation_id(self) -> str | None:
        return cast(str | None, self.properties.correlation_id)

    @property
    def type(self) -> str | None:
        return cast(str | None, self.properties.type)

    @property
    def reply_to(self) -> str | None:
        return cast(str | None, self.properties.reply_to)

    @property
    def priority(self) -> int | None:
        return cast(int | None, self.properties.priority)

    def _settle(self, how: Callable[[PikaChannel], None]) -> None:
        channel = self._channel
        if self._owner.current is not channel or not channel.is_open:  # type: ignore[union-attr]
            raise BrokerError("the delivery's channel is gone (the broker requeued it)")
        try:
            how(channel)
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"could not settle the delivery: {type(exc).__name__}") from exc

    async def ack(self, multiple: bool = False) -> None:
        self._settle(lambda channel: channel.basic_ack(self.delivery_tag, multiple=multiple))

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        self._settle(
            lambda channel: channel.basic_nack(
                self.delivery_tag, multiple=multiple, requeue=requeue
            )
        )

    async def reject(self, requeue: bool = False) -> None:
        self._settle(lambda channel: channel.basic_reject(self.delivery_tag, requeue=requeue))

    @classmethod
    def of(
        cls, owner: Channel, channel: PikaChannel, method: Any, properties: Any, body: bytes
    ) -> Incoming:
        """From pika's callback arguments: a ``Basic.Deliver`` or a ``Basic.GetOk``."""
        return cls(
            body,
            properties,
            method.delivery_tag,
            bool(method.redelivered),
            getattr(method, "consumer_tag", ""),  # a get has none
            method.routing_key,
            method.exchange,
            channel,
            owner,
        )


OnMessage = Callable[[Incoming], Coroutine[Any, Any, None]]
# (message id, exchange, routing key): how a basic.return is matched to its publish.
_Returned = tuple[str | None, str, str]
# A step replayed on every new channel: given the pika channel, it sets one thing up.
_Step = Callable[["Channel", PikaChannel], Awaitable[None]]


class Channel:
    """A channel that outlives reconnects: its set-up steps are replayed on each new one."""

    def __init__(self, link: Link, *, confirms: bool, robust: bool = True) -> None:
        self._link = link
        self._confirms = confirms
        # A scratch channel (``Link.scratch_channel``) replays nothing and is never reopened.
        self._robust = robust
        self._steps: list[tuple[str, _Step]] = []  # (consumer tag or "", step)
        self.current: PikaChannel | None = None
        self._waiters: set[asyncio.Future[Any]] = set()
        # Publish sequence number -> (what a return names it by, its confirm), oldest first.
        self._pending: OrderedDict[int, tuple[_Returned, asyncio.Future[None]]] = OrderedDict()
        self._sequence = 0
        # True once confirms are selected and every step replayed: only then may it publish.
        self._ready = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._reopening: asyncio.Task[None] | None = None

    # -- opening and replay ----------------------------------------------------------------

    async def _open(self) -> None:
        """Open a pika channel on the link's connection and replay every step on it."""
        connection = self._link.connection
        if connection is None or not connection.is_open:
            raise BrokerError("not connected")
        self._ready = False
        # Numbering starts again on a new channel: what was pending on the old one has failed.
        self._fail_all(BrokerError("the channel was replaced"))
        self._sequence = 0
        opened: asyncio.Future[PikaChannel] = self._link.loop.create_future()
        pika_channel: Any = None
        try:
            pika_channel = connection.channel(on_open_callback=_resolver(opened))
            pika_channel.add_on_close_callback(self._on_close)
            self.current = pika_channel
            await self._wait(opened)
            pika_channel.add_on_cancel_callback(self._on_cancelled)
            if self._confirms:
                selected: asyncio.Future[Any] = self._link.loop.create_future()
                pika_channel.confirm_delivery(self._on_confirm, callback=_resolver(selected))
                pika_channel.add_on_return_callback(self._on_return)
                await self._wait(selected)
            for entry in list(self._steps):
                if entry in self._steps:  # not forgotten meanwhile (a consumer cancelled)
                    await entry[1](self, pika_channel)
        except BaseException as exc:
            # Half set up is not set up: close it (opening or open, current or replaced
            # meanwhile), so that the next restore starts afresh and nothing leaks.
            if pika_channel is not None:
                if self.current is pika_channel:
                    self.current = None
                _close_quietly(pika_channel)
            if isinstance(exc, pika.exceptions.AMQPError):
                raise BrokerError(f"could not open a channel: {type(exc).__name__}") from exc
            raise
        self._ready = True

    def _on_close(self, pika_channel: PikaChannel, exc: BaseException) -> None:
        if pika_channel is not self.current:
            return
        self._lost(_closed(exc))
        if self._link.closing or not self._robust:
            return
        if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
            log.warning("broker_channel_closed", code=exc.reply_code, reason=exc.reply_text)
            # The connection is still up (else the link restores everything): reopen alone.
            if self._reopening is None or self._reopening.done():  # one restore at a time
                self._reopening = self._spawn(self._reopen())

    def _on_cancelled(self, frame: Any) -> None:
        # The broker ends a consumer alone when its queue is deleted (or, for quorum queues, in
        # some membership changes): consume it again rather than sit idle for good.
        tag = frame.method.consumer_tag
        log.warning("broker_consumer_cancelled", consumer_tag=tag)
        self._spawn(self._resume(tag))

    async def _resume(self, tag: str) -> None:
        """Declare again what this channel declared, and consume ``tag`` again."""
        while not self._link.closing and self._robust:
            await asyncio.sleep(CHANNEL_REOPEN_S)
            channel = self.current
            if channel is None or not channel.is_open:
                return  # the channel's own restore consumes everything again
            if not any(owner == tag for owner, _ in self._steps):
                return  # cancelled by us meanwhile
            steps = [step for owner, step in self._steps if owner in ("", tag)]
            try:
                for step in steps:
                    await step(self, channel)
            except (BrokerError, pika.exceptions.AMQPError) as exc:
                log.warning("broker_consumer_restore_failed", consumer_tag=tag, error=str(exc))
                continue
            log.info("broker_consumer_restored", consumer_tag=tag)
            return

    async def _reopen(self) -> None:
        while not self._link.closing and self._robust:  # not closed for good meanwhile
            await asyncio.sleep(CHANNEL_REOPEN_S)
            if self._link.reconnecting or self._link.is_closed:
                continue  # the link reopens every channel; look again once it is done
            if self.current is not None and self._ready:
                return  # restored meanwhile
            try:
                await self._open()
            except BrokerError as exc:
                log.warning("broker_channel_restore_failed", error=str(exc))
                continue
            log.info("broker_channel_restored")
            return

    def _lost(self, error: BrokerError) -> None:
        """The pika channel is gone: nothing may use it, and whatever waited on it fails."""
        self.current = None
        self._ready = False
        self._fail_all(error)

    def _fail_all(self, error: BrokerError) -> None:
        for future in list(self._waiters):
            if not future.done():
                future.set_exception(error)
        self._waiters.clear()
        for _, confirm in self._pending.values():
            if not confirm.done():
                confirm.set_exception(BrokerError(f"connection lost while publishing: {error}"))
        self._pending.clear()

    async def _wait(self, future: asyncio.Future[Any]) -> Any:
        """Wait for a pika callback's future; a close of the channel meanwhile raises."""
        self._waiters.add(future)
        try:
            return await future
        finally:
            self._waiters.discard(future)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._link.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _live(self) -> PikaChannel:
        if self.current is None or not self.current.is_open:
            raise BrokerError("the channel is closed (the broker is away?)")
        return self.current

    async def _remember(self, step: _Step, tag: str = "") -> None:
        """Run ``step`` now and replay it on every later channel."""
        try:
            await step(self, self._live())
        except pika.exceptions.AMQPError as exc:  # the channel closed under the call
            raise BrokerError(f"the channel closed: {type(exc).__name__}") from exc
        if self._robust:
            self._steps.append((tag, step))

    async def _call(self, call: Callable[[PikaChannel, Callable[[Any], None]], None]) -> Any:
        """Run one request on the live channel, once (not replayed), and return its answer."""
        done: asyncio.Future[Any] = self._link.loop.create_future()
        try:
            call(self._live(), _resolver(done))
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"the channel closed: {type(exc).__name__}") from exc
        return await self._answer(done)

    async def _unless_refused(
        self, code: int, call: Callable[[PikaChannel, Callable[[Any], None]], None]
    ) -> Any:
        """``_call``, but None where the broker refuses it with ``code`` (closing the channel)."""
        try:
            return await self._call(call)
        except ChannelClosed as exc:
            if exc.code != code:
                raise
            return None

    async def _answer(self, future: asyncio.Future[Any]) -> Any:
        """Wait for a one-off request's answer, at most ``REQUEST_TIMEOUT_S``: a connection
        the broker blocks (a resource alarm) answers nothing until the alarm clears."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await self._wait(future)
        except TimeoutError as exc:
            raise BrokerError(f"no answer from the broker within {REQUEST_TIMEOUT_S:g}s") from exc

    async def close(self) -> None:
        """Close this channel for good: it is neither replayed nor reopened any more, and
        whatever waits on it fails with ``BrokerError``."""
        self._steps.clear()
        self._robust = False
        with contextlib.suppress(ValueError):
            self._link.channels.remove(self)
        channel = self.current
        self._lost(BrokerError("the channel was closed"))
        if channel is None or channel.is_closed or channel.is_closing:
            return
        closed: asyncio.Future[Any] = self._link.loop.create_future()
        channel.add_on_close_callback(lambda *_: _set(closed, None))
        with contextlib.suppress(pika.exceptions.AMQPError, TimeoutError):
            channel.close()  # an opening one too: pika then drops its OpenOk
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await closed

    # -- set-up steps ----------------------------------------------------------------------

    async def set_qos(self, *, prefetch_count: int, global_: bool = False) -> None:
        async def qos(owner: Channel, channel: PikaChannel) -> None:
            done: asyncio.Future[Any] = owner._link.loop.create_future()
            channel.basic_qos(
                prefetch_count=prefetch_count, global_qos=global_, callback=_resolver(done)
            )
            await owner._wait(done)

        await self._remember(qos)

    async def declare_exchange(self, name: str, kind: str, *, durable: bool) -> None:
        async def declare(owner: Channel, channel: PikaChannel) -> None:
            done: asyncio.Future[Any] = owner._link.loop.create_future()
            channel.exchange_declare(
                name, exchange_type=kind, durable=durable, callback=_resolver(done)
            )
            await owner._wait(done)

        await self._remember(declare)

    async def declare_queue(
        self,
        name: str,
        *,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> QueueCounts:
        """Declare ``name`` (and again on every later channel); its counts as declared now."""
        counts = QueueCounts(0, 0)

        async def declare(owner: Channel, channel: PikaChannel) -> None:
            nonlocal counts
            done: asyncio.Future[Any] = owner._link.loop.create_future()
            channel.queue_declare(
                name,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                arguments=dict(arguments or {}),
                callback=_resolver(done),
            )
            counts = QueueCounts.of(await owner._wait(done))

        await self._remember(declare)
        return counts

    # -- one-off requests (not replayed) -----------------------------------------------------

    async def inspect_queue(self, name: str) -> QueueCounts | None:
        """A passive declare: ``name``'s counts, or None if it does not exist.

        A missing queue closes the channel (404), so this is for scratch channels.
        https://www.rabbitmq.com/docs/queues#passive-declaration
        """
        frame = await self._unless_refused(
            _NOT_FOUND,
            lambda channel, done: channel.queue_declare(name, passive=True, callback=done),
        )
        return None if frame is None else QueueCounts.of(frame)

    async def exchange_exists(self, name: str) -> bool:
        """A passive declare of the exchange ``name`` (a missing one closes the channel)."""
        frame = await self._unless_refused(
            _NOT_FOUND,
            lambda channel, done: channel.exchange_declare(name, passive=True, callback=done),
        )
        return frame is not None

    async def get(self, queue: str) -> Incoming | None:
        """Take the next message of ``queue`` unacked (``basic.get``), or None if it is empty."""
        answer: asyncio.Future[Incoming | None] = self._link.loop.create_future()

        def got(channel: PikaChannel, method: Any, properties: Any, body: bytes) -> None:
            _set(answer, Incoming.of(self, channel, method, properties, body))

        def empty(_: Any) -> None:
            _set(answer, None)

        channel = self._live()
        try:
            # pika calls ``got`` with a message; Basic.GetEmpty comes only to callbacks added
            # for it, which stays registered until one comes: removed after a message.
            channel.add_callback(empty, [Basic.GetEmpty], one_shot=True)
            channel.basic_get(queue, got, auto_ack=False)
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"the channel closed: {type(exc).__name__}") from exc
        try:
            return cast("Incoming | None", await self._answer(answer))
        finally:
            with contextlib.suppress(Exception):
                channel.callbacks.remove(channel.channel_number, Basic.GetEmpty, empty)

    async def purge(self, queue: str) -> int:
        """Delete every ready message of ``queue``; how many there were."""
        frame = await self._call(lambda channel, done: channel.queue_purge(queue, callback=done))
        return int(frame.method.message_count or 0)

    async def delete_queue(self, name: str, *, if_unused: bool = False) -> bool:
        """Delete the queue ``name``; False if ``if_unused`` and it has consumers (the refusal
        closes the channel)."""
        frame = await self._unless_refused(
            _PRECONDITION_FAILED,
            lambda channel, done: channel.queue_delete(name, if_unused=if_unused, callback=done),
        )
        return frame is not None

    async def delete_exchange(self, name: str) -> None:
        await self._call(lambda channel, done: channel.exchange_delete(name, callback=done))

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        async def bind(owner: Channel, channel: PikaChannel) -> None:
            done: asyncio.Future[Any] = owner._link.loop.create_future()
            channel.queue_bind(queue, exchange, routing_key=routing_key, callback=_resolver(done))
            await owner._wait(done)

        await self._remember(bind)

    async def consume(
        self,
        queue: str,
        on_message: OnMessage,
        *,
        consumer_tag: str,
        no_ack: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> str:
        """Consume ``queue``: each delivery is handled in a task of its own."""

        def deliver(channel: PikaChannel, method: Any, properties: Any, body: bytes) -> None:
            self._spawn(on_message(Incoming.of(self, channel, method, properties, body)))

        async def consume(owner: Channel, channel: PikaChannel) -> None:
            done: asyncio.Future[Any] = owner._link.loop.create_future()
            channel.basic_consume(
                queue,
                deliver,
                auto_ack=no_ack,
                consumer_tag=consumer_tag,
                arguments=dict(arguments or {}),
                callback=_resolver(done),
            )
            await owner._wait(done)

        await self._remember(consume, consumer_tag)
        return consumer_tag

    def forget(self, consumer_tag: str) -> None:
        """Stop replaying the consumer ``consumer_tag`` after a reconnect (shutdown's first step,
        which must hold even while the broker is away)."""
        self._steps = [(tag, step) for tag, step in self._steps if tag != consumer_tag]

    async def cancel(self, consumer_tag: str) -> None:
        """Stop consuming ``consumer_tag`` (and stop replaying it)."""
        self.forget(consumer_tag)
        channel = self._live()
        if consumer_tag not in channel.consumer_tags:
            return  # the broker ended it already: pika would never answer
        done: asyncio.Future[Any] = self._link.loop.create_future()
        try:
            channel.basic_cancel(consumer_tag, callback=_resolver(done))
        except pika.exceptions.AMQPError as exc:
            raise BrokerError(f"the channel closed: {type(exc).__name__}") from exc
        await self._wait(done)

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: MessageProperties,
        *,
        timeout: float,
    ) -> None:
        """Publish ``mandatory`` and wait for the broker's confirm (see the module's text)."""
        assert self._confirms, "publish needs a channel with confirms"
        channel = self._live()
        if not self._ready:
            raise BrokerError("the channel is being restored")
        try:
            # pika encodes every frame before it writes any: if this raises, nothing was sent,
            # and no sequence number is used up.
            channel.basic_publish(
                exchange, routing_key, body, pika_properties(properties), mandatory=True
            )
        except (pika.exceptions.ProtocolSyntaxError, pika.exceptions.ShortStringTooLong) as exc:
            raise PublishRejected("invalid", detail=f"cannot be encoded: {exc}") from exc
        except (pika.exceptions.AMQPError, ConnectionError) as exc:
            raise BrokerError(f"connection lost while publishing: {type(exc).__name__}") from exc
        confirm: asyncio.Future[None] = self._link.loop.create_future()
        self._sequence += 1
        sequence = self._sequence
        self._pending[sequence] = ((properties.message_id, exchange, routing_key), confirm)
        try:
            async with asyncio.timeout(timeout):
                await confirm
        except TimeoutError as exc:
            raise PublishRejected("timeout", detail=f"no confirm within {timeout:g}s") from exc
        finally:
            self._pending.pop(sequence, None)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        nack = isinstance(method, Basic.Nack)
        last = method.delivery_tag
        settled: list[int] = []
        if method.multiple:
            settled = [sequence for sequence in self._pending if sequence <= last]
        elif last in self._pending:
            settled.append(last)
        for sequence in settled:
            _, confirm = self._pending.pop(sequence)
            if confirm.done():
                continue
            if nack:
                confirm.set_exception(
                    PublishRejected("nack", detail="the broker refused the message")
                )
            else:
                confirm.set_result(None)

    def _on_return(self, channel: PikaChannel, method: Any, properties: Any, body: bytes) -> None:
        # A return comes before its message's confirm and carries no sequence number: fail the
        # oldest publish of the same message id to the same exchange and routing key. (A task
        # and its cancel notice share an id, verdicts have none; neither shares the rest.)
        returned = (properties.message_id, method.exchange, method.routing_key)
        for identity, confirm in self._pending.values():
            if identity == returned and not confirm.done():
                confirm.set_exception(
                    PublishRejected("unroutable", detail=f"no queue for {method.routing_key!r}")
                )
                return


class Link:
    """A pika connection on the running loop that reconnects, with failover, by itself.

    ``close_callbacks`` are called as ``callback(link, error)`` when the connection is lost,
    ``reconnect_callbacks`` as ``callback(link)`` once every channel is restored (the names
    and signatures of aio-pika's robust connection, which ``ReadyFile.follow`` relies on).
    """

    def __init__(self, settings: AmqpSettings, *, name: str) -> None:
        self._settings = settings
        self._name = name
        self.loop = asyncio.get_running_loop()
        self.connection: AsyncioConnection | None = None
        self.url = ""
        self.channels: list[Channel] = []
        self.close_callbacks: set[Callable[..., None]] = set()
        self.reconnect_callbacks: set[Callable[..., None]] = set()
        self.closing = False
        self.reconnecting = False
        self._reconnect: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    @property
    def is_closed(self) -> bool:
        return self.connection is None or not self.connection.is_open

    @property
    def server_properties(self) -> Mapping[str, Any]:
        return (self.connection.server_properties if self.connection else None) or {}

    async def connect(self) -> None:
        """Connect to the first address that answers; ``BrokerUnavailable`` if none does."""
        failures: list[str] = []
        for url in self._settings.urls_to_try():
            try:
                async with asyncio.timeout(self._settings.connect_timeout):
                    self.connection = await self._open(url)
            except Exception as exc:
                # pika reports DNS and TLS failures as plain Exceptions
                # (AMQPConnectionWorkflowFailed): each one means "try the next address"
                failures.append(self._settings.scrub(str(exc) or type(exc).__name__))
                continue
            self.url = url
            return
        raise BrokerUnavailable(
            f"cannot connect to RabbitMQ at {self._settings.redacted_url()}: {failures[-1]}"
        )

    async def _open(self, url: str) -> AsyncioConnection:
        parameters = pika.URLParameters(url)
        parameters.heartbeat = self._settings.heartbeat
        parameters.connection_attempts = 1
        parameters.socket_timeout = self._settings.connect_timeout
        parameters.stack_timeout = self._settings.connect_timeout
        parameters.client_properties = {"connection_name": f"{self._settings.prefix} {self._name}"}
        opened: asyncio.Future[AsyncioConnection] = self.loop.create_future()

        def failed(_: object, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(exc if isinstance(exc, Exception) else BrokerError(str(exc)))

        connection = AsyncioConnection(
            parameters,
            on_open_callback=_resolver(opened),
            on_open_error_callback=failed,
            on_close_callback=self._on_close,
            custom_ioloop=AsyncioServices(self.loop),
        )
        try:
            return await opened
        except BaseException:
            with contextlib.suppress(Exception):
                if not connection.is_closed and not connection.is_closing:
                    connection.close()
            raise

    @property
    def is_ready(self) -> bool:
        """Connected, with every channel restored (not between a loss and its reconnect)."""
        return not self.is_closed and not self.reconnecting and not self.closing

    async def channel(self, *, confirms: bool = False) -> Channel:
        """A new robust channel on this link."""
        channel = Channel(self, confirms=confirms)
        await channel._open()
        self.channels.append(channel)
        return channel

    @contextlib.asynccontextmanager
    async def scratch_channel(self, *, confirms: bool = False) -> AsyncIterator[Channel]:
        """A channel for one operation (passive declares, gets, deletes), closed after it.

        It replays nothing and is not reopened: a broker that closes it (a 404 for a missing
        queue) ends it, and a lost connection fails what waits on it with ``BrokerError``.
        """
        channel = Channel(self, confirms=confirms, robust=False)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await channel._open()
        except TimeoutError as exc:
            await channel.close()
            raise BrokerError(f"no channel from the broker within {REQUEST_TIMEOUT_S:g}s") from exc
        try:
            yield channel
        finally:
            await channel.close()

    def _on_close(self, connection: AsyncioConnection, exc: BaseException) -> None:
        if connection is not self.connection:
            return
        for channel in list(self.channels):
            channel._lost(_closed(exc))
        if self.closing:
            if self._closed is not None:
                _set(self._closed, None)
            return
        log.warning(
            "broker_connection_lost",
            connection=self._name,
            broker=self.redacted_url(),
            error=self._settings.scrub(str(exc) or type(exc).__name__),
        )
        if self._reconnect is None or self._reconnect.done():
            self.reconnecting = True
            self._reconnect = self.loop.create_task(self._reconnect_loop())
        self._notify(self.close_callbacks, exc)

    async def _reconnect_loop(self) -> None:
        try:
            while not self.closing:
                await asyncio.sleep(RECONNECT_INTERVAL_S)
                try:
                    await self.connect()
                    for channel in list(self.channels):
                        await channel._open()
                except Exception as exc:  # whatever failed, try again later
                    log.info("broker_reconnect_failed", connection=self._name, error=str(exc))
                    self._drop_connection()
                    continue
                if not self.is_closed:
                    break
                # Lost again after the last channel came back: _on_close saw this loop
                # running and left it to go round once more.
        finally:
            self.reconnecting = False
        if self.closing:
            return
        log.info("broker_reconnected", connection=self._name, broker=self.redacted_url())
        self._notify(self.reconnect_callbacks)

    def _notify(self, callbacks: set[Callable[..., None]], *args: object) -> None:
        # A failing callback (a readiness file that cannot be written) must not stop the link.
        for callback in list(callbacks):
            try:
                callback(self, *args)
            except Exception:
                log.exception("broker_callback_failed", connection=self._name)

    def _drop_connection(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()

    async def close(self) -> None:
        """Close the connection (and so every channel); ends any reconnect in progress."""
        self.closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        connection = self.connection
        if connection is None or connection.is_closed:
            return
        self._closed = self.loop.create_future()
        if not connection.is_closing:
            connection.close()
        await self._closed

    def redacted_url(self) -> str:
        parts = urlsplit(self.url)
        return redact_url(parts._replace(query="").geturl())


@contextlib.asynccontextmanager
async def open_link(settings: AmqpSettings, *, name: str) -> AsyncIterator[Link]:
    """A connected link for one command's work, closed after it (``BrokerUnavailable`` if no
    address answers)."""
    link = Link(settings, name=name)
    await link.connect()
    try:
        yield link
    finally:
        await close_quickly(link, what=name)


def _close_quietly(channel: Any) -> None:
    with contextlib.suppress(Exception):
        if not channel.is_closed and not channel.is_closing:
            channel.close()


def _resolver(future: asyncio.Future[Any]) -> Callable[[Any], None]:
    return lambda value: _set(future, value)


def _set(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


Publish = Callable[[str, str, bytes, MessageProperties], Awaitable[None]]

# Shutdown steps skip a broker that is away; these are what this client raises when it is.
_SHUTDOWN_STEP_ERRORS: tuple[type[Exception], ...] = (
    WorkQueueError,
    pika.exceptions.AMQPError,
    ConnectionError,
)
while_reachable = partial(shutdown.while_reachable, errors=_SHUTDOWN_STEP_ERRORS)
close_quickly = partial(shutdown.close_quickly, errors=_SHUTDOWN_STEP_ERRORS)

# What the broker answers a declaration whose arguments differ from the existing object's,
# and a passive declaration of an object that does not exist.
_PRECONDITION_FAILED = 406
_NOT_FOUND = 404


async def declare_topology(channel: Channel, topology: Topology) -> dict[str, QueueCounts]:
    """Declare every exchange and queue (idempotent); each queue's counts as declared.

    Both services declare the whole topology, so whichever starts first makes it usable: a
    task published before any executor ran is routed and kept, never dropped.
    """
    counts = {}
    with _declaring(topology):
        await channel.declare_exchange(topology.task_exchange, "direct", durable=True)
        for name, arguments in topology.queue_declarations():
            counts[name] = await channel.declare_queue(name, durable=True, arguments=arguments)
        await channel.bind(topology.task_queue, topology.task_exchange, TASK_ROUTING_KEY)
    return counts


async def declare_results_queue(channel: Channel, topology: Topology) -> None:
    """Declare only the results queue, for a channel that consumes it (replayed with it)."""
    with _declaring(topology):
        await channel.declare_queue(
            topology.results_queue, durable=True, arguments=topology.results_queue_arguments()
        )


async def declare_task_queue(channel: Channel, topology: Topology, queue: str) -> str:
    """Declare the task queue called ``queue``, bound to the task exchange; its broker name."""
    name = topology.task_queue_of(queue)
    with _declaring(topology):
        await channel.declare_queue(
            name, durable=True, arguments=dict(topology.task_queue_arguments())
        )
        await channel.bind(name, topology.task_exchange, topology.routing_key_of(queue))
    return name


@contextlib.contextmanager
def _declaring(topology: Topology) -> Iterator[None]:
    """Turn the broker's refusal of a declaration's arguments into ``ConfigError``."""
    try:
        yield
    except ChannelClosed as exc:
        if exc.code != _PRECONDITION_FAILED:
            raise
        raise ConfigError(topology_mismatch(f"{exc.code} {exc.text}", topology)) from exc
