"""The embedded task store: SQLite in WAL mode, one file, safe across processes on one host.

``SqliteTaskStore`` is a synchronous ``SyncTaskStore``;
``dispatcher.store.threaded.ThreadedTaskStore`` gives it the async interface. Each concern is a
module of its own, over the one connection of ``dispatcher.store.sqlite.connection``: tasks,
results, fleet and schedules.
"""

from __future__ import annotations

from dispatcher.store.sqlite.fleet import SqliteFleet
from dispatcher.store.sqlite.results import SqliteResults
from dispatcher.store.sqlite.schedules import SqliteSchedules
from dispatcher.store.sqlite.tasks import SqliteTasks


class SqliteTaskStore(SqliteTasks, SqliteResults, SqliteFleet, SqliteSchedules):
    """Synchronous SQLite task store; thread-safe through one lock.

    Writers serialise on the file's write lock (``BEGIN IMMEDIATE``), across threads and
    processes alike, which is what makes the first result and the first key holder win.
    """
