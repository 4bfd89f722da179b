"""The store's outcomes: results, attempts, replays of dead tasks, cancels and progress (SQL)."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime
from uuid import UUID

from common import ProgressMessage, ResultMessage, StartNotice, TaskMessage
from dispatcher.store.records import AttemptRecord, RecordedResult, TaskRecord
from dispatcher.store.rows import (
    STATE_OF_OUTCOME,
    attempt_record,
    next_attempt_at,
    task_message,
    task_record,
)
from dispatcher.store.sql.dialect import Dialect, Params, Transaction
from dispatcher.store.sql.tasks import SqlConcern


class SqlResults(SqlConcern):
    """What happens to a task once it is out: outcomes, replays, cancels and progress."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        # Built once: every result batch runs one of them.
        self._record_result = self._q.record_result + " RETURNING task_id"
        self._record_result_read_back = self._q.record_result + " RETURNING *"

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        (written,) = self.record_results([result])
        return written.recorded

    def record_results(
        self, results: Sequence[ResultMessage], *, read_back: Collection[UUID] = frozenset()
    ) -> list[RecordedResult]:
        """``record_result`` for each, in order, in one transaction (one commit for all).

        The first final outcome wins, whichever attempt it comes from; a duplicate only adds
        to the task's count of them. Each result also closes its attempt's record, unless
        that attempt already has its outcome. The records of the ids in ``read_back`` come back as
        written: only for results someone waits for, since decoding a whole row costs more
        than the write itself.
        """
        rows = [(self._result_row(result), result.task_id in read_back) for result in results]
        ends = [_attempt_end(result, row) for result, (row, _) in zip(results, rows, strict=True)]

        def write(tx: Transaction) -> list[RecordedResult]:
            written: list[RecordedResult | None] = []
            # In order, a run of results at a time: those nobody waits for in one call, each
            # awaited one with its row read back.
            for wanted, run in itertools.groupby(rows, key=lambda row: row[1]):
                params = [row for row, _ in run]
                if wanted:
                    written.extend(self._record_and_read(tx, row) for row in params)
                else:
                    changed = tx.run_each(self._record_result, params)
                    written.extend(RecordedResult(True) if new else None for new in changed)
            duplicates = [
                {"task_id": row["task_id"]}
                for (row, _), w in zip(rows, written, strict=True)
                if w is None
            ]
            if duplicates:
                tx.run_many(self._q.count_duplicate_result, duplicates)
            tx.run_many(self._q.end_attempt, ends)
            return [w or RecordedResult(False) for w in written]

        return self._db.write(write)

    def _record_and_read(self, tx: Transaction, row: Params) -> RecordedResult | None:
        back = tx.run(self._record_result_read_back, row).rows
        return RecordedResult(True, task_record(back[0])) if back else None

    def reschedule(self, task_id: UUID, eta: datetime) -> TaskRecord | None:
        """Move a scheduled task's eta; its record, None if it is not scheduled (any more)."""
        params = {"task_id": task_id, "eta": eta}
        rows = self._db.write(lambda tx: tx.run(self._q.reschedule_task, params).rows)
        return task_record(rows[0]) if rows else None

    def retry_tasks(
        self, task_ids: Sequence[UUID], at: datetime, *, cause: str
    ) -> list[TaskMessage]:
        """Move each failed, dead or cancelled task to its next attempt, submitted again.

        Returns the messages to publish, for the tasks that were in such a state (the
        others are left alone); each new attempt's record names ``cause`` at ``at``.
        """

        def write(tx: Transaction) -> list[TaskMessage]:
            retried = []
            for task_id in sorted(set(task_ids)):  # in id order: no deadlock between replicas
                rows = tx.run(self._q.retry_task, {"task_id": task_id, "eta": at}).rows
                if rows:
                    task = task_message(rows[0])
                    tx.run(self._q.cause_attempt, _cause(task, cause, at))
                    retried.append(task)
            return retried

        return self._db.write(write)

    def record_replay(self, task: TaskMessage, at: datetime, *, cause: str | None = None) -> bool:
        """A dead task is submitted again as a new attempt (recorded even if it was unknown).

        False, and nothing written, when the task is recorded in another state than dead (a
        retry by hand ran it again, or another copy of it succeeded).
        """
        row = {
            "task_id": task.task_id,
            "task_type": task.task_type,
            "params": task.params,
            "attempt": task.attempt,
            "submitted_at": task.submitted_at,
            "queue": task.queue,
        }

        def write(tx: Transaction) -> bool:
            if tx.run(self._q.record_replay, row).rowcount == 0:
                return False
            if cause is not None:
                tx.run(self._q.cause_attempt, _cause(task, cause, at))
            return True

        return self._db.write(write)

    def request_cancel(self, task_id: UUID, at: datetime, *, via: str = "python") -> bool:
        """Flag a task as cancel-requested (a scheduled one is cancelled); False if final.

        The first request's time and entry point (``via``: cli, http, python) are kept.
        """
        params = {"task_id": task_id, "cancel_requested_at": at, "via": via}
        return self._db.write(lambda tx: tx.run(self._q.request_cancel, params).rowcount > 0)

    def record_starts(self, notices: Sequence[StartNotice]) -> list[int | None]:
        """Count each start of an open attempt; each one's runs so far, None if not counted."""
        rows = [
            {
                "task_id": n.task_id,
                "attempt": n.attempt,
                "started_at": n.started_at,
                "executor": self._db.reported(n.executor),
            }
            for n in notices
        ]

        def write(tx: Transaction) -> list[int | None]:
            runs: list[int | None] = []
            for row in rows:
                found = tx.run(self._q.record_start, row).rows
                runs.append(int(found[0]["runs"]) if found else None)
                if found:  # an open attempt of a known task: its attempt record too
                    tx.run(self._q.start_attempt, row)
            return runs

        # Not durable: a start lost to a power cut only lets an attempt start once more.
        return self._db.write(write, durable=False) if rows else []

    def attempts(self, task_id: UUID) -> list[AttemptRecord]:
        """Every recorded attempt of ``task_id``, first to last (none for an unknown id)."""
        rows = self._db.read(self._q.attempts_of, {"task_id": task_id})
        return [attempt_record(row) for row in rows]

    def record_progress(self, report: ProgressMessage) -> bool:
        """Record the latest progress of an open task; False if final or older than the last."""
        params = {
            "task_id": report.task_id,
            "progress": report.percent,
            "progress_note": self._db.reported(report.note),
            "progress_at": report.reported_at,
        }
        # Not durable: progress is advisory, and the next report replaces a lost one.
        return self._db.write(
            lambda tx: tx.run(self._q.record_progress, params).rowcount > 0, durable=False
        )

    def _result_row(self, result: ResultMessage) -> Params:
        # An unknown task (its submission record lost) is inserted with its start as
        # submitted_at. What the executor reported is made storable first.
        error = result.error.model_dump(mode="json") if result.error else None
        return {
            "task_id": result.task_id,
            "task_type": self._db.reported(result.task_type),
            "state": STATE_OF_OUTCOME[result.outcome].value,
            "attempt": result.attempt,
            "started_at": result.started_at,
            "finished_at": result.finished_at,
            "next_attempt_at": next_attempt_at(result),
            "executor": self._db.reported(result.executor),
            "result": self._db.reported(result.result),
            "error": self._db.reported(error) if error is not None else None,
            "redelivered": result.redelivered,
        }


def _attempt_end(result: ResultMessage, result_row: Params) -> Params:
    """The attempts row a result closes, from the values it writes to the tasks row."""
    return {
        "task_id": result_row["task_id"],
        "attempt": result_row["attempt"],
        "executor": result_row["executor"],
        "started_at": result_row["started_at"],
        "finished_at": result_row["finished_at"],
        "outcome": result.outcome.value,
        "error": result_row["error"],
    }


def _cause(task: TaskMessage, cause: str, at: datetime) -> Params:
    return {"task_id": task.task_id, "attempt": task.attempt, "cause": cause, "caused_at": at}
