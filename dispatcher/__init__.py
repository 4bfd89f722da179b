"""The dispatcher service: records tasks, publishes them, and records their outcomes.

Its producer API, as the README documents it: ``open_dispatcher`` (asyncio) and
``SyncDispatcher`` (blocking), the requests they take and the records they answer with.
"""

from dispatcher.client import open_dispatcher
from dispatcher.requests import CancelOutcome, CancelReport, Submission, TaskRequest
from dispatcher.service import Dispatcher
from dispatcher.store.records import (
    ExecutorRecord,
    ExecutorState,
    ScheduleRecord,
    TaskRecord,
    TaskState,
    TaskTypeRecord,
)
from dispatcher.sync_client import SyncDispatcher

__all__ = [
    "CancelOutcome",
    "CancelReport",
    "Dispatcher",
    "ExecutorRecord",
    "ExecutorState",
    "ScheduleRecord",
    "Submission",
    "SyncDispatcher",
    "TaskRecord",
    "TaskRequest",
    "TaskState",
    "TaskTypeRecord",
    "open_dispatcher",
]
