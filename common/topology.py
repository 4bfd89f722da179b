"""Every broker object's name and arguments, in one place (docs/protocol.md, "Topology").

Pure values: declaring them is the adapters' job. All names derive from one prefix, ``wq`` by
default, so that one broker can host several isolated deployments (and tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_PREFIX: Final = "wq"
TASK_ROUTING_KEY: Final = "task"


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of the exchange and queues of one deployment."""

    prefix: str = DEFAULT_PREFIX

    @property
    def task_exchange(self) -> str:
        """Durable direct exchange that task messages are published to."""
        return f"{self.prefix}.tasks"

    @property
    def task_queue(self) -> str:
        """Durable queue that executors consume, bound to the task exchange."""
        return f"{self.prefix}.tasks"

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

    def retry_queue(self, bucket_s: int) -> str:
        """Delay queue for retries waiting between ``bucket_s`` and twice that."""
        return f"{self.task_queue}.retry.{bucket_s}s"

    def retry_queue_arguments(self) -> dict[str, str]:
        """Expired retries dead-letter back to the task exchange, into the task queue."""
        return {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": self.task_exchange,
            "x-dead-letter-routing-key": TASK_ROUTING_KEY,
        }

    def task_queue_arguments(self) -> dict[str, str]:
        """Arguments of the task queue; changing them needs a queue migration."""
        return _dead_lettering_to(self.task_dead_queue)

    def results_queue_arguments(self) -> dict[str, str]:
        """Arguments of the results queue; changing them needs a queue migration."""
        return _dead_lettering_to(self.results_dead_queue)


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue that belongs to ``queue``."""
    return f"{queue}.dead"


def _dead_lettering_to(dead_queue: str) -> dict[str, str]:
    # Dead-letter through the default exchange straight to the named queue: a rejected
    # message is kept, and the queue's arguments in the management UI say where it went.
    # https://www.rabbitmq.com/docs/dlx
    return {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_queue,
    }
