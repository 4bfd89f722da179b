"""What both services agree on: wire models, codec, topology, task registry, settings, logging."""

from pydantic import JsonValue

from common.codec import (
    MessageProperties,
    decode_result,
    decode_task,
    encode,
    result_properties,
    task_id_from_properties,
    task_properties,
)
from common.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    InvalidParams,
    MessageError,
    PermanentTaskError,
    PublishRejected,
    RetryableTaskError,
    StoreError,
    TaskError,
    TaskNotFound,
    UnknownTaskType,
    UnsupportedVersion,
    WorkQueueError,
)
from common.messages import (
    SCHEMA_VERSION,
    ErrorKind,
    Outcome,
    ResultMessage,
    TaskErrorInfo,
    TaskMessage,
)
from common.registry import TaskDefinition, TaskRegistry, load_registry
from common.settings import AmqpSettings, LogSettings, load_settings, redact_url
from common.topology import Topology

__all__ = [
    "SCHEMA_VERSION",
    "AmqpSettings",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "ErrorKind",
    "InvalidParams",
    "JsonValue",
    "LogSettings",
    "MessageError",
    "MessageProperties",
    "Outcome",
    "PermanentTaskError",
    "PublishRejected",
    "ResultMessage",
    "RetryableTaskError",
    "StoreError",
    "TaskDefinition",
    "TaskError",
    "TaskErrorInfo",
    "TaskMessage",
    "TaskNotFound",
    "TaskRegistry",
    "Topology",
    "UnknownTaskType",
    "UnsupportedVersion",
    "WorkQueueError",
    "decode_result",
    "decode_task",
    "encode",
    "load_registry",
    "load_settings",
    "redact_url",
    "result_properties",
    "task_id_from_properties",
    "task_properties",
]
