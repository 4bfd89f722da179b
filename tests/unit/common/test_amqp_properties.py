"""The dispatcher publishes without aio-pika's ``Message``: the properties must not change."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from common import (
    CancelNotice,
    MessageProperties,
    Outcome,
    ResultMessage,
    TaskMessage,
    cancel_properties,
    result_properties,
    task_properties,
)
from common.amqp import amqp_properties, to_message

T0 = datetime(2026, 12, 4, 5, 6, 7, 891011, tzinfo=UTC)

TASK = TaskMessage(
    task_id=uuid4(), task_type="render_report", params={"n": 1}, submitted_at=T0, priority=7
)
RESULT = ResultMessage(
    task_id=TASK.task_id,
    task_type=TASK.task_type,
    attempt=1,
    outcome=Outcome.SUCCEEDED,
    executor="executor-1",
    started_at=T0,
    finished_at=T0,
)
CASES = {
    "task": task_properties(TASK, reply_to="wq.results", app_id="wq-dispatcher"),
    "task without a reply queue": task_properties(TASK, reply_to=None, app_id="wq-dispatcher"),
    "cancel notice": cancel_properties(
        CancelNotice(task_id=TASK.task_id, requested_at=T0), app_id="wq-dispatcher"
    ),
    "result": result_properties(RESULT, app_id="wq-executor"),
    "a copy with nothing set": MessageProperties(
        message_id=None,
        type=None,
        correlation_id=None,
        timestamp=None,
        app_id=None,
        content_type=None,
        content_encoding=None,
    ),
    "headers": MessageProperties(
        message_id="m",
        type="task",
        correlation_id=None,
        timestamp=T0,
        app_id="x",
        headers={"x-wq-queue": "reports", "n": 3, "nested": {"a": [1, "b"]}},
        delivery_mode=1,
        priority=0,
    ),
}


@pytest.mark.parametrize("properties", CASES.values(), ids=CASES.keys())
def test_the_properties_go_out_as_aio_pikas_message_would_send_them(
    properties: MessageProperties,
) -> None:
    sent = amqp_properties(properties)
    assert sent.marshal() == to_message(b"{}", properties).properties.marshal()
