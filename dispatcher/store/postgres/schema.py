"""The PostgreSQL store's schema: versioned migrations, applied once under an advisory lock.

The applied versions are rows of ``wq_schema_version``; the schema's version is the highest.
To change the schema, append a step to ``MIGRATIONS``; never edit a released one.
"""

from __future__ import annotations

from psycopg import Connection
from psycopg.rows import DictRow

from common import StoreError

# Version n is MIGRATIONS[n - 1]; the numbers are this dialect's own (version 1 here is SQLite's
# 3, whose 1 and 2 predate this store). Each step runs in the transaction that records it, so a
# crash half-way leaves the schema as it was (PostgreSQL DDL is transactional).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE wq_tasks (
            task_id uuid PRIMARY KEY,
            task_type text NOT NULL,
            params jsonb NOT NULL,
            state text NOT NULL CHECK (state IN
                ('submitted', 'queued', 'retrying', 'succeeded', 'failed', 'dead')),
            attempt integer NOT NULL DEFAULT 1,
            submitted_at timestamptz NOT NULL,
            queued_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            next_attempt_at timestamptz,
            executor text,
            result jsonb,
            error jsonb,
            redelivered boolean NOT NULL DEFAULT false,
            duplicate_results integer NOT NULL DEFAULT 0,
            idempotency_key text
        )""",
        # The outbox sweep reads only tasks still submitted, oldest first.
        "CREATE INDEX wq_tasks_unconfirmed ON wq_tasks (submitted_at) WHERE state = 'submitted'",
        "CREATE UNIQUE INDEX wq_tasks_by_idempotency_key ON wq_tasks (idempotency_key)"
        " WHERE idempotency_key IS NOT NULL",
    ),
    # Version 2 (SQLite's version 4), the scheduling centre: priority, eta, cancel and
    # progress; schedules, executors and the task types executors publish.
    (
        "ALTER TABLE wq_tasks DROP CONSTRAINT wq_tasks_state_check",
        """ALTER TABLE wq_tasks ADD CONSTRAINT wq_tasks_state_check CHECK (state IN
            ('scheduled', 'submitted', 'queued', 'retrying', 'succeeded', 'failed', 'dead',
             'cancelled'))""",
        """ALTER TABLE wq_tasks
            ADD COLUMN priority smallint NOT NULL DEFAULT 0,
            ADD COLUMN eta timestamptz,
            ADD COLUMN schedule_id uuid,
            ADD COLUMN cancel_requested_at timestamptz,
            ADD COLUMN progress real,
            ADD COLUMN progress_note text,
            ADD COLUMN progress_at timestamptz""",
        "CREATE INDEX wq_tasks_due ON wq_tasks (eta) WHERE state = 'scheduled'",
        "CREATE INDEX wq_tasks_by_submitted ON wq_tasks (submitted_at, task_id)",
        "CREATE INDEX wq_tasks_by_state ON wq_tasks (state, submitted_at)",
        "CREATE INDEX wq_tasks_by_type ON wq_tasks (task_type, submitted_at)",
        """CREATE TABLE wq_schedules (
            schedule_id uuid PRIMARY KEY,
            name text NOT NULL UNIQUE,
            cron text NOT NULL,
            timezone text NOT NULL,
            task_type text NOT NULL,
            params jsonb NOT NULL,
            priority smallint NOT NULL DEFAULT 0,
            paused boolean NOT NULL DEFAULT false,
            next_fire_at timestamptz NOT NULL,
            last_fire_at timestamptz,
            last_task_id uuid,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        "CREATE INDEX wq_schedules_due ON wq_schedules (next_fire_at) WHERE NOT paused",
        """CREATE TABLE wq_executors (
            executor_id text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            slots integer NOT NULL,
            task_types jsonb NOT NULL,
            started_at timestamptz NOT NULL,
            last_seen_at timestamptz NOT NULL,
            stopped_at timestamptz,
            current_tasks jsonb NOT NULL,
            processed bigint NOT NULL DEFAULT 0,
            failed bigint NOT NULL DEFAULT 0,
            cpu_percent real,
            rss_bytes bigint,
            info jsonb NOT NULL
        )""",
        """CREATE TABLE wq_task_types (
            task_type text PRIMARY KEY,
            params_schema jsonb NOT NULL,
            description text,
            options jsonb NOT NULL,
            published_by text NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
    ),
    # Retries wait in the store, not in broker queues: the dispatcher releases them when due;
    # the starts of each attempt are counted (only a started delivery counts to the limit).
    (
        "CREATE INDEX wq_tasks_retry_due ON wq_tasks (next_attempt_at) WHERE state = 'retrying'",
        "ALTER TABLE wq_tasks ADD COLUMN runs integer NOT NULL DEFAULT 0",
    ),
    # Version 4 (SQLite's 6): a task whose attempt an executor reported starting is running;
    # every attempt is kept, with its executor, times, outcome and error; tasks, schedules and
    # executors name their task queues.
    (
        """CREATE TABLE wq_attempts (
            task_id uuid NOT NULL,
            attempt integer NOT NULL,
            executor text,
            started_at timestamptz,
            finished_at timestamptz,
            outcome text,
            error jsonb,
            runs integer NOT NULL DEFAULT 0,
            cause text,
            caused_at timestamptz,
            PRIMARY KEY (task_id, attempt)
        )""",
        "ALTER TABLE wq_tasks ADD COLUMN queue text NOT NULL DEFAULT 'default'",
        "ALTER TABLE wq_tasks ADD COLUMN cancel_requested_via text",
        "ALTER TABLE wq_schedules ADD COLUMN queue text NOT NULL DEFAULT 'default'",
        "ALTER TABLE wq_executors ADD COLUMN queues jsonb NOT NULL DEFAULT '[]'",
        # The retention sweep deletes finished tasks oldest first.
        "CREATE INDEX wq_tasks_finished ON wq_tasks (finished_at) WHERE finished_at IS NOT NULL",
        "ALTER TABLE wq_tasks DROP CONSTRAINT wq_tasks_state_check",
        """ALTER TABLE wq_tasks ADD CONSTRAINT wq_tasks_state_check CHECK (state IN
            ('scheduled', 'submitted', 'queued', 'running', 'retrying', 'succeeded', 'failed',
             'dead', 'cancelled'))""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS wq_schema_version (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
# Two-key advisory lock: this constant ("wq") and the schema, so replicas sharing a schema
# migrate it once while stores in other schemas of the database do not wait for each other.
# https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS
_MIGRATION_LOCK = 0x7771
_LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))"


