"""A throw-away RabbitMQ node of the fault tests' own, beside (never instead of) the shared one.

Fault tests stop the broker's application, raise alarms and close every connection. Doing that to
the shared node ``rabbit@localhost`` would break every other test and developer on the machine, so
each ``PrivateBroker`` is a ``devbroker.node.LocalNode`` (its own node name, ports, folder and
cookie; a watchdog stops it should pytest die; see that module) with the fault helpers on top,
and remembers what it changed so that ``NodeKeeper`` can undo it after a test.
"""

from __future__ import annotations

import time
from pathlib import Path
from uuid import uuid4

import pika

from devbroker.node import (
    RABBITMQ_BIN,
    SHARED_NODE,
    LocalNode,
    RabbitmqctlError,
    epmd_names,
    free_port,
)
from devbroker.node import NodeError as PrivateBrokerError

__all__ = [
    "SHARED_NODE",
    "NodeKeeper",
    "PrivateBroker",
    "PrivateBrokerError",
    "RabbitmqctlError",
    "epmd_names",
    "free_port",
]

TINY_WATERMARK = "0.0000001"
NORMAL_WATERMARK = "0.4"


class PrivateBroker(LocalNode):
    """One private node with fault helpers. Use ``with`` or ``start``/``stop``."""

    def __init__(self, *, name_prefix: str = "wqfault", rabbitmq_bin: Path = RABBITMQ_BIN) -> None:
        super().__init__(name_prefix=name_prefix, rabbitmq_bin=rabbitmq_bin)
        #: State changes made through this object, so a fixture knows what to undo.
        self.app_stopped = False
        self.memory_alarm = False
        #: Set by a test that changed the node in a way nothing here tracks (users, policies,
        #: ``rabbitmqctl(...)`` of its own): the fixture then replaces the node after the test.
        self.dirty = False

    # ------------------------------------------------------------------ faults

    def stop_app(self, timeout: float = 60.0) -> None:
        """Stop the RabbitMQ application (listeners and connections go; the VM stays)."""
        self.rabbitmqctl("stop_app", timeout=timeout)
        self.app_stopped = True

    def start_app(self, timeout: float = 60.0) -> None:
        """Start the application again and wait until AMQP answers."""
        deadline = time.monotonic() + timeout
        self.rabbitmqctl("start_app", timeout=timeout)
        self._wait_for_amqp(deadline, what="AMQP after start_app")
        self.app_stopped = False

    def settle_streams(self, attempts: int = 3) -> None:
        """Leave the node a stream coordinator that outlives a crash or a restart.

        RabbitMQ 3.10 starts its stream coordinator with the first stream a node declares; a
        node stopped or killed within seconds of that comes back with the stream ``down`` for
        good (docs/reliability.md, known limits). A probe stream declared, written to and seen
        to survive a restart of the application settles it; until then it is tried again.
        """
        for attempt in range(1, attempts + 1):
            probe = f"wq.probe.{uuid4().hex[:8]}"
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.queue_declare(probe, durable=True, arguments={"x-queue-type": "stream"})
                channel.basic_publish("", probe, b"probe")
            finally:
                connection.close()
            self.stop_app()
            self.start_app()
            states = self.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name", "state")
            self.rabbitmqctl("delete_queue", probe)
            if f"{probe}\trunning" in states.stdout:
                return
            if attempt == attempts:
                raise PrivateBrokerError(f"streams do not survive a restart: {states.stdout}")

    def close_all_connections(self, reason: str = "closed by a fault test") -> None:
        """Close every client connection of the node (clients see CONNECTION_FORCED)."""
        self.rabbitmqctl("close_all_connections", "--global", reason)

    def set_memory_alarm(self, timeout: float = 30.0) -> None:
        """Raise the memory alarm (tiny watermark) and wait until the node reports it."""
        self.memory_alarm = True
        self.rabbitmqctl("set_vm_memory_high_watermark", TINY_WATERMARK)
        self._wait_for_memory_alarm(True, timeout)

    def clear_memory_alarm(self, timeout: float = 30.0) -> None:
        """Put the watermark back to 0.4 and wait until the memory alarm is gone."""
        self.rabbitmqctl("set_vm_memory_high_watermark", NORMAL_WATERMARK)
        self._wait_for_memory_alarm(False, timeout)
        self.memory_alarm = False

    def alarms(self) -> str:
        """The node's alarms as Erlang prints them, e.g. ``[{{resource_limit,memory,...},[]}]``."""
        return self.rabbitmqctl("eval", "rabbit_alarm:get_alarms().").stdout.strip()

    def _wait_for_memory_alarm(self, raised: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            alarms = self.alarms()
            if ("resource_limit,memory" in alarms) == raised:
                return
            if time.monotonic() > deadline:
                state = "raised" if raised else "cleared"
                raise PrivateBrokerError(f"memory alarm not {state} after {timeout}s: {alarms}")
            time.sleep(0.2)


class NodeKeeper:
    """Hands out one private node per session, healthy, and takes it back restored.

    ``acquire`` starts a node when there is none or the last one is no longer usable;
    ``release`` undoes what the test did through the helpers (memory alarm, stopped app) and
    drops the node when that fails, when the test marked it ``dirty`` or, after a failed test,
    when any alarm is still up. The next ``acquire`` then starts a fresh one.
    """

    def __init__(self) -> None:
        self.broker: PrivateBroker | None = None
        #: Nodes started so far (replacements included).
        self.starts = 0

    def acquire(self) -> PrivateBroker:
        """The current node, started or replaced first when needed."""
        if self.broker is not None and not self._usable(self.broker):
            self.discard()
        if self.broker is None:
            broker = PrivateBroker()
            broker.start()  # stops itself and raises with the log tail when it cannot start
            self.broker = broker
            self.starts += 1
        return self.broker

    def release(self, *, failed: bool) -> None:
        """Restore the node after a test, or drop it when it cannot be trusted any more."""
        broker = self.broker
        if broker is None:
            return
        try:
            if broker.dirty or not broker.running:
                raise PrivateBrokerError("node marked dirty or gone")
            if broker.app_stopped or not broker.amqp_answers():
                broker.start_app()
            if broker.memory_alarm:
                broker.clear_memory_alarm()
            if failed and broker.alarms() != "[]":
                raise PrivateBrokerError(f"alarms left after a failed test: {broker.alarms()}")
        except Exception:
            self.discard()

    def discard(self) -> None:
        """Stop and forget the current node (if any)."""
        broker, self.broker = self.broker, None
        if broker is not None:
            broker.stop()

    @staticmethod
    def _usable(broker: PrivateBroker) -> bool:
        return (
            broker.running
            and not (broker.dirty or broker.app_stopped or broker.memory_alarm)
            and broker.amqp_answers()
        )
