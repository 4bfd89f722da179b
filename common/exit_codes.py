"""Process exit codes shared by both command lines (documented in docs/operations.md).

They follow sysexits.h where it has a meaning, so scripts can branch on them.
"""

from __future__ import annotations

from typing import Final

from common.errors import (
    BrokerError,
    ConfigError,
    InvalidParams,
    InvalidRequest,
    InvalidSchedule,
    PublishRejected,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskNotFound,
    UnknownTaskType,
    WorkQueueError,
)

OK: Final = 0
TASK_FAILED: Final = 1  # submit --wait: the task ran and failed
USAGE: Final = 2  # bad arguments or configuration (argparse uses 2 as well)
INVALID_TASK: Final = 65  # EX_DATAERR: unknown task type or params that fail validation
NOT_FOUND: Final = 66  # EX_NOINPUT: no task with that id
BROKER_UNAVAILABLE: Final = 69  # EX_UNAVAILABLE: RabbitMQ or the task store cannot be reached
INTERNAL: Final = 70  # EX_SOFTWARE: a bug; the log has the traceback
NOT_PUBLISHED: Final = 75  # EX_TEMPFAIL: the broker did not confirm the publish; try again
WAIT_TIMEOUT: Final = 124  # submit --wait: no outcome in time (as timeout(1) does)
INTERRUPTED: Final = 130  # stopped by a second Ctrl-C

# The code each kind of error ends a command with; the first entry the error is an instance of
# wins, so subclasses come before their parents.
_CODE_OF_ERROR: Final[tuple[tuple[type[WorkQueueError], int], ...]] = (
    (ConfigError, USAGE),
    (InvalidRequest, USAGE),
    (InvalidSchedule, USAGE),
    (ScheduleExists, USAGE),
    (UnknownTaskType, INVALID_TASK),
    (InvalidParams, INVALID_TASK),
    (TaskNotFound, NOT_FOUND),
    (ScheduleNotFound, NOT_FOUND),
    (PublishRejected, NOT_PUBLISHED),
    (BrokerError, BROKER_UNAVAILABLE),
    # Last: the store's own refusals (not found, exists) are listed above.
    (StoreError, BROKER_UNAVAILABLE),
)


def exit_code_for(error: WorkQueueError) -> int:
    """The exit code a command that failed with ``error`` returns (``INTERNAL`` if unlisted)."""
    for kind, code in _CODE_OF_ERROR:
        if isinstance(error, kind):
            return code
    return INTERNAL
