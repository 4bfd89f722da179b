"""The shared task store: PostgreSQL, so that more than one dispatcher replica can record tasks.

``PostgresTaskStore`` has the methods and semantics of ``SqliteTaskStore``. SQLite serialises
writers with ``BEGIN IMMEDIATE``; here concurrent replicas agree through row locks instead:
``INSERT ... ON CONFLICT`` waits for a competing transaction on the same row and re-checks its
condition against the committed row (READ COMMITTED), so the first final outcome and the first
holder of an idempotency key win however many replicas race.
https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from common import (
    ExecutorEvent,
    Heartbeat,
    JsonValue,
    Outcome,
    ProgressMessage,
    ResultMessage,
    ScheduleExists,
    ScheduleNotFound,
    StoreError,
    TaskErrorInfo,
    TaskMessage,
    TaskNotFound,
    TaskTypeInfo,
)
from common.logging import get_logger
from common.settings import redact_url
from dispatcher.postgres_schema import SCHEMA_VERSION, migrate
from dispatcher.store import ExecutorRecord, ScheduleRecord, TaskRecord, TaskState, TaskTypeRecord
from dispatcher.task_query import TaskQuery

log = get_logger(__name__)

_T = TypeVar("_T")
_Connection = psycopg.Connection[DictRow]

# Unless the URL says otherwise: fail fast on an unreachable server, and name the client in
# pg_stat_activity.
_CONNECT_DEFAULTS = {"connect_timeout": "10", "application_name": "wq-dispatcher"}

_OPEN_STATES = [TaskState.SUBMITTED.value, TaskState.QUEUED.value, TaskState.RETRYING.value]
_STATE_OF_OUTCOME = {
    Outcome.SUCCEEDED: TaskState.SUCCEEDED,
    Outcome.FAILED: TaskState.FAILED,
    Outcome.RETRYING: TaskState.RETRYING,
    Outcome.DEAD: TaskState.DEAD,
    Outcome.CANCELLED: TaskState.CANCELLED,
}

_ADD_TASK = """
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                      priority, eta, schedule_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id
"""

# SKIP LOCKED: replicas claiming at once take disjoint rows instead of queueing on each
# other; a row another replica claimed and committed meanwhile fails the re-checked WHERE.
# https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE
_CLAIM_DUE = """
WITH due AS (
    SELECT task_id FROM wq_tasks WHERE state = 'scheduled' AND eta <= %(now)s
    ORDER BY eta LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE wq_tasks SET state = 'submitted', eta = %(now)s
FROM due WHERE wq_tasks.task_id = due.task_id AND wq_tasks.state = 'scheduled'
RETURNING wq_tasks.task_id, task_type, params, attempt, submitted_at, priority
"""

# The schedule row's lock serialises replicas firing it: the second waits for the first to
# commit, re-checks next_fire_at against the committed row (READ COMMITTED) and updates
# nothing. https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED
_ADVANCE_SCHEDULE = """
UPDATE wq_schedules SET next_fire_at = %(next)s, last_fire_at = %(fired)s,
    last_task_id = %(task_id)s, updated_at = %(at)s
WHERE schedule_id = %(schedule_id)s AND next_fire_at = %(fired)s AND NOT paused
"""

_ADD_SCHEDULE = """
INSERT INTO wq_schedules (schedule_id, name, cron, timezone, task_type, params, priority,
                          paused, next_fire_at, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (name) DO NOTHING
"""

# Rows are locked in task id order: two replicas marking overlapping batches (both re-publish
# an old unconfirmed task) wait for each other instead of deadlocking. FOR UPDATE re-checks
# the state of a row another transaction just changed, so an outcome is never overwritten.
_MARK_QUEUED = """
WITH locked AS (
    SELECT task_id FROM wq_tasks WHERE task_id = ANY(%(ids)s) AND state = 'submitted'
    ORDER BY task_id FOR UPDATE
)
UPDATE wq_tasks SET state = 'queued', queued_at = %(at)s
FROM locked WHERE wq_tasks.task_id = locked.task_id AND wq_tasks.state = 'submitted'
"""

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

_RECORD_REPLAY = """
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at)
VALUES (%s, %s, %s, 'submitted', %s, %s)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = false
WHERE wq_tasks.state = 'dead'
"""

# As in SqliteTaskStore: the newest heartbeat per executor wins, whatever the arrival order.
_RECORD_HEARTBEAT = """
INSERT INTO wq_executors (executor_id, host, pid, slots, task_types, started_at, last_seen_at,
                          stopped_at, current_tasks, processed, failed, cpu_percent, rss_bytes,
                          info)
VALUES (%(executor_id)s, %(host)s, %(pid)s, %(slots)s, %(task_types)s, %(started_at)s,
        %(last_seen_at)s, %(stopped_at)s, %(current_tasks)s, %(processed)s, %(failed)s,
        %(cpu_percent)s, %(rss_bytes)s, %(info)s)
ON CONFLICT (executor_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, slots = excluded.slots,
    task_types = excluded.task_types, started_at = excluded.started_at,
    last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at,
    current_tasks = excluded.current_tasks, processed = excluded.processed,
    failed = excluded.failed, cpu_percent = excluded.cpu_percent,
    rss_bytes = excluded.rss_bytes, info = excluded.info
WHERE excluded.last_seen_at >= wq_executors.last_seen_at
"""

_PUBLISH_TASK_TYPE = """
INSERT INTO wq_task_types (task_type, params_schema, description, options, published_by,
                           updated_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (task_type) DO UPDATE SET
    params_schema = excluded.params_schema, description = excluded.description,
    options = excluded.options, published_by = excluded.published_by,
    updated_at = excluded.updated_at
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


class PostgresTaskStore:
    """Synchronous PostgreSQL task store; thread-safe through one lock, on one connection.

    The tables live in the first schema of the connection's ``search_path``; pick another
    with ``?options=-csearch_path%3Dname`` in the URL.
    """

    def __init__(self, url: str) -> None:
        self.url = _redacted(url)  # safe to show: the password is masked
        self._conninfo = url
        self._lock = threading.Lock()
        self._closed = False
        self._db = self._connect()
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"cannot migrate the task store at {self.url}: {exc}") from exc
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> _Connection:
        try:
            given = conninfo_to_dict(self._conninfo)
            defaults = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in given}
            conninfo = make_conninfo(self._conninfo, **defaults)
            db = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
        except psycopg.Error as exc:
            # "from None": libpq quotes a malformed URL, password included, in its message.
            raise StoreError(
                f"cannot open the task store at {self.url}: {_mask(str(exc), self._conninfo)}"
            ) from None
        try:
            # The row-lock reasoning above needs READ COMMITTED whatever the server default;
            # UTC keeps the timestamps read back independent of the server's TimeZone.
            db.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            db.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            db.close()
            raise StoreError(f"cannot open the task store at {self.url}: {exc}") from exc
        return db

    def _migrate(self) -> None:
        migrated_from = migrate(self._db)
        if migrated_from is not None:
            log.info("task_store_migrated", from_version=migrated_from, to_version=SCHEMA_VERSION)

    def add_submitted(
        self,
        tasks: Sequence[TaskMessage],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record new tasks as submitted; returns the id recorded for each.

        A task whose idempotency key is already recorded is not added: its entry in the
        returned list is the id of the task that holds the key.
        """
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(tasks)
        rows = [_task_row(t, key) for t, key in zip(tasks, keys, strict=True)]
        return self._insert_once_per_key(rows, keys)

    def _insert_once_per_key(
        self, rows: list[tuple[object, ...]], keys: Sequence[str | None]
    ) -> list[UUID]:
        # Inserted in key order: two replicas submitting overlapping keys wait for each
        # other's uncommitted rows in one order, so they cannot deadlock. The stable sort
        # keeps the first of two equal keys in one batch first, as SQLite does.
        order = sorted(range(len(rows)), key=lambda i: (keys[i] is None, keys[i] or ""))

        def write(db: _Connection) -> list[UUID]:
            inserted: dict[int, UUID] = {}
            with db.cursor() as cursor:
                cursor.executemany(_ADD_TASK, [rows[i] for i in order], returning=True)
                for i in order:
                    row = cursor.fetchone()
                    if row is not None:
                        inserted[i] = row["task_id"]
                    cursor.nextset()
            held = [k for i, k in enumerate(keys) if i not in inserted]
            if not held:
                return [inserted[i] for i in range(len(keys))]
            # A statement sees rows committed before it began (READ COMMITTED), so the
            # holder of a key that made our insert do nothing is visible here.
            holders = {
                row["idempotency_key"]: row["task_id"]
                for row in db.execute(
                    "SELECT idempotency_key, task_id FROM wq_tasks WHERE idempotency_key = ANY(%s)",
                    (held,),
                )
            }
            return [inserted[i] if i in inserted else holders[k] for i, k in enumerate(keys)]

        return self._run("write", write, write=True) if rows else []

    def mark_queued(self, task_ids: Sequence[UUID], at: datetime) -> None:
        """Move submitted tasks to queued; a task that already has an outcome keeps it."""
        params = {"ids": list(task_ids), "at": at}
        self._run("write", lambda db: db.execute(_MARK_QUEUED, params), write=True)

    def unconfirmed(self, submitted_before: datetime, limit: int) -> list[TaskMessage]:
        """Tasks still ``submitted`` since before ``submitted_before``, oldest first."""
        # A released delayed task or a fired schedule's task waits its age from its eta.
        rows = self._read(
            "SELECT task_id, task_type, params, attempt, submitted_at, priority FROM wq_tasks"
            " WHERE state = 'submitted' AND submitted_at < %(before)s"
            " AND (eta IS NULL OR eta < %(before)s) ORDER BY submitted_at LIMIT %(limit)s",
            {"before": submitted_before, "limit": limit},
        )
        return [_message(row) for row in rows]

    def record_result(self, result: ResultMessage) -> bool:
        """Record an outcome unless the task already has one; returns whether it was recorded."""
        (recorded,) = self.record_results([result])
        return recorded

    def record_results(self, results: Sequence[ResultMessage]) -> list[bool]:
        """``record_result`` for each, in order, in one transaction (one commit for all)."""
        rows = [_result_params(result) for result in results]

        def write(db: _Connection) -> list[bool]:
            recorded = []
            for params in rows:
                if db.execute(_RECORD_RESULT, params).rowcount:
                    recorded.append(True)
                    continue
                db.execute(
                    "UPDATE wq_tasks SET duplicate_results = duplicate_results + 1"
                    " WHERE task_id = %s",
                    (params["task_id"],),
                )
                recorded.append(False)
            return recorded

        return self._run("write", write, write=True)

    def record_replay(self, task: TaskMessage, at: datetime) -> None:
        """A dead task is submitted again as a new attempt (recorded even if it was unknown)."""
        row = (task.task_id, task.task_type, Jsonb(task.params), task.attempt, task.submitted_at)
        self._run("write", lambda db: db.execute(_RECORD_REPLAY, row), write=True)

    def get(self, task_id: UUID) -> TaskRecord:
        """The record of ``task_id``, or ``TaskNotFound``."""
        records = self.get_many([task_id])
        if not records:
            raise TaskNotFound(task_id)
        return records[0]

    def get_many(self, task_ids: Sequence[UUID]) -> list[TaskRecord]:
        """The records of those ids that exist."""
        # One array parameter, however many ids: PostgreSQL has no bound-parameter limit here.
        rows = self._read("SELECT * FROM wq_tasks WHERE task_id = ANY(%s)", (list(task_ids),))
        return [_record(row) for row in rows]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._closed = True
            self._db.close()

    def record_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Upsert the executor's row unless a newer heartbeat is already recorded."""
        params = {
            "executor_id": _without_nul(heartbeat.executor),
            "host": _without_nul(heartbeat.host),
            "pid": heartbeat.pid,
            "slots": heartbeat.slots,
            "task_types": Jsonb([_without_nul(t.name) for t in heartbeat.task_types]),
            "started_at": heartbeat.started_at,
            "last_seen_at": heartbeat.sent_at,
            "stopped_at": heartbeat.sent_at if heartbeat.event is ExecutorEvent.STOPPED else None,
            "current_tasks": Jsonb(
                _without_nul([t.model_dump(mode="json") for t in heartbeat.current_tasks])
            ),
            "processed": heartbeat.processed,
            "failed": heartbeat.failed,
            "cpu_percent": heartbeat.cpu_percent,
            "rss_bytes": heartbeat.rss_bytes,
            "info": Jsonb({"version": heartbeat.version, "event": heartbeat.event.value}),
        }
        self._run("write", lambda db: db.execute(_RECORD_HEARTBEAT, params), write=True)

    def list_executors(self) -> list[ExecutorRecord]:
        """Every executor recorded, by id."""
        rows = self._read("SELECT * FROM wq_executors ORDER BY executor_id", ())
        return [
            ExecutorRecord(
                executor_id=row["executor_id"],
                host=row["host"],
                pid=row["pid"],
                slots=row["slots"],
                task_types=row["task_types"],
                started_at=row["started_at"],
                last_seen_at=row["last_seen_at"],
                stopped_at=row["stopped_at"],
                current_tasks=row["current_tasks"],
                processed=row["processed"],
                failed=row["failed"],
                cpu_percent=row["cpu_percent"],
                rss_bytes=row["rss_bytes"],
            )
            for row in rows
        ]

    def publish_task_types(
        self, task_types: Sequence[TaskTypeInfo], *, published_by: str, at: datetime
    ) -> None:
        """Upsert the task types an executor published; the last publisher wins."""
        rows = [
            (
                _without_nul(t.name),
                Jsonb(_without_nul(t.params_schema)),
                _without_nul(t.description) if t.description is not None else None,
                Jsonb(_without_nul(t.options)),
                _without_nul(published_by),
                at,
            )
            for t in sorted(task_types, key=lambda t: t.name)  # one lock order across replicas
        ]

        def write(db: _Connection) -> None:
            with db.cursor() as cursor:
                cursor.executemany(_PUBLISH_TASK_TYPE, rows)

        if rows:
            self._run("write", write, write=True)

    def list_task_types(self) -> list[TaskTypeRecord]:
        """Every published task type, by name."""
        rows = self._read("SELECT * FROM wq_task_types ORDER BY task_type", ())
        return [
            TaskTypeRecord(
                name=row["task_type"],
                params_schema=row["params_schema"],
                description=row["description"],
                options=row["options"],
                published_by=row["published_by"],
                updated_at=row["updated_at"],
            )
            for row in rows
        ]

    def request_cancel(self, task_id: UUID, at: datetime) -> bool:
        """Flag a task as cancel-requested (a scheduled one is cancelled); False if final."""
        params = {"task_id": task_id, "at": at}
        return self._run(
            "write", lambda db: db.execute(_REQUEST_CANCEL, params).rowcount > 0, write=True
        )

    def record_progress(self, report: ProgressMessage) -> bool:
        """Record the latest progress of an open task; False if final or older than the last."""
        params = {
            "task_id": report.task_id,
            "percent": report.percent,
            "note": _without_nul(report.note),
            "at": report.reported_at,
        }
        return self._run(
            "write", lambda db: db.execute(_RECORD_PROGRESS, params).rowcount > 0, write=True
        )

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[DictRow]:
        return self._run("read", lambda db: db.execute(sql, params).fetchall(), write=False)

    def _run(self, what: str, work: Callable[[_Connection], _T], *, write: bool) -> _T:
        with self._lock:
            if self._db.closed:
                if self._closed:
                    raise StoreError("the task store is closed")
                # The server restarted or the network dropped: the call that noticed failed
                # (its caller retries, e.g. a result is requeued); this one reconnects.
                self._db = self._connect()
            try:
                if not write:
                    return work(self._db)
                with self._db.transaction():
                    return work(self._db)
            except psycopg.Error as exc:
                raise StoreError(f"task store {what} failed: {exc}") from exc

    def list_tasks(self, query: TaskQuery) -> list[TaskRecord]:
        """Tasks matching ``query``, newest first by ``(submitted_at, task_id)``."""
        where: list[str] = []
        params: list[object] = []
        if query.states:
            where.append("state = ANY(%s)")
            params.append([state.value for state in query.states])
        if query.task_type is not None:
            where.append("task_type = %s")
            params.append(query.task_type)
        if query.submitted_after is not None:
            where.append("submitted_at > %s")
            params.append(query.submitted_after)
        if query.submitted_before is not None:
            where.append("submitted_at < %s")
            params.append(query.submitted_before)
        if query.after is not None:
            # A row comparison: the keyset condition in one term (uuid order is byte order,
            # the same as SQLite's order of the lower-case text form).
            where.append("(submitted_at, task_id) < (%s, %s)")
            params.extend([query.after.submitted_at, query.after.task_id])
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read(
            f"SELECT * FROM wq_tasks {condition} ORDER BY submitted_at DESC, task_id DESC LIMIT %s",
            [*params, query.limit],
        )
        return [_record(row) for row in rows]

    def ping(self) -> None:
        """Query the server (reconnecting if the connection dropped); ``StoreError`` if not."""
        self._read("SELECT 1", ())

    def add_scheduled(
        self,
        tasks: Sequence[TaskMessage],
        etas: Sequence[datetime],
        idempotency_keys: Sequence[str | None] | None = None,
    ) -> list[UUID]:
        """Record delayed tasks as scheduled with their etas; keys as in ``add_submitted``."""
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(tasks)
        rows = [
            _task_row(t, key, TaskState.SCHEDULED, eta)
            for t, eta, key in zip(tasks, etas, keys, strict=True)
        ]
        return self._insert_once_per_key(rows, keys)

    def claim_due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Move due scheduled tasks to submitted (eta = ``now``) and return them."""
        params = {"now": now, "limit": limit}
        rows = self._run("write", lambda db: db.execute(_CLAIM_DUE, params).fetchall(), write=True)
        return sorted((_message(row) for row in rows), key=lambda t: t.submitted_at)

    def add_schedule(self, schedule: ScheduleRecord) -> None:
        """Record a new schedule; ``ScheduleExists`` when the name is taken."""
        row = (
            schedule.schedule_id,
            schedule.name,
            schedule.cron,
            schedule.timezone,
            schedule.task_type,
            Jsonb(schedule.params),
            schedule.priority,
            schedule.paused,
            schedule.next_fire_at,
            schedule.created_at,
            schedule.updated_at,
        )
        added = self._run("write", lambda db: db.execute(_ADD_SCHEDULE, row).rowcount, write=True)
        if not added:
            raise ScheduleExists(schedule.name)

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        rows = self._read("SELECT * FROM wq_schedules ORDER BY name", ())
        return [ScheduleRecord.model_validate(row) for row in rows]

    def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        rows = self._read("SELECT * FROM wq_schedules WHERE name = %s", (name,))
        if not rows:
            raise ScheduleNotFound(name)
        return ScheduleRecord.model_validate(rows[0])

    def set_schedule_paused(
        self, name: str, *, paused: bool, next_fire_at: datetime | None, at: datetime
    ) -> ScheduleRecord:
        """Pause or resume a schedule, optionally moving its next fire time."""
        rows = self._run(
            "write",
            lambda db: db.execute(
                "UPDATE wq_schedules SET paused = %s,"
                " next_fire_at = coalesce(%s, next_fire_at), updated_at = %s"
                " WHERE name = %s RETURNING *",
                (paused, next_fire_at, at, name),
            ).fetchall(),
            write=True,
        )
        if not rows:
            raise ScheduleNotFound(name)
        return ScheduleRecord.model_validate(rows[0])

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule; the tasks it submitted stay."""
        deleted = self._run(
            "write",
            lambda db: db.execute("DELETE FROM wq_schedules WHERE name = %s", (name,)).rowcount,
            write=True,
        )
        if not deleted:
            raise ScheduleNotFound(name)

    def due_schedules(self, now: datetime, limit: int) -> list[ScheduleRecord]:
        """Schedules not paused whose next fire time has come, earliest first."""
        rows = self._read(
            "SELECT * FROM wq_schedules WHERE NOT paused AND next_fire_at <= %s"
            " ORDER BY next_fire_at LIMIT %s",
            (now, limit),
        )
        return [ScheduleRecord.model_validate(row) for row in rows]

    def fire_schedule(
        self,
        schedule: ScheduleRecord,
        next_fire_at: datetime,
        task: TaskMessage,
        idempotency_key: str,
    ) -> bool:
        """Move the schedule on if it still holds the fire time read, and record its task."""
        advance = {
            "next": next_fire_at,
            "fired": schedule.next_fire_at,
            "task_id": task.task_id,
            "at": task.submitted_at,
            "schedule_id": schedule.schedule_id,
        }
        row = _task_row(
            task, idempotency_key, eta=schedule.next_fire_at, schedule_id=schedule.schedule_id
        )

        def write(db: _Connection) -> bool:
            if not db.execute(_ADVANCE_SCHEDULE, advance).rowcount:
                return False
            return db.execute(_ADD_TASK, row).fetchone() is not None

        return self._run("write", write, write=True)


def _result_params(result: ResultMessage) -> dict[str, Any]:
    # PostgreSQL text and jsonb cannot hold NUL: a result is stored with U+FFFD in its place
    # rather than refused, since a refused result would be requeued forever.
    error = result.error.model_dump(mode="json") if result.error else None
    return {
        "task_id": result.task_id,
        "task_type": _without_nul(result.task_type),
        "state": _STATE_OF_OUTCOME[result.outcome].value,
        "attempt": result.attempt,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "next_attempt_at": (
            result.finished_at + timedelta(seconds=result.retry_in_s)
            if result.retry_in_s is not None
            else None
        ),
        "executor": _without_nul(result.executor),
        "result": Jsonb(_without_nul(result.result)),
        "error": Jsonb(_without_nul(error)) if error is not None else None,
        "redelivered": result.redelivered,
        "open_states": _OPEN_STATES,
    }


def _without_nul(value: JsonValue) -> JsonValue:
    """``value`` with every NUL character in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {key.replace("\x00", "\ufffd"): _without_nul(item) for key, item in value.items()}
    return value


def _redacted(url: str) -> str:
    try:
        return redact_url(url)
    except ValueError:  # urllib cannot parse it (a bad IPv6 host): show none of it
        return "<unparsable PostgreSQL URL>"


def _mask(text: str, url: str) -> str:
    """``text`` without the URL, nor its password raw or percent-decoded."""
    text = text.replace(url, _redacted(url))
    try:
        password = urlsplit(url).password or ""
    except ValueError:
        password = ""
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text


def _task_row(
    task: TaskMessage,
    key: str | None,
    state: TaskState = TaskState.SUBMITTED,
    eta: datetime | None = None,
    schedule_id: UUID | None = None,
) -> tuple[object, ...]:
    return (
        task.task_id,
        task.task_type,
        Jsonb(task.params),
        state.value,
        task.attempt,
        task.submitted_at,
        key,
        task.priority,
        eta,
        schedule_id,
    )


def _message(row: DictRow) -> TaskMessage:
    return TaskMessage(
        task_id=row["task_id"],
        task_type=row["task_type"],
        params=row["params"],
        attempt=row["attempt"],
        submitted_at=row["submitted_at"],
        priority=row["priority"],
    )


def _record(row: DictRow) -> TaskRecord:
    error = row["error"]
    return TaskRecord(
        task_id=row["task_id"],
        task_type=row["task_type"],
        params=row["params"],
        state=TaskState(row["state"]),
        attempt=row["attempt"],
        submitted_at=row["submitted_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
        executor=row["executor"],
        result=row["result"],
        error=TaskErrorInfo.model_validate(error) if error is not None else None,
        redelivered=row["redelivered"],
        duplicate_results=row["duplicate_results"],
        idempotency_key=row["idempotency_key"],
        priority=row["priority"],
        eta=row["eta"],
        schedule_id=row["schedule_id"],
        cancel_requested_at=row["cancel_requested_at"],
        progress=row["progress"],
        progress_note=row["progress_note"],
        progress_at=row["progress_at"],
    )
