"""The task store on any SQL dialect: the five concerns over one ``Dialect``."""

from __future__ import annotations

from dispatcher.store.sql.activity import SqlActivity
from dispatcher.store.sql.fleet import SqlFleet
from dispatcher.store.sql.results import SqlResults
from dispatcher.store.sql.retention import SqlRetention
from dispatcher.store.sql.schedules import SqlSchedules
from dispatcher.store.sql.tasks import SqlTasks


class SqlTaskStore(SqlTasks, SqlResults, SqlFleet, SqlSchedules, SqlRetention, SqlActivity):
    """A synchronous ``SyncTaskStore`` on ``dialect``: thread-safe, as the dialect is.

    Writers agree through the dialect's locks: SQLite serialises them on the file's write lock,
    PostgreSQL on row locks, and either way the first result and the first holder of an
    idempotency key win however many dispatchers race.
    """

    def ping(self) -> None:
        """Reach the store (reconnecting if need be); ``StoreError`` when it cannot."""
        self._db.ping()

    def close(self) -> None:
        """Release the connection."""
        self._db.close()
