"""The wire contract in machine-readable form: an AsyncAPI 2.6 document built from the models.

docs/protocol.md is the contract in prose; this document is generated from the same pydantic
models and broker names every service uses, so it cannot drift from them:
``tests/unit/common/test_asyncapi.py`` fails when docs/asyncapi.json and this disagree.

    python -m common.asyncapi > docs/asyncapi.json     # after changing a wire model

``dispatcher serve`` also serves it, for its own prefix, at ``GET /asyncapi.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from common.codec import CANCEL_TYPE, STARTED_TYPE, VERDICT_TYPE
from common.messages import (
    SCHEMA_VERSION,
    CancelNotice,
    Heartbeat,
    ProgressMessage,
    ResultMessage,
    StartNotice,
    StartVerdict,
    TaskMessage,
)
from common.topology import TASK_ROUTING_KEY, Topology

_REF = "#/components/schemas/{model}"

# Message name -> (model, what it is, the AMQP `type` property it carries, if fixed).
_MESSAGES: dict[str, tuple[type[BaseModel], str, str | None]] = {
    "Task": (TaskMessage, "One unit of work. The AMQP `type` property is the task type.", None),
    "Result": (ResultMessage, "The outcome of one attempt, sent to the task's `reply_to`.", None),
    "Heartbeat": (Heartbeat, "An executor's state: started, every interval, stopped.", None),
    "Progress": (ProgressMessage, "A running handler's progress report.", None),
    "StartNotice": (StartNotice, "An executor is about to run an attempt.", STARTED_TYPE),
    "StartVerdict": (StartVerdict, "The dispatcher's answer to a redelivered start.", VERDICT_TYPE),
    "CancelNotice": (CancelNotice, "A request to cancel a task (or its attempts).", CANCEL_TYPE),
}


def asyncapi_document(topology: Topology | None = None) -> dict[str, Any]:
    """The AsyncAPI document of a deployment with ``topology``'s names (default prefix wq)."""
    topology = topology or Topology()
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, (model, summary, amqp_type) in _MESSAGES.items():
        payload = model.model_json_schema(mode="serialization", ref_template=_REF)
        schemas.update(payload.pop("$defs", {}))
        message: dict[str, Any] = {
            "name": name,
            "summary": summary,
            "contentType": "application/json",
            "payload": payload,
        }
        if amqp_type is not None:
            message["bindings"] = {"amqp": {"messageType": amqp_type, "bindingVersion": "0.3.0"}}
        messages[name] = message
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "wq work queue",
            "version": str(SCHEMA_VERSION),
            "description": "The wire contract between producers, executors and the dispatcher "
            "(docs/protocol.md has the rules: acknowledgements, retries, dead letters). Names "
            f"are shown for prefix {topology.prefix!r}.",
        },
        "defaultContentType": "application/json",
        "channels": _channels(topology),
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def _queue(name: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False},
                "bindingVersion": "0.3.0",
            }
        },
    }


def _message(name: str) -> dict[str, Any]:
    return {"message": {"$ref": f"#/components/messages/{name}"}}


def _channels(topology: Topology) -> dict[str, Any]:
    tasks = {
        "description": f"Producers publish tasks to exchange {topology.task_exchange!r} "
        f"(direct): routing key {TASK_ROUTING_KEY!r} reaches the default queue "
        f"{topology.task_queue!r}; a named queue's routing key is its own name, "
        f"{topology.task_queue}.<name>. Executors consume them with manual acks.",
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": topology.task_exchange, "type": "direct", "durable": True},
                "bindingVersion": "0.3.0",
            }
        },
        "publish": _message("Task"),
        "subscribe": _message("Task"),
    }
    return {
        topology.task_exchange: tasks,
        topology.results_queue: {
            **_queue(topology.results_queue, "Results; the dispatcher consumes them."),
            "publish": _message("Result"),
        },
        topology.executors_queue: {
            **_queue(topology.executors_queue, "Executor heartbeats; transient."),
            "publish": _message("Heartbeat"),
        },
        topology.progress_queue: {
            **_queue(
                topology.progress_queue,
                "Progress reports and start notices (told apart by the `type` property).",
            ),
            "publish": {
                "message": {
                    "oneOf": [
                        {"$ref": "#/components/messages/Progress"},
                        {"$ref": "#/components/messages/StartNotice"},
                    ]
                }
            },
        },
        f"{topology.prefix}.verdicts.{{executor}}.{{suffix}}": {
            "description": "An executor's exclusive reply queue for start verdicts.",
            "parameters": {
                "executor": {"schema": {"type": "string"}},
                "suffix": {"schema": {"type": "string"}},
            },
            "subscribe": _message("StartVerdict"),
        },
        topology.cancel_stream: {
            **_queue(topology.cancel_stream, "A stream of cancel notices every executor reads."),
            "publish": _message("CancelNotice"),
        },
    }


def main() -> None:
    """Print the document for the default prefix."""
    json.dump(asyncapi_document(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
