"""Process exit codes shared by both command lines (documented in docs/operations.md).

They follow sysexits.h where it has a meaning, so scripts can branch on them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Final, NoReturn

from common.errors import (
    BrokerError,
    ConfigError,
    InvalidParams,
    InvalidRequest,
    InvalidSchedule,
    PublishRejected,
    ScheduleConflict,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskNotFound,
    TaskNotScheduled,
    TopologyInUse,
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
PIPE_CLOSED: Final = 141  # 128 + SIGPIPE: the reader of stdout went away (`| head`), as ls does

# The code each kind of error ends a command with; the first entry the error is an instance of
# wins, so subclasses come before their parents.
_CODE_OF_ERROR: Final[tuple[tuple[type[WorkQueueError], int], ...]] = (
    (ConfigError, USAGE),
    (InvalidRequest, USAGE),
    (InvalidSchedule, USAGE),
    (ScheduleExists, USAGE),
    (ScheduleConflict, NOT_PUBLISHED),  # EX_TEMPFAIL: try again
    (TaskNotScheduled, INVALID_TASK),
    (UnknownTaskType, INVALID_TASK),
    (InvalidParams, INVALID_TASK),
    (TaskNotFound, NOT_FOUND),
    (ScheduleNotFound, NOT_FOUND),
    (PublishRejected, NOT_PUBLISHED),
    (TopologyInUse, NOT_PUBLISHED),  # EX_TEMPFAIL: stop the consumers, then try again
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


def exit_with(main: Callable[[], int]) -> NoReturn:
    """Run a command line's ``main`` and exit with its code; a closed stdout ends it quietly.

    ``dispatcher dead list | head -1`` closes the pipe early: that is a normal end for a command
    line, not a traceback. stdout then points at /dev/null, so the interpreter's last flush
    cannot fail again, and the exit code is the one a shell reports for ``ls`` there.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = PIPE_CLOSED
    sys.exit(code)
