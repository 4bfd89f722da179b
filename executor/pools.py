"""Which task queues an executor consumes, and how its slots are shared between them.

An executor consumes the queues its task types declare, or those it is told (``--queues``).
Whatever the number of queues, it never holds more unacknowledged tasks than it has slots:

- classic queues share every slot: one channel whose prefetch is global (``basic.qos`` with
  ``global=true`` limits the whole channel, all its consumers together);
- quorum queues ignore a global prefetch (https://www.rabbitmq.com/docs/quorum-queues), so
  each gets a share of the slots on a channel of its own, with a per-consumer prefetch. An
  executor on quorum queues needs at least one slot per queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from common import DEFAULT_QUEUE, ConfigError, TaskRegistry, check_queue_name


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """One consuming channel: the queues it consumes and the prefetch it sets."""

    queues: tuple[str, ...]
    prefetch: int
    # True: the prefetch limits the channel (all its consumers); False: each consumer.
    shared: bool


def parse_queues(value: str) -> list[str]:
    """``a,b`` as queue names, each checked, in order, without repeats; ``ConfigError`` if bad."""
    names = [part.strip() for part in value.split(",")]
    if not all(names):
        raise ConfigError("--queues: an empty queue name (a stray comma?)")
    for name in names:
        try:
            check_queue_name(name)
        except ValueError as exc:
            raise ConfigError(f"--queues: {name!r}: {exc}") from None
    return list(dict.fromkeys(names))


def queues_to_consume(registry: TaskRegistry, named: Sequence[str] | None) -> list[str]:
    """The queues named, or else those the registry's task types declare."""
    return list(named) if named else registry.queues()


def foreign_queues(registry: TaskRegistry, queues: Sequence[str]) -> list[str]:
    """The consumed queues that none of the registry's task types declares.

    Tasks routed by type never reach them; a task submitted to one by name may be of a type
    this executor lacks (it would be dead-lettered as ``unknown_task_type``).
    """
    declared = set(registry.queues())
    return [queue for queue in queues if queue not in declared]


def unconsumed_types(registry: TaskRegistry, queues: Sequence[str]) -> dict[str, str]:
    """Task types whose declared queue this executor does not consume, with that queue."""
    consumed = set(queues)
    return {
        name: registry.get(name).options.queue
        for name in registry.names()
        if registry.get(name).options.queue not in consumed
    }


def plan_channels(queue_type: str, queues: Sequence[str], slots: int) -> list[ChannelPlan]:
    """How to consume ``queues`` with ``slots`` slots and never hold more tasks than slots."""
    if not queues:
        raise ConfigError("no task queue to consume")
    if len(queues) == 1 or queue_type == "classic":
        return [ChannelPlan(tuple(queues), slots, shared=len(queues) > 1)]
    if slots < len(queues):
        raise ConfigError(
            f"{len(queues)} quorum queues need at least {len(queues)} slots (one each: quorum "
            f"queues ignore a channel-wide prefetch); --concurrency is {slots}"
        )
    share, extra = divmod(slots, len(queues))
    return [
        ChannelPlan((queue,), share + (1 if index < extra else 0), shared=False)
        for index, queue in enumerate(queues)
    ]


def consumer_tag(executor: str, queue: str) -> str:
    """The consumer tag of ``executor`` on ``queue``, as the management UI shows it."""
    return (
        f"wq.executor.{executor}" if queue == DEFAULT_QUEUE else f"wq.executor.{executor}.{queue}"
    )
