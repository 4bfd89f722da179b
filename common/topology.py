"""Every broker object's name and arguments, in one place (docs/protocol.md, "Topology").

Pure values: declaring them is the adapters' job. All names derive from one prefix, ``wq`` by
default, so that one broker can host several isolated deployments (and tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

DEFAULT_PREFIX: Final = "wq"
TASK_ROUTING_KEY: Final = "task"
# Task queues: every deployment has the default one (``wq.tasks``, routing key ``task``); a task
# type or a submission may name another (``reports``: queue and routing key ``wq.tasks.reports``).
DEFAULT_QUEUE: Final = "default"
QUEUE_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# ``wq.tasks.dead`` is the task dead-letter queue: no task queue may take its name.
_RESERVED_QUEUE_NAMES: Final = frozenset({"dead"})
# Heartbeats are advisory and repeated: a stale one is worthless, so the queue keeps each for
# a minute at most and only the newest few thousand while no dispatcher consumes it.
# https://www.rabbitmq.com/docs/ttl#per-queue-message-ttl, https://www.rabbitmq.com/docs/maxlength
HEARTBEAT_TTL_MS: Final = 60_000
HEARTBEAT_MAX_LENGTH: Final = 5_000
QueueType = Literal["classic", "quorum"]
# Cancel notices are kept a week: a task cancelled while no executor ran is still skipped by
# an executor that starts within that time. Small segments let retention actually trim the
# stream (RabbitMQ deletes whole segments only; the default segment is 500 MB).
# https://www.rabbitmq.com/docs/streams#retention
CANCEL_RETENTION: Final = "7D"
_CANCEL_SEGMENT_BYTES: Final = 1_000_000
_CANCEL_MAX_BYTES: Final = 100_000_000
# Progress is advisory: a backlog (no dispatcher consuming) keeps only the newest reports.
PROGRESS_MAX_LENGTH: Final = 10_000

# The ``app_id`` property of what each service publishes.
DISPATCHER_APP_ID: Final = "wq-dispatcher"
EXECUTOR_APP_ID: Final = "wq-executor"

# Message headers (docs/protocol.md). On a task: its attempt.
ATTEMPT_HEADER: Final = "x-wq-attempt"
# On a result and a heartbeat.
OUTCOME_HEADER: Final = "x-wq-outcome"
EXECUTOR_HEADER: Final = "x-wq-executor"
# On a dead-lettered copy of a task: why it is there (``common.codec.DeadLetterHeaders``).
DEAD_REASON_HEADER: Final = "x-wq-dead-reason"
ERROR_KIND_HEADER: Final = "x-wq-error-kind"
ERROR_TYPE_HEADER: Final = "x-wq-error-type"
ERROR_HEADER: Final = "x-wq-error"
ATTEMPTS_HEADER: Final = "x-wq-attempts"
ORIGINAL_QUEUE_HEADER: Final = "x-wq-original-queue"
DEAD_AT_HEADER: Final = "x-wq-dead-at"
# What RabbitMQ sets on a quorum queue's redelivery: how often it was returned.
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of the exchange and queues of one deployment."""

    prefix: str = DEFAULT_PREFIX
    queue_type: QueueType = "classic"
    delivery_limit: int = 5
    # Priority levels of a classic task queue (x-max-priority); 0 means none.
    max_priority: int = 0

    @property
    def task_exchange(self) -> str:
        """Durable direct exchange that task messages are published to."""
        return f"{self.prefix}.tasks"

    @property
    def task_queue(self) -> str:
        """Durable queue that executors consume, bound to the task exchange."""
        return f"{self.prefix}.tasks"

    def task_queue_of(self, queue: str) -> str:
        """The broker queue of the task queue called ``queue`` (``default``: ``task_queue``)."""
        return self.task_queue if queue == DEFAULT_QUEUE else f"{self.task_queue}.{queue}"

    def routing_key_of(self, queue: str) -> str:
        """The routing key that reaches task queue ``queue`` through ``task_exchange``.

        The default queue keeps ``task``, so producers written before named queues still reach
        it; any other's is its broker queue name, which no other binding can take.
        """
        return TASK_ROUTING_KEY if queue == DEFAULT_QUEUE else self.task_queue_of(queue)

    def queue_named(self, broker_queue: str | None) -> str | None:
        """The task queue whose broker queue is ``broker_queue``; None if none may be."""
        if broker_queue == self.task_queue:
            return DEFAULT_QUEUE
        prefix = f"{self.task_queue}."
        if broker_queue is None or not broker_queue.startswith(prefix):
            return None
        try:
            return check_queue_name(broker_queue.removeprefix(prefix))
        except ValueError:
            return None

    @property
    def results_queue(self) -> str:
        """Durable queue that executors reply to and the dispatcher consumes."""
        return f"{self.prefix}.results"

    @property
    def task_dead_queue(self) -> str:
        """Where rejected task messages go instead of vanishing."""
        return dead_letter_queue(self.task_queue)

    @property
    def results_dead_queue(self) -> str:
        """Where undecodable result messages go instead of vanishing."""
        return dead_letter_queue(self.results_queue)

    @property
    def executors_queue(self) -> str:
        """Queue of executor heartbeats (announcements, heartbeats, clean stops)."""
        return f"{self.prefix}.executors"

    def executors_queue_arguments(self) -> dict[str, str | int]:
        """Bounded and short-lived, and of ``queue_type``, as the progress queue is.

        Drop-head overflow (the default) drops the oldest heartbeat when the queue is full.
        """
        return {
            "x-queue-type": self.queue_type,
            "x-message-ttl": HEARTBEAT_TTL_MS,
            "x-max-length": HEARTBEAT_MAX_LENGTH,
        }

    @property
    def cancel_stream(self) -> str:
        """Durable stream of cancel notices that every executor reads from its start."""
        return f"{self.prefix}.cancellations"

    @property
    def progress_queue(self) -> str:
        """Bounded queue of progress reports that the dispatcher consumes."""
        return f"{self.prefix}.progress"

    def queue_declarations(self) -> list[tuple[str, dict[str, str | int]]]:
        """Every durable queue declared at start-up, with its arguments, in declaration order.

        One list for every client adapter (the async link and the blocking client), so that
        they cannot drift.
        """
        return [
            (self.task_dead_queue, self.dead_queue_arguments()),
            (self.results_dead_queue, self.dead_queue_arguments()),
            (self.results_queue, self.results_queue_arguments()),
            (self.task_queue, self.task_queue_arguments()),
            (self.executors_queue, self.executors_queue_arguments()),
            (self.cancel_stream, self.cancel_stream_arguments()),
            (self.progress_queue, self.progress_queue_arguments()),
        ]

    def every_queue(self) -> list[str]:
        """The name of every queue a deployment has.

        For tearing a deployment (a test's, a benchmark's) down without leaving any behind.
        """
        return [name for name, _ in self.queue_declarations()]

    def task_queue_arguments(self) -> dict[str, str | int]:
        """Arguments of the task queue; changing them needs a queue migration."""
        arguments = self._durable_arguments() | _dead_lettering_to(self.task_dead_queue)
        # Quorum queues refuse x-max-priority: RabbitMQ 4 gives them two priority levels with
        # no argument (priority above 4 is high), 3.x none at all.
        # https://www.rabbitmq.com/docs/priority
        if self.queue_type == "classic" and self.max_priority > 0:
            arguments["x-max-priority"] = self.max_priority
        return arguments

    def results_queue_arguments(self) -> dict[str, str | int]:
        """Arguments of the results queue; changing them needs a queue migration."""
        return self._durable_arguments() | _dead_lettering_to(self.results_dead_queue)

    def cancel_stream_arguments(self) -> dict[str, str | int]:
        """A stream: read without being consumed, by each executor, however many there are."""
        return {
            "x-queue-type": "stream",
            "x-max-age": CANCEL_RETENTION,
            "x-stream-max-segment-size-bytes": _CANCEL_SEGMENT_BYTES,
            "x-max-length-bytes": _CANCEL_MAX_BYTES,
        }

    def progress_queue_arguments(self) -> dict[str, str | int]:
        """Bounded (progress is advisory and may be dropped), and of ``queue_type``.

        In a cluster (quorum) it must be replicated too: a classic queue whose node is down
        cannot even be declared, and every client re-declares the topology on reconnect.
        """
        return {"x-queue-type": self.queue_type, "x-max-length": PROGRESS_MAX_LENGTH}

    def dead_queue_arguments(self) -> dict[str, str | int]:
        """Arguments of the dead-letter queues."""
        return {"x-queue-type": self.queue_type}

    def _durable_arguments(self) -> dict[str, str | int]:
        if self.queue_type == "classic":
            return {"x-queue-type": "classic"}
        # Quorum queues count deliveries themselves. The broker's limit is one above ours, a
        # safety net: executors dead-letter at the limit with reasons and an error result.
        # At-least-once dead-lettering needs reject-publish overflow.
        # https://www.rabbitmq.com/docs/quorum-queues#poison-message-handling
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit + 1,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue that belongs to ``queue``."""
    return f"{queue}.dead"


def _dead_lettering_to(dead_queue: str) -> dict[str, str | int]:
    # Dead-letter through the default exchange straight to the named queue: a rejected
    # message is kept, and the queue's arguments in the management UI say where it went.
    # https://www.rabbitmq.com/docs/dlx
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_queue}


def check_queue_name(queue: str) -> str:
    """``queue`` if it may name a task queue; ``ValueError`` saying why not."""
    if not isinstance(queue, str) or re.fullmatch(QUEUE_NAME_PATTERN, queue) is None:
        raise ValueError(
            "a queue name is 1 to 64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    if queue in _RESERVED_QUEUE_NAMES:
        raise ValueError(f"{queue!r} is reserved (the task dead-letter queue is wq.tasks.dead)")
    return queue


def topology_mismatch(broker_says: str, topology: Topology) -> str:
    """What to tell an operator whose broker holds queues declared with other arguments."""
    return (
        f"the broker already has a queue or exchange with other arguments than this "
        f"configuration (queue type {topology.queue_type!r}, prefix {topology.prefix!r}, "
        f"max priority {topology.max_priority}): {broker_says}. A task queue declared before "
        f"priorities existed lacks x-max-priority: set WQ_AMQP_MAX_PRIORITY=0 to keep it as "
        f"it is. Arguments cannot change in place. To migrate: stop the producers, "
        f"let the executors drain the queue, delete it (rabbitmqctl delete_queue NAME) and "
        f"restart; or start the new configuration under a new WQ_AMQP_PREFIX next to the old "
        f"one until the old queues are empty. See docs/operations.md, 'Queue arguments changed'."
    )