def migrate(db: Connection[DictRow]) -> int | None:
    """Bring the schema in ``db``'s search path to ``SCHEMA_VERSION``; the version it had.

    Returns None when there was nothing to do. ``db`` is in autocommit mode; psycopg errors
    propagate, for the store to wrap.

    Raises:
        StoreError: the schema is newer than this code.
    """
    if schema_version(db) == SCHEMA_VERSION:
        return None  # nothing to write or lock: a read-only role opens a current store
    # Replicas starting at once queue on the lock; the version is read again under it, so
    # the first one migrates and the others find nothing left to do.
    with db.transaction():
        db.execute(_LOCK_SCHEMA, (_MIGRATION_LOCK,))
        db.execute(_VERSION_TABLE)
        version = schema_version(db)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step - 1]:
                db.execute(statement)
            db.execute("INSERT INTO wq_schema_version (version) VALUES (%s)", (step,))
    return version if version < SCHEMA_VERSION else None


def schema_version(db: Connection[DictRow]) -> int:
    """The highest applied version, 0 for an empty schema; ``StoreError`` if too new."""
    present = db.execute("SELECT to_regclass('wq_schema_version') AS t").fetchone()
    if present is None or present["t"] is None:
        return 0
    row = db.execute("SELECT max(version) AS v FROM wq_schema_version").fetchone()
    version = int(row["v"]) if row is not None and row["v"] is not None else 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"task store schema {version} is newer than this code knows")
    return version
