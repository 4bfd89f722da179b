"""A client that knows only docs/protocol.md submits a task and reads its result (raw pika)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika

from common import AmqpSettings
from tests.integration.broker import Broker
from tests.integration.conftest import Processes, wait_for_consumers, wait_until


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


def _get_one(broker: Broker, channel: Any, queue: str) -> tuple[Any, bytes]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return properties, body
        broker.sleep(0.05)
    raise AssertionError(f"nothing arrived on {queue}")


def _raw_task(task_type: str, params: dict[str, Any], reply_queue: str) -> tuple[str, bytes, Any]:
    task_id = str(uuid.uuid4())
    body = json.dumps(
        {
            "version": 1,
            "task_id": task_id,
            "task_type": task_type,
            "params": params,
            "submitted_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    properties = pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        message_id=task_id,
        correlation_id=task_id,
        type=task_type,
        reply_to=reply_queue,
    )
    return task_id, body, properties


def test_raw_cancel_notice_on_the_stream_makes_the_executor_skip_the_task(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    prefix = amqp_settings.prefix
    processes.executor("exec-raw-cancel")
    wait_for_consumers(broker, f"{prefix}.tasks", 1)
    channel = broker.channel()
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    channel.confirm_delivery()
    trace = tmp_path / "ran"
    task_id, body, properties = _raw_task("sleep_ms", {"ms": 0, "marker": str(trace)}, reply_queue)

    notice = {"version": 1, "task_id": task_id, "requested_at": datetime.now(UTC).isoformat()}
    channel.basic_publish(
        "",
        f"{prefix}.cancellations",
        json.dumps(notice).encode(),
        properties=pika.BasicProperties(
            delivery_mode=2, content_type="application/json", type="cancel", message_id=task_id
        ),
        mandatory=True,
    )
    # The executor reads the stream asynchronously: wait until it has logged the notice.
    wait_until(
        lambda: '"task_cancel_received"' in processes.log("exec-raw-cancel"),
        timeout=20,
        what="the executor to read the cancel notice",
    )
    channel.basic_publish(f"{prefix}.tasks", "task", body, properties=properties, mandatory=True)

    result_properties, result_body = _get_one(broker, channel, reply_queue)
    assert result_properties.headers["x-wq-outcome"] == "cancelled"
    result = json.loads(result_body)
    assert result["outcome"] == "cancelled"
    assert result["error"]["kind"] == "cancelled"
    assert not trace.exists()


def test_progress_reports_arrive_on_the_progress_queue_as_documented(
    amqp_settings: AmqpSettings, processes: Processes, broker: Broker, tmp_path: Path
) -> None:
    prefix = amqp_settings.prefix
    processes.executor("exec-raw-progress")
    wait_for_consumers(broker, f"{prefix}.tasks", 1)
    channel = broker.channel()
    reply_queue = channel.queue_declare("", exclusive=True).method.queue
    channel.confirm_delivery()
    task_id, body, properties = _raw_task(
        "await_cancel", {"marker": str(tmp_path / "m"), "percent": 42.5, "timeout": 0}, reply_queue
    )
    channel.basic_publish(f"{prefix}.tasks", "task", body, properties=properties, mandatory=True)

    # First the start notice, confirmed before the handler ran, then the report.
    start_properties, start_body = _get_one(broker, channel, f"{prefix}.progress")
    assert start_properties.type == "wq started"
    assert start_properties.delivery_mode == 1
    assert start_properties.correlation_id == task_id
    assert start_properties.message_id == f"{task_id}.1.started"
    assert start_properties.reply_to is None  # a first delivery asks for no verdict
    start = json.loads(start_body)
    assert (start["version"], start["task_id"], start["attempt"]) == (1, task_id, 1)
    assert (start["executor"], start["redelivered"]) == ("exec-raw-progress", False)
    assert start["delivery_limit"] == amqp_settings.delivery_limit
    datetime.fromisoformat(start["started_at"])
    progress_properties, progress_body = _get_one(broker, channel, f"{prefix}.progress")
    assert progress_properties.delivery_mode == 1
    assert progress_properties.correlation_id == task_id
    report = json.loads(progress_body)
    assert report["version"] == 1
    assert report["task_id"] == task_id
    assert report["percent"] == 42.5
    assert report["note"] == "waiting for a cancel"
    assert report["executor"] == "exec-raw-progress"
    assert report["attempt"] == 1
    datetime.fromisoformat(report["reported_at"])
    assert json.loads(_get_one(broker, channel, reply_queue)[1])["outcome"] == "succeeded"
