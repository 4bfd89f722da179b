"""The PostgreSQL store's outcomes: results, replays of dead tasks, cancel requests, progress."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from common import ProgressMessage, ResultMessage, TaskMessage
from dispatcher.store.postgres.connection import Connection, PostgresConnection, without_nul
from dispatcher.store.records import RecordedResult
from dispatcher.store.rows import OPEN_STATES, STATE_OF_OUTCOME, next_attempt_at, task_record

# As in SqliteTaskStore: the first final outcome wins, whichever attempt it comes from, and a
# late "retrying" report of an earlier attempt never moves a later attempt back. ON CONFLICT
# locks the row even when the WHERE is false, so the duplicate count below is exact too.
_RECORD_RESULT = """
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                      finished_at, next_attempt_at, executor, result, error, redelivered)
VALUES (%(task_id)s, %(task_type)s, '{}', %(state)s, %(attempt)s, %(started_at)s,
        %(started_at)s, %(finished_at)s, %(next_attempt_at)s, %(executor)s, %(result)s,
        %(error)s, %(redelivered)s)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at,
    executor = excluded.executor, result = excluded.result, error = excluded.error,
    redelivered = excluded.redelivered
WHERE wq_tasks.state = ANY(%(open_states)s)
    AND (excluded.state <> 'retrying' OR excluded.attempt >= wq_tasks.attempt)
"""
# As in SqliteTaskStore: the row as written comes back only for results someone waits for.
_RECORD_RESULT_READ_BACK = _RECORD_RESULT + "RETURNING *\n"

_RECORD_REPLAY = """
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at)
VALUES (%s, %s, %s, 'submitted', %s, %s)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = false
WHERE wq_tasks.state = 'dead'
"""

# As in SqliteTaskStore: a final task is left alone, a scheduled one is cancelled at once.
_REQUEST_CANCEL = """
UPDATE wq_tasks SET
    cancel_requested_at = COALESCE(cancel_requested_at, %(at)s),
    finished_at = CASE WHEN state = 'scheduled' THEN %(at)s ELSE finished_at END,
    state = CASE WHEN state = 'scheduled' THEN 'cancelled' ELSE state END
WHERE task_id = %(task_id)s AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
"""

# As in SqliteTaskStore: never backwards in time, never after the outcome.
_RECORD_PROGRESS = """
UPDATE wq_tasks SET progress = %(percent)s, progress_note = %(note)s, progress_at = %(at)s
WHERE task_id = %(task_id)s AND state NOT IN ('succeeded', 'failed', 'dead', 'cancelled')
    AND (progress_at IS NULL OR progress_at < %(at)s)
"""


class PostgresResults(PostgresConnection):
    """What happens to a task once it is out: outcomes, replays, cancels and progress."""

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        (written,) = self.record_results([result])
        return written.recorded

    def record_results(
        self, results: Sequence[ResultMessage], *, read_back: Collection[UUID] = frozenset()
    ) -> list[RecordedResult]:
        """``record_result`` for each, in order, in one transaction (one commit for all).

        The records of the ids in ``read_back`` come back as written.
        """
        rows = [(_result_params(result), result.task_id in read_back) for result in results]

        def write(db: Connection) -> list[RecordedResult]:
            written = []
            for params, wanted in rows:
                if wanted and (back := db.execute(_RECORD_RESULT_READ_BACK, params).fetchone()):
                    written.append(RecordedResult(True, task_record(back)))
                elif not wanted and db.execute(_RECORD_RESULT, params).rowcount:
                    written.append(RecordedResult(True))
                else:
                    db.execute(
                        "UPDATE wq_tasks SET duplicate_results = duplicate_results + 1"
                        " WHERE task_id = %s",
                        (params["task_id"],),
                    )
                    written.append(RecordedResult(False))
            return written

        return self._write(write)

    def record_replay(self, task: TaskMessage, at: datetime) -> None:
        """A dead task is submitted again as a new attempt (recorded even if it was unknown)."""
        row = (task.task_id, task.task_type, Jsonb(task.params), task.attempt, task.submitted_at)
        self._write(lambda db: db.execute(_RECORD_REPLAY, row))

    def request_cancel(self, task_id: UUID, at: datetime) -> bool:
        """Flag a task as cancel-requested (a scheduled one is cancelled); False if final."""
        params = {"task_id": task_id, "at": at}
        return self._write(lambda db: db.execute(_REQUEST_CANCEL, params).rowcount > 0)

    def record_progress(self, report: ProgressMessage) -> bool:
        """Record the latest progress of an open task; False if final or older than the last."""
        params = {
            "task_id": report.task_id,
            "percent": report.percent,
            "note": without_nul(report.note),
            "at": report.reported_at,
        }

        def write(db: Connection) -> bool:
            return db.execute(_RECORD_PROGRESS, params).rowcount > 0

        # Not durable: progress is advisory, and the next report replaces a lost one.
        return self._write(write, durable=False)


def _result_params(result: ResultMessage) -> dict[str, Any]:
    # An unknown task (its submission record lost) is inserted with its start as submitted_at.
    error = result.error.model_dump(mode="json") if result.error else None
    return {
        "task_id": result.task_id,
        "task_type": without_nul(result.task_type),
        "state": STATE_OF_OUTCOME[result.outcome].value,
        "attempt": result.attempt,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "next_attempt_at": next_attempt_at(result),
        "executor": without_nul(result.executor),
        "result": Jsonb(without_nul(result.result)),
        "error": Jsonb(without_nul(error)) if error is not None else None,
        "redelivered": result.redelivered,
        "open_states": list(OPEN_STATES),
    }
