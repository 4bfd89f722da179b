"""Listing tasks by queue, executor and text in the error."""

from __future__ import annotations

from uuid import UUID

from common import ErrorKind, Outcome, TaskErrorInfo
from dispatcher.store.protocol import SyncTaskStore
from dispatcher.store.query import TaskQuery
from tests.contract.store.samples import T3, a_task, an_outcome


def _failed_with(
    store: SyncTaskStore, message: str, executor: str = "e1", queue: str = "default"
) -> UUID:
    task = a_task().model_copy(update={"queue": queue})
    store.add_submitted([task])
    result = an_outcome(task.task_id, Outcome.FAILED, finished_at=T3, executor=executor)
    error = TaskErrorInfo(kind=ErrorKind.HANDLER_ERROR, type="ValueError", message=message)
    store.record_results([result.model_copy(update={"error": error})])
    return task.task_id


def _ids(store: SyncTaskStore, **filters: str) -> set[object]:
    return {r.task_id for r in store.list_tasks(TaskQuery(**filters))}  # type: ignore[arg-type]


def test_tasks_are_listed_by_queue_executor_and_error_text(store: SyncTaskStore) -> None:
    timeout = _failed_with(store, "Upstream TIMEOUT after 30s", executor="e1", queue="reports")
    percent = _failed_with(store, "disk 100% full", executor="e2")
    underscore = _failed_with(store, "no such key: user_id", executor="e2")
    backslash = _failed_with(store, "cannot open C:\\temp\\x", executor="e3")

    assert _ids(store, queue="reports") == {timeout}
    assert _ids(store, queue="default") == {percent, underscore, backslash}
    assert _ids(store, executor="e2") == {percent, underscore}
    assert _ids(store, error_text="timeout") == {timeout}  # any case
    assert _ids(store, error_text="100%") == {percent}  # % and _ are matched literally
    assert _ids(store, error_text="0% f") == {percent}
    assert _ids(store, error_text="r_i") == {underscore}
    assert _ids(store, error_text="_") == {underscore}
    assert _ids(store, error_text="%") == {percent}
    assert _ids(store, error_text="C:\\temp") == {backslash}
    assert _ids(store, error_text="nowhere") == set()
    assert _ids(store, executor="e2", error_text="disk") == {percent}
