"""The SQLite store's outcomes: results, replays of dead tasks, cancel requests and progress."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

from common import ProgressMessage, ResultMessage, TaskMessage
from dispatcher.store.records import RecordedResult, TaskState
from dispatcher.store.rows import OPEN_STATES, STATE_OF_OUTCOME, next_attempt_at, task_record
from dispatcher.store.sqlite.connection import SqliteConnection, fetch_values, utc_text

# The first final outcome wins, whichever attempt it comes from: the WHERE clause makes a
# result for a task that already has one (a redelivered task that ran twice) a no-op, and
# keeps a late "retrying" report of an earlier attempt from moving a later attempt back.
_RECORD_RESULT = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                   finished_at, next_attempt_at, executor, result, error, redelivered)
VALUES (?, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at,
    executor = excluded.executor, result = excluded.result, error = excluded.error,
    redelivered = excluded.redelivered
WHERE tasks.state IN (?, ?, ?)
    AND (excluded.state <> 'retrying' OR excluded.attempt >= tasks.attempt)
"""
# The same, giving the row as written back: only for results someone waits for, since
# decoding a whole row costs more than the write itself.
_RECORD_RESULT_READ_BACK = _RECORD_RESULT + "RETURNING *\n"

_RECORD_REPLAY = """
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, queued_at)
VALUES (?, ?, ?, ?, ?, ?, NULL)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = 0
WHERE tasks.state = ?
"""

# Final tasks are left alone: a cancel cannot change an outcome. A scheduled task has never been
# published, so no executor needs telling: it is cancelled here and now. Every right-hand side
# reads the row as it was before the update.
_REQUEST_CANCEL = """
UPDATE tasks SET
    cancel_requested_at = COALESCE(cancel_requested_at, :at),
    finished_at = CASE WHEN state = 'scheduled' THEN :at ELSE finished_at END,
    state = CASE WHEN state = 'scheduled' THEN 'cancelled' ELSE state END
WHERE task_id = :task_id AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
"""

# Progress never moves backwards in time (reports travel unordered across executors and
# redeliveries), and a report that arrives after the outcome is dropped. Timestamps are
# stored as UTC with microseconds, so comparing the text compares the instants.
_RECORD_PROGRESS = """
UPDATE tasks SET progress = :percent, progress_note = :note, progress_at = :at
WHERE task_id = :task_id AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
    AND (progress_at IS NULL OR progress_at < :at)
"""


class SqliteResults(SqliteConnection):
    """What happens to a task once it is out: outcomes, replays, cancels and progress."""

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        (written,) = self.record_results([result])
        return written.recorded

    def record_results(
        self, results: Sequence[ResultMessage], *, read_back: Collection[UUID] = frozenset()
    ) -> list[RecordedResult]:
        """``record_result`` for each, in order, in one transaction (one fsync for all).

        The records of the ids in ``read_back`` come back as written.
        """
        rows = [(_result_row(result), result.task_id in read_back) for result in results]

        def write(db: sqlite3.Connection) -> list[RecordedResult]:
            written = []
            for row, wanted in rows:
                if wanted and (back := fetch_values(db.execute(_RECORD_RESULT_READ_BACK, row))):
                    written.append(RecordedResult(True, task_record(back[0])))
                elif not wanted and db.execute(_RECORD_RESULT, row).rowcount:
                    written.append(RecordedResult(True))
                else:
                    db.execute(
                        "UPDATE tasks SET duplicate_results = duplicate_results + 1"
                        " WHERE task_id = ?",
                        (row[0],),
                    )
                    written.append(RecordedResult(False))
            return written

        return self._write(write)

    def record_replay(self, task: TaskMessage, at: datetime) -> None:
        """A dead task is submitted again as a new attempt (recorded even if it was unknown)."""
        row = (
            str(task.task_id),
            task.task_type,
            json.dumps(task.params),
            TaskState.SUBMITTED.value,
            task.attempt,
            task.submitted_at.isoformat(),
            TaskState.DEAD.value,
        )
        self._write(lambda db: db.execute(_RECORD_REPLAY, row))

    def request_cancel(self, task_id: UUID, at: datetime) -> bool:
        """Flag a task as cancel-requested (a scheduled one is cancelled); False if final."""
        params = {"task_id": str(task_id), "at": utc_text(at)}
        return self._write(lambda db: db.execute(_REQUEST_CANCEL, params).rowcount > 0)

    def record_progress(self, report: ProgressMessage) -> bool:
        """Record the latest progress of an open task; False if final or older than the last."""
        params = {
            "task_id": str(report.task_id),
            "percent": report.percent,
            "note": report.note,
            "at": utc_text(report.reported_at),
        }

        def write(db: sqlite3.Connection) -> bool:
            return db.execute(_RECORD_PROGRESS, params).rowcount > 0

        # Not durable: progress is advisory, and the next report replaces a lost one.
        return self._write(write, durable=False)


def _result_row(result: ResultMessage) -> tuple[object, ...]:
    # An unknown task (its submission record lost) is inserted with its start as submitted_at.
    next_attempt = next_attempt_at(result)
    return (
        str(result.task_id),
        result.task_type,
        STATE_OF_OUTCOME[result.outcome].value,
        result.attempt,
        result.started_at.isoformat(),
        result.started_at.isoformat(),
        result.finished_at.isoformat(),
        next_attempt.isoformat() if next_attempt else None,
        result.executor,
        json.dumps(result.result),
        result.error.model_dump_json() if result.error else None,
        int(result.redelivered),
        *OPEN_STATES,
    )
