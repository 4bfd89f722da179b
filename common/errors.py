"""The project's exception tree: one root, one subtree per concern.

```
WorkQueueError
├── ConfigError
├── MessageError ── DecodeError (keeps excerpt + cause), UnsupportedVersion
├── BrokerError ─── BrokerUnavailable, PublishRejected (nack, unroutable, no confirm),
│                   TopologyInUse (consumers hold queues a teardown would delete)
├── StoreError ──── TaskNotFound, ScheduleNotFound, ScheduleExists
├── InvalidSchedule (a cron expression, time zone or name that cannot be used)
└── TaskError ───── RetryableTaskError (optional delay), PermanentTaskError,
                    UnknownTaskType, InvalidParams, SoftTimeLimitExceeded,
                    TimeLimitExceeded, TaskCancelled
```

Adapters wrap third-party errors (pika, aio-pika, sqlite3, pydantic) into this tree with
``raise ... from exc``; nothing else catches them.
"""

from __future__ import annotations

from uuid import UUID


class WorkQueueError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(WorkQueueError):
    """A setting is missing or invalid; raised at start-up, never later."""


class InvalidRequest(WorkQueueError, ValueError):
    """A request to the dispatcher with a field out of its range (priority, eta, countdown,
    idempotency key, task type name): the same answer from the Python API, the CLI (exit 2)
    and the HTTP API (422).

    Attributes:
        field: the request field at fault.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class MessageError(WorkQueueError):
    """A message on the wire does not follow docs/protocol.md."""


class DecodeError(MessageError):
    """A body could not be decoded into a wire model.

    Attributes:
        excerpt: the first bytes of the body, for the log line and the error result.
    """

    def __init__(self, reason: str, *, excerpt: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.excerpt = excerpt


class UnsupportedVersion(MessageError):
    """A body declares a schema version this code does not speak."""

    def __init__(self, version: object) -> None:
        super().__init__(f"unsupported message version: {version!r}")
        self.version = version


class BrokerError(WorkQueueError):
    """Talking to RabbitMQ failed."""


class BrokerUnavailable(BrokerError):
    """No connection to the broker could be made (wrong URL, broker down, refused login)."""


class TopologyInUse(BrokerError):
    """Queues a teardown would delete still have consumers: stop those services first.

    Attributes:
        consumers: the consumers of each queue that has any, by queue name.
    """

    def __init__(self, consumers: dict[str, int]) -> None:
        listed = ", ".join(f"{queue} ({n})" for queue, n in consumers.items())
        super().__init__(
            f"consumers are attached to {listed}: stop the executors and every dispatcher "
            "serve of this prefix, then run it again"
        )
        self.consumers = dict(consumers)


class PublishRejected(BrokerError):
    """The broker did not take responsibility for a message: nacked, unroutable or unconfirmed.

    Attributes:
        task_id: the task whose message was refused, when there is one.
        reason: ``nack``, ``unroutable``, ``timeout``, or ``invalid`` (the client could not
            encode the message: nothing was sent).
    """

    def __init__(self, reason: str, *, task_id: UUID | None = None, detail: str = "") -> None:
        text = f"publish {reason}" + (f": {detail}" if detail else "")
        if task_id is not None:
            text += f" (task {task_id})"
        super().__init__(text)
        self.reason = reason
        self.task_id = task_id


class StoreError(WorkQueueError):
    """The task store failed."""


class TaskNotFound(StoreError):
    """No task with this id is recorded."""

    def __init__(self, task_id: UUID) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


class TaskNotScheduled(WorkQueueError):
    """The task is not waiting for its time any more (it was published), so it cannot move."""

    def __init__(self, task_id: UUID, state: str) -> None:
        super().__init__(f"task {task_id} is {state}, not scheduled: only a delayed task moves")
        self.task_id = task_id
        self.state = state


class ScheduleNotFound(StoreError):
    """No cron schedule has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named {name!r}")
        self.name = name


class ScheduleExists(StoreError):
    """A cron schedule with this name already exists; names are unique."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} already exists")
        self.name = name


class ScheduleConflict(StoreError):
    """A cron schedule changed between reading it and writing an edit of it: read it again."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the schedule {name!r} was changed meanwhile: read it and try again")
        self.name = name


class InvalidSchedule(WorkQueueError):
    """A schedule's cron expression, time zone or name cannot be used; says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class TaskError(WorkQueueError):
    """A task could not run to success."""


class RetryableTaskError(TaskError):
    """A handler failure that may succeed later (retries arrive with the reliability work)."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentTaskError(TaskError):
    """A handler failure that will fail again however often it is retried."""


class UnknownTaskType(PermanentTaskError):
    """No handler is registered under this task type.

    Attributes:
        index: which request of a batch it refuses, when a batch was validated.
    """

    def __init__(self, task_type: str) -> None:
        super().__init__(f"unknown task type: {task_type!r}")
        self.task_type = task_type
        self.index: int | None = None


class InvalidParams(PermanentTaskError):
    """The params do not validate against the task type's schema.

    Attributes:
        errors: pydantic's error list, JSON-ready.
        index: which request of a batch they belong to, when a batch was validated.
    """

    def __init__(self, task_type: str, errors: list[dict[str, object]]) -> None:
        summary = "; ".join(f"{_location(e.get('loc'))}: {e.get('msg')}" for e in errors)
        super().__init__(f"invalid params for {task_type!r}: {summary}")
        self.task_type = task_type
        self.errors = errors
        self.index: int | None = None


class SoftTimeLimitExceeded(PermanentTaskError):
    """Raised inside a handler at its task type's soft time limit: clean up and return or raise.

    The handler's thread receives it at its next Python bytecode, so a handler blocked in a
    C call (a socket read, ``time.sleep``) sees it when that call returns.
    """


class TimeLimitExceeded(PermanentTaskError):
    """The attempt ran past its hard time limit and was abandoned."""

    def __init__(self, limit_s: float = 0.0) -> None:
        # A default: PyThreadState_SetAsyncExc raises the class, instantiated without args.
        super().__init__(f"ran longer than its hard time limit of {limit_s:g}s")
        self.limit_s = limit_s


class TaskCancelled(PermanentTaskError):
    """Raised by a handler that stops because its task was cancelled (outcome ``cancelled``).

    ``TaskContext.raise_if_cancelled`` raises it; a handler may raise it itself too.
    """

    def __init__(self, task_id: UUID | None = None) -> None:
        super().__init__("the task was cancelled" + (f" ({task_id})" if task_id else ""))
        self.task_id = task_id


def _location(loc: object) -> str:
    if isinstance(loc, list | tuple) and loc:
        return ".".join(str(part) for part in loc)
    return "<params>"
