"""The shared task store: PostgreSQL, so that more than one dispatcher replica can record tasks.

``PostgresTaskStore`` has the methods and semantics of ``SqliteTaskStore``. SQLite serialises
writers with ``BEGIN IMMEDIATE``; here concurrent replicas agree through row locks instead:
``INSERT ... ON CONFLICT`` waits for a competing transaction on the same row and re-checks its
condition against the committed row (READ COMMITTED), so the first final outcome and the first
holder of an idempotency key win however many replicas race.
https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT

Each concern is a module of its own, over the one connection of
``dispatcher.store.postgres.connection``: tasks, results, fleet and schedules.
"""

from __future__ import annotations

import psycopg

from common import StoreError
from common.logging import get_logger
from dispatcher.store.postgres.fleet import PostgresFleet
from dispatcher.store.postgres.results import PostgresResults
from dispatcher.store.postgres.schedules import PostgresSchedules
from dispatcher.store.postgres.schema import SCHEMA_VERSION, migrate
from dispatcher.store.postgres.tasks import PostgresTasks

log = get_logger(__name__)


class PostgresTaskStore(PostgresTasks, PostgresResults, PostgresFleet, PostgresSchedules):
    """Synchronous PostgreSQL task store; thread-safe through one lock, on one connection.

    The tables live in the first schema of the connection's ``search_path``; pick another
    with ``?options=-csearch_path%3Dname`` in the URL. Opening it migrates the schema.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        try:
            migrated_from = migrate(self._db)
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"cannot migrate the task store at {self.url}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise
        if migrated_from is not None:
            log.info("task_store_migrated", from_version=migrated_from, to_version=SCHEMA_VERSION)
