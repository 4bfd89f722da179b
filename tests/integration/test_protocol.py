"""A client that knows only docs/protocol.md submits a task and reads its result (raw pika)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pika

from common import AmqpSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers


def test_raw_pika_client_following_the_protocol_document_gets_a_result(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker
) -> None:
    prefix = amqp_settings.prefix
    processes.executor("exec-raw")
    wait_for_consumers(broker, f"{prefix}.tasks", 1)

    channel = broker.channel()
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    channel.confirm_delivery()
    task_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "version": 1,
            "task_id": task_id,
            "task_type": "echo",
            "params": {"value": "from another language"},
            "attempt": 1,
            "submitted_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    channel.basic_publish(
        f"{prefix}.tasks",
        "task",
        body,
        properties=pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            content_encoding="utf-8",
            message_id=task_id,
            correlation_id=task_id,
            type="echo",
            reply_to=reply_queue,
            timestamp=int(time.time()),
            app_id="raw-pika-test",
            headers={"x-wq-attempt": 1},
        ),
        mandatory=True,
    )

    deadline = time.monotonic() + 20
    method = None
    while method is None and time.monotonic() < deadline:
        method, properties, result_body = channel.basic_get(reply_queue, auto_ack=True)
        if method is None:
            broker.sleep(0.05)
    assert method is not None, "no result arrived on the reply queue"
    assert properties.correlation_id == task_id
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert properties.headers["x-wq-outcome"] == "succeeded"
    assert properties.headers["x-wq-executor"] == "exec-raw"
    result = json.loads(result_body)
    assert result["version"] == 1
    assert result["task_id"] == task_id
    assert result["outcome"] == "succeeded"
    assert result["result"] == "from another language"
    assert result["error"] is None
    assert result["attempt"] == 1
    assert result["executor"] == "exec-raw"
    datetime.fromisoformat(result["started_at"])
    datetime.fromisoformat(result["finished_at"])
