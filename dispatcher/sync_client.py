"""The synchronous Python API (pika), for code without an event loop: a Django or Flask view.

    with SyncDispatcher(AmqpSettings(), DispatcherSettings()) as dispatcher:
        task_id = dispatcher.submit("word_count", {"text": "to be or not to be"})

It records and publishes exactly as the asyncio API does (same store, same wire format).
Outcomes are recorded by a running ``dispatcher serve``; ``wait`` reads them from the store.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import pika
import pika.exceptions

from common import (
    DEFAULT_QUEUE,
    TASK_ROUTING_KEY,
    AmqpSettings,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    JsonValue,
    MessageProperties,
    PublishRejected,
    TaskMessage,
    TaskRegistry,
    cancel_properties,
    encode,
    task_properties,
    topology_mismatch,
)
from common.pika_properties import pika_properties
from dispatcher.requests import CancelReport, TaskRequest, build_task, cancel_notice
from dispatcher.settings import DispatcherSettings
from dispatcher.store.backends import open_store
from dispatcher.store.records import AttemptRecord, TaskRecord
from dispatcher.task_types import declared_queues

_WAIT_POLL_S = 0.1


class SyncDispatcher:
    """Submit and look up tasks from synchronous code; thread-safe, one connection."""

    def __init__(
        self,
        amqp: AmqpSettings,
        settings: DispatcherSettings,
        *,
        registry: TaskRegistry | None = None,
    ) -> None:
        self._amqp = amqp
        self._settings = settings
        self._registry = registry
        self._store = open_store(settings.store)
        self._lock = threading.Lock()
        self._connection: Any = None
        self._channel: Any = None
        # Named task queues declared on the current channel (a new channel starts empty).
        self._declared: set[str] = set()

    def submit(
        self,
        task_type: str,
        params: Mapping[str, JsonValue] | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        eta: datetime | None = None,
        countdown: float | None = None,
        queue: str | None = None,
    ) -> UUID:
        """Record and publish one task; returns once the broker has confirmed it.

        With an ``idempotency_key`` already used, returns that task's id and publishes nothing.
        A task due later (``eta``, ``countdown``) is only recorded; ``dispatcher serve``
        publishes it when it is due.
        """
        request = TaskRequest(
            task_type,
            params or {},
            idempotency_key=idempotency_key,
            priority=priority,
            eta=eta,
            countdown=countdown,
            queue=queue,
        )
        (task_id,) = self.submit_many([request])
        return task_id

    def submit_many(self, requests: Iterable[TaskRequest]) -> list[UUID]:
        """Record and publish tasks one confirm at a time (use the asyncio API for bulk)."""
        requests = list(requests)
        limit = self._amqp.max_body_bytes
        declared: dict[str, str] = {}
        if self._registry is None and any(r.queue is None for r in requests):
            # The queues the executors' published task types declare, as the async API uses.
            declared = declared_queues(self._store.list_task_types())
        tasks = [
            build_task(r, self._registry, max_body_bytes=limit, declared_queue=declared.get)
            for r in requests
        ]
        now = datetime.now(UTC)
        etas = [request.due_at(now) for request in requests]
        if any(eta is not None for eta in etas):
            return [
                self._record(task, request, eta)
                for task, request, eta in zip(tasks, requests, etas, strict=True)
            ]
        recorded = self._store.add_submitted(tasks, [r.idempotency_key for r in requests])
        published: list[UUID] = []
        try:
            with self._lock:
                for task, task_id in zip(tasks, recorded, strict=True):
                    if task.task_id != task_id:
                        continue  # an earlier task holds this idempotency key
                    self._publish(task)
                    published.append(task.task_id)
        finally:
            # One commit for the batch, also when a publish failed half-way: what was
            # confirmed is queued, the rest stays submitted for the outbox to republish.
            if published:
                self._store.mark_queued(published, datetime.now(UTC))
        return recorded

    def _record(self, task: TaskMessage, request: TaskRequest, eta: datetime | None) -> UUID:
        # One by one: a batch that mixes delayed and immediate tasks is rare here.
        if eta is not None:
            (task_id,) = self._store.add_scheduled([task], [eta], [request.idempotency_key])
            return task_id
        (task_id,) = self.submit_many([request])
        return task_id

    def cancel(self, task_id: UUID) -> CancelReport:
        """``Dispatcher.cancel`` for synchronous code: the same flag and the same notice.

        Raises:
            TaskNotFound: no task has this id.
            PublishRejected, BrokerError: the flag is recorded, but executors were not told;
                ask again.
        """
        now = datetime.now(UTC)
        requested = self._store.request_cancel(task_id, now)
        record = self._store.get(task_id)
        if requested:
            notice = cancel_notice(record, now)
            properties = cancel_properties(notice, app_id=self._settings.app_id)
            with self._lock:
                stream = self._amqp.topology.cancel_stream
                self._send("", stream, encode(notice), properties, task_id)
        return CancelReport.of(record, requested=requested)

    def get(self, task_id: UUID) -> TaskRecord:
        """The task's record, or ``TaskNotFound``."""
        return self._store.get(task_id)

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        return self._store.get_many(task_ids)

    def attempts(self, task_id: UUID) -> list[AttemptRecord]:
        """Every recorded attempt of the task, first to last; ``TaskNotFound`` if unknown."""
        attempts = self._store.attempts(task_id)
        if not attempts:
            self._store.get(task_id)  # raises TaskNotFound for an unknown id
        return attempts

    def wait(self, task_id: UUID, *, timeout: float) -> TaskRecord:
        """Poll the store until the task has an outcome; ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            records = self._store.get_many([task_id])
            if records and records[0].state.is_final:
                return records[0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no outcome for task {task_id} within {timeout:g}s")
            time.sleep(_WAIT_POLL_S)

    def close(self) -> None:
        """Close the connection and the store."""
        with self._lock:
            self._drop_connection()
        self._store.close()

    def __enter__(self) -> SyncDispatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _publish(self, task: TaskMessage) -> None:
        topology = self._amqp.topology
        properties = task_properties(
            task, reply_to=topology.results_queue, app_id=self._settings.app_id
        )
        if task.queue != DEFAULT_QUEUE:
            self._declare_queue(task.queue)
        routing_key = topology.routing_key_of(task.queue)
        self._send(topology.task_exchange, routing_key, encode(task), properties, task.task_id)

    def _declare_queue(self, queue: str) -> None:
        """Declare and bind the named task queue ``queue`` once per channel."""
        channel = self._ensure_channel()
        if queue in self._declared and channel is self._channel:
            return
        topology = self._amqp.topology
        name = topology.task_queue_of(queue)
        try:
            channel.queue_declare(name, durable=True, arguments=topology.task_queue_arguments())
            channel.queue_bind(name, topology.task_exchange, topology.routing_key_of(queue))
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._drop_connection()
            if exc.reply_code == 406:  # PRECONDITION_FAILED: declared with other arguments
                raise ConfigError(topology_mismatch(exc.reply_text, topology)) from exc
            raise BrokerError(f"declaring task queue {name} failed: {exc.reply_text}") from exc
        except pika.exceptions.AMQPError as exc:
            self._drop_connection()
            raise BrokerError(f"cannot declare task queue {name}: {type(exc).__name__}") from exc
        self._declared.add(queue)

    def _send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: MessageProperties,
        task_id: UUID,
    ) -> None:
        basic_properties = pika_properties(properties)
        # A connection that went stale while idle is replaced once; a publish that fails on a
        # fresh connection is an error. A re-sent message is a duplicate absorbed by task id.
        for fresh in (False, True):
            try:
                self._ensure_channel(fresh=fresh).basic_publish(
                    exchange, routing_key, body, properties=basic_properties, mandatory=True
                )
                return
            except pika.exceptions.UnroutableError as exc:
                raise PublishRejected("unroutable", task_id=task_id) from exc
            except pika.exceptions.NackError as exc:
                raise PublishRejected("nack", task_id=task_id) from exc
            except pika.exceptions.ConnectionBlockedTimeout as exc:
                self._drop_connection()
                raise PublishRejected(
                    "timeout", task_id=task_id, detail="the broker blocks publishers"
                ) from exc
            except pika.exceptions.AMQPError as exc:
                self._drop_connection()
                if fresh:
                    raise BrokerError(f"publishing failed: {type(exc).__name__}: {exc}") from exc

    def _ensure_channel(self, *, fresh: bool = False) -> Any:
        if not fresh and self._channel is not None and self._channel.is_open:
            # A blocking connection answers heartbeats only when called: catch up now, so a
            # connection the broker dropped during a long idle spell is noticed here.
            try:
                self._connection.process_data_events(0)
                return self._channel
            except pika.exceptions.AMQPError:
                self._drop_connection()
        self._drop_connection()
        try:
            # pika tries the addresses in order and connects to the first that answers.
            self._connection = pika.BlockingConnection(_connection_parameters(self._amqp))
        except pika.exceptions.AMQPError as exc:
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {self._amqp.redacted_url()}: {type(exc).__name__}"
            ) from exc
        channel = self._connection.channel()
        channel.confirm_delivery()
        try:
            _declare_topology(channel, self._amqp)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._drop_connection()
            if exc.reply_code == 406:  # PRECONDITION_FAILED: declared with other arguments
                raise ConfigError(topology_mismatch(exc.reply_text, self._amqp.topology)) from exc
            raise BrokerError(f"declaring the topology failed: {exc.reply_text}") from exc
        self._channel = channel
        return channel

    def _drop_connection(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None and connection.is_open:
            with contextlib.suppress(Exception):
                connection.close()


def _connection_parameters(amqp: AmqpSettings) -> list[Any]:
    """One pika parameter set per broker address in ``WQ_AMQP_URL``."""
    found = []
    for url in amqp.urls_to_try():
        parameters = pika.URLParameters(url)
        parameters.heartbeat = amqp.heartbeat
        parameters.socket_timeout = amqp.connect_timeout
        # Under a memory or disk alarm, fail after the confirm timeout instead of hanging.
        parameters.blocked_connection_timeout = amqp.confirm_timeout
        parameters.client_properties = {"connection_name": f"{amqp.prefix} dispatcher sync client"}
        found.append(parameters)
    return found


def _declare_topology(channel: Any, amqp: AmqpSettings) -> None:
    # Same objects and arguments as common.pika_link.declare_topology, on a blocking channel.
    topology = amqp.topology
    channel.exchange_declare(topology.task_exchange, exchange_type="direct", durable=True)
    for name, arguments in topology.queue_declarations():
        channel.queue_declare(name, durable=True, arguments=arguments)
    channel.queue_bind(topology.task_queue, topology.task_exchange, TASK_ROUTING_KEY)
