"""Each kind of error ends a command with the exit code docs/operations.md lists."""

from __future__ import annotations

import os
import subprocess
import sys
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
    TopologyInUse,
    WorkQueueError,
)
from common import exit_codes as codes
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("x"), codes.USAGE),
        (InvalidRequest("countdown", "not finite"), codes.USAGE),
        (ScheduleExists("nightly"), codes.USAGE),
        (TaskNotFound(uuid4()), codes.NOT_FOUND),
        (ScheduleNotFound("nightly"), codes.NOT_FOUND),
        (PublishRejected("timeout"), codes.NOT_PUBLISHED),
        # A broker answer, not an unreachable broker: stop the consumers and try again.
        (TopologyInUse({"wq.tasks": 2}), codes.NOT_PUBLISHED),
        (BrokerError("down"), codes.BROKER_UNAVAILABLE),
        # A store that cannot be opened or reached is unavailable, not a bug (70).
        (StoreError("cannot open the task store at /proc/x: no such directory"), 69),
        (WorkQueueError("anything else"), codes.INTERNAL),
    ],
)
def test_each_error_has_its_exit_code(error: WorkQueueError, code: int) -> None:
    assert codes.exit_code_for(error) == code


def test_a_closed_stdout_ends_a_command_quietly_with_141() -> None:
    # As `dispatcher dead list | head -1` does: the reader goes away mid-output.
    script = (
        "from common.exit_codes import exit_with\n"
        "def main():\n"
        "    for n in range(100_000):\n"
        "        print('a line of output', n)\n"
        "    return 0\n"
        "exit_with(main)\n"
    )
    read, write = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=write, stderr=subprocess.PIPE, cwd=REPO
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        reader.read(10)  # one line's worth, then the pipe closes
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == codes.PIPE_CLOSED == 141
    assert b"Traceback" not in stderr
    assert stderr == b""
