"""What both services agree on: wire models, codec, topology, registry, task context, settings.

The names below are the supported surface, grouped by who uses them. The services import them
from ``common`` itself; only the runtime adapters (``common.amqp``, ``common.logging``,
``common.readiness``, ``common.shutdown``) and ``common.exit_codes`` are imported as modules
(``tests/unit/test_exports.py`` holds that list).
"""

from pydantic import JsonValue

from common.codec import (
    CANCEL_TYPE,
    MARKER_TYPE,
    DeadLetterHeaders,
    MessageProperties,
    cancel_properties,
    check_body_size,
    decode_cancel,
    decode_heartbeat,
    decode_progress,
    decode_result,
    decode_task,
    encode,
    heartbeat_properties,
    marker_properties,
    progress_properties,
    result_properties,
    task_id_from_properties,
    task_properties,
)
from common.context import ProgressUpdate, TaskContext, current_task_context, running_in
from common.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    InvalidParams,
    InvalidSchedule,
    MessageError,
    PermanentTaskError,
    PublishRejected,
    RetryableTaskError,
    ScheduleExists,
    ScheduleNotFound,
    SoftTimeLimitExceeded,
    StoreError,
    TaskCancelled,
    TaskError,
    TaskNotFound,
    TimeLimitExceeded,
    UnknownTaskType,
    UnsupportedVersion,
    WorkQueueError,
)
from common.messages import (
    MAX_PRIORITY,
    MAX_RETRY_DELAY_S,
    SCHEMA_VERSION,
    TASK_TYPE_PATTERN,
    CancelNotice,
    DeadReason,
    ErrorKind,
    ExecutorEvent,
    Heartbeat,
    Outcome,
    ProgressMessage,
    ResultMessage,
    RunningTask,
    TaskErrorInfo,
    TaskMessage,
    TaskTypeInfo,
)
from common.registry import (
    TaskDefinition,
    TaskOptions,
    TaskRegistry,
    invalid_params,
    load_registry,
)
from common.retry import backoff_delay
from common.settings import AmqpSettings, LogSettings, load_settings, redact_url
from common.topology import (
    ATTEMPT_HEADER,
    DELIVERIES_HEADER,
    DELIVERY_COUNT_HEADER,
    DISPATCHER_APP_ID,
    EXECUTOR_APP_ID,
    TASK_ROUTING_KEY,
    Topology,
)

# Wire: the messages, how they are encoded, and the broker's names (docs/protocol.md).
__all__ = [
    "ATTEMPT_HEADER",
    "CANCEL_TYPE",
    "DELIVERIES_HEADER",
    "DELIVERY_COUNT_HEADER",
    "DISPATCHER_APP_ID",
    "EXECUTOR_APP_ID",
    "MARKER_TYPE",
    "MAX_PRIORITY",
    "MAX_RETRY_DELAY_S",
    "SCHEMA_VERSION",
    "TASK_ROUTING_KEY",
    "TASK_TYPE_PATTERN",
    "CancelNotice",
    "DeadLetterHeaders",
    "DeadReason",
    "ErrorKind",
    "ExecutorEvent",
    "Heartbeat",
    "JsonValue",
    "MessageProperties",
    "Outcome",
    "ProgressMessage",
    "ResultMessage",
    "RunningTask",
    "TaskErrorInfo",
    "TaskMessage",
    "TaskTypeInfo",
    "Topology",
    "cancel_properties",
    "check_body_size",
    "decode_cancel",
    "decode_heartbeat",
    "decode_progress",
    "decode_result",
    "decode_task",
    "encode",
    "heartbeat_properties",
    "marker_properties",
    "progress_properties",
    "result_properties",
    "task_id_from_properties",
    "task_properties",
]
# Task authors: registering task types, and what a running handler may use.
__all__ += [
    "ProgressUpdate",
    "TaskContext",
    "TaskDefinition",
    "TaskOptions",
    "TaskRegistry",
    "current_task_context",
    "invalid_params",
    "load_registry",
]
# Errors: one tree (common/errors.py); task authors raise the TaskError ones.
__all__ += [
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DecodeError",
    "InvalidParams",
    "InvalidSchedule",
    "MessageError",
    "PermanentTaskError",
    "PublishRejected",
    "RetryableTaskError",
    "ScheduleExists",
    "ScheduleNotFound",
    "SoftTimeLimitExceeded",
    "StoreError",
    "TaskCancelled",
    "TaskError",
    "TaskNotFound",
    "TimeLimitExceeded",
    "UnknownTaskType",
    "UnsupportedVersion",
    "WorkQueueError",
]
# Settings: one class per concern, read from WQ_* variables.
__all__ += [
    "AmqpSettings",
    "LogSettings",
    "load_settings",
    "redact_url",
]
# Runtime: what the services run tasks and retries with.
__all__ += [
    "backoff_delay",
    "running_in",
]
