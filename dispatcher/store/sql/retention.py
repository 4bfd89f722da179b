"""The store's retention: deleting finished tasks and silent executors, a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dispatcher.store.records import TaskState
from dispatcher.store.sql.dialect import Transaction
from dispatcher.store.sql.tasks import SqlConcern


class SqlRetention(SqlConcern):
    """Forgetting what is old: finished tasks (with their attempts and keys), lost executors."""

    def prune_tasks(self, before: datetime, states: Sequence[TaskState], limit: int) -> int:
        """Delete up to ``limit`` tasks in ``states`` finished before ``before``, oldest first.

        One short transaction: a sweep calls it until it deletes fewer than ``limit``, so no
        lock is held for long. The tasks' attempts and idempotency keys go with them.
        """
        params = {"before": before, "states": [state.value for state in states], "limit": limit}

        def write(tx: Transaction) -> int:
            ids = [row["task_id"] for row in tx.run(self._q.prune_tasks, params).rows]
            if ids:
                tx.run(self._q.prune_attempts, {"ids": ids})
            return len(ids)

        # Not durable: a prune lost to a crash is simply done again by the next sweep.
        pruned = self._db.write(write, durable=False)
        if pruned:
            self._db.reclaim_space()
        return pruned

    def count_prunable(self, before: datetime, states: Sequence[TaskState]) -> int:
        """How many tasks ``prune_tasks`` would delete, for a dry run."""
        params = {"before": before, "states": [state.value for state in states]}
        (row,) = self._db.read(self._q.count_prunable, params)
        return int(row["n"])

    def prune_executors(self, before: datetime) -> int:
        """Delete the executors not heard from since ``before``; how many there were."""
        params = {"before": before}
        return self._db.write(lambda tx: len(tx.run(self._q.prune_executors, params).rows))
