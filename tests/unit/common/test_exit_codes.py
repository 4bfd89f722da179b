"""Each kind of error ends a command with the exit code docs/operations.md lists."""

from __future__ import annotations

from uuid import uuid4

import pytest

from common import (
    BrokerError,
    ConfigError,
    InvalidRequest,
    PublishRejected,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskNotFound,
    WorkQueueError,
)
from common import exit_codes as codes


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), codes.USAGE),
        (InvalidRequest("countdown", "not finite"), codes.USAGE),
        (ScheduleExists("nightly"), codes.USAGE),
        (TaskNotFound(uuid4()), codes.NOT_FOUND),
        (ScheduleNotFound("nightly"), codes.NOT_FOUND),
        (PublishRejected("timeout"), codes.NOT_PUBLISHED),
        (BrokerError("down"), codes.BROKER_UNAVAILABLE),
        # A store that cannot be opened or reached is unavailable, not a bug (70).
        (StoreError("cannot open the task store at /proc/x: no such directory"), 69),
        (WorkQueueError("anything else"), codes.INTERNAL),
    ],
)
def test_each_error_has_its_exit_code(error: WorkQueueError, code: int) -> None:
    assert codes.exit_code_for(error) == code
