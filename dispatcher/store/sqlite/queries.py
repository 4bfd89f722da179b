"""The SQLite dialect's statements (``Queries``), beside PostgreSQL's in the same order.

Writers hold the file's write lock for their whole transaction (``BEGIN IMMEDIATE``), so a
condition read inside it holds until the commit: no statement here needs a row lock. List
parameters arrive as JSON arrays and are read with ``json_each``; times are fixed-width UTC
text, compared as text (schema 7 rewrote older rows' submission times to it), so that the
listing walks its index.
"""

from __future__ import annotations

from dispatcher.store.rows import (
    EXECUTOR_COLUMNS,
    MESSAGE_COLUMNS,
    NEXT_ATTEMPT_COLUMNS,
    TASK_TYPE_COLUMNS,
)
from dispatcher.store.sql import queries as sql
from dispatcher.store.sql.queries import Queries


def _param(name: str) -> str:
    return f":{name}"


QUERIES = Queries(
    # Tasks
    add_task="""
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                   priority, queue, eta, schedule_id)
VALUES (:task_id, :task_type, :params, :state, :attempt, :submitted_at, :idempotency_key,
        :priority, :queue, :eta, :schedule_id)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id
""",
    holders_of_keys="""
SELECT idempotency_key, task_id FROM tasks
WHERE idempotency_key IN (SELECT value FROM json_each(:keys))
""",
    mark_queued="""
UPDATE tasks SET state = 'queued', queued_at = :queued_at
WHERE task_id = :task_id AND state = 'submitted'
""",
    unconfirmed=f"""
SELECT {MESSAGE_COLUMNS} FROM tasks
WHERE state = 'submitted' AND submitted_at < :before AND (eta IS NULL OR eta < :before)
ORDER BY submitted_at LIMIT :limit
""",
    get_many="SELECT * FROM tasks WHERE task_id IN (SELECT value FROM json_each(:ids))",
    # Plain text comparison: rows written since times were stored as UTC text compare as
    # instants, and the counted window is always recent.
    count_submitted="""
SELECT task_type, count(*) AS n FROM tasks
WHERE submitted_at > :after AND submitted_at <= :until GROUP BY task_type
""",
    list_tasks="""
SELECT * FROM tasks {where}
ORDER BY submitted_at DESC, task_id DESC LIMIT :limit
""",
    count_tasks="SELECT count(*) AS n FROM tasks {where}",
    tasks_in_states="state IN (SELECT value FROM json_each(:states))",
    tasks_in_state="state = :state",
    tasks_of_type="task_type = :task_type",
    tasks_in_queue="queue = :queue",
    tasks_on_executor="executor = :executor",
    # LIKE ignores the case of ASCII letters in SQLite.
    tasks_with_error="json_extract(error, '$.message') LIKE :error_like ESCAPE '\\'",
    tasks_submitted_after="submitted_at > :submitted_after",
    tasks_submitted_before="submitted_at < :submitted_before",
    # Row values compare term by term (and walk the tasks_by_submitted index); ids in their
    # lower-case text form sort as PostgreSQL's uuids do.
    tasks_after_position="(submitted_at, task_id) < (:after_submitted_at, :after_task_id)",
    # Outcomes: the first final outcome wins, whichever attempt it comes from: the WHERE clause
    # makes a result for a task that already has one (a redelivered task that ran twice) a
    # no-op, and keeps a late "retrying" report of an earlier attempt from moving a later
    # attempt back.
    record_result=f"""
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                   finished_at, next_attempt_at, executor, result, error, redelivered)
VALUES (:task_id, :task_type, '{{}}', :state, :attempt, :started_at, :started_at,
        :finished_at, :next_attempt_at, :executor, :result, :error, :redelivered)
ON CONFLICT (task_id) DO UPDATE SET
    {sql.set_from_excluded(sql.RESULT_COLUMNS)}
WHERE tasks.state IN {sql.OPEN_STATES}
    AND (excluded.state <> 'retrying' OR excluded.attempt >= tasks.attempt)""",
    count_duplicate_result="""
UPDATE tasks SET duplicate_results = duplicate_results + 1 WHERE task_id = :task_id
""",
    record_replay="""
INSERT INTO tasks (task_id, task_type, params, state, attempt, submitted_at, queue)
VALUES (:task_id, :task_type, :params, 'submitted', :attempt, :submitted_at, :queue)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queue = excluded.queue, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = 0, runs = 0
WHERE tasks.state = 'dead'
""",
    # A scheduled or retrying task has no message on the broker, so no executor needs telling:
    # it is cancelled here and now. Every right-hand side reads the row as it was before the update.
    request_cancel=f"""
UPDATE tasks SET
    cancel_requested_at = COALESCE(cancel_requested_at, :cancel_requested_at),
    cancel_requested_via = CASE WHEN cancel_requested_at IS NULL THEN :via
                                ELSE cancel_requested_via END,
    finished_at = CASE WHEN state IN ('scheduled', 'retrying') THEN :cancel_requested_at
                       ELSE finished_at END,
    next_attempt_at = CASE WHEN state = 'retrying' THEN NULL ELSE next_attempt_at END,
    state = CASE WHEN state IN ('scheduled', 'retrying') THEN 'cancelled' ELSE state END
WHERE task_id = :task_id AND state NOT IN {sql.FINAL_STATES}
""",
    # Progress never moves backwards in time (reports travel unordered across executors and
    # redeliveries), and a report that arrives after the outcome is dropped.
    record_progress=f"""
UPDATE tasks SET progress = :progress, progress_note = :progress_note, progress_at = :progress_at
WHERE task_id = :task_id AND state NOT IN {sql.FINAL_STATES}
    AND (progress_at IS NULL OR progress_at < :progress_at)
""",
    # A start counts towards the delivery limit only for the attempt the task is on, and only
    # while that attempt is open: a late notice changes nothing.
    record_start="""
UPDATE tasks SET state = 'running', runs = runs + 1, started_at = :started_at,
    executor = :executor
WHERE task_id = :task_id AND attempt = :attempt AND state IN ('submitted', 'queued', 'running')
RETURNING runs
""",
    # Attempts: a start notice opens (or re-opens) its attempt; the first outcome closes it.
    start_attempt="""
INSERT INTO attempts (task_id, attempt, executor, started_at, runs)
VALUES (:task_id, :attempt, :executor, :started_at, 1)
ON CONFLICT (task_id, attempt) DO UPDATE SET
    executor = excluded.executor, started_at = excluded.started_at, runs = attempts.runs + 1
WHERE attempts.outcome IS NULL
""",
    end_attempt="""
INSERT INTO attempts (task_id, attempt, executor, started_at, finished_at, outcome, error)
VALUES (:task_id, :attempt, :executor, :started_at, :finished_at,
        :outcome, :error)
ON CONFLICT (task_id, attempt) DO UPDATE SET
    executor = excluded.executor, started_at = excluded.started_at,
    finished_at = excluded.finished_at, outcome = excluded.outcome, error = excluded.error
WHERE attempts.outcome IS NULL
""",
    attempts_of="SELECT * FROM attempts WHERE task_id = :task_id ORDER BY attempt",
    # Retention: oldest first, a batch at a time (each its own short write transaction). The
    # index is named: left to itself the planner scans every task of the state and sorts them,
    # once per batch, which makes a million-row sweep quadratic (bench/retention.py).
    prune_tasks="""
DELETE FROM tasks WHERE task_id IN (
    SELECT task_id FROM tasks INDEXED BY tasks_finished
    WHERE finished_at < :before AND state IN (SELECT value FROM json_each(:states))
    ORDER BY finished_at LIMIT :limit)
RETURNING task_id
""",
    count_prunable="""
SELECT count(*) AS n FROM tasks
WHERE finished_at < :before AND state IN (SELECT value FROM json_each(:states))
""",
    prune_attempts="DELETE FROM attempts WHERE task_id IN (SELECT value FROM json_each(:ids))",
    # Ranks per bucket by window functions (SQLite has no percentile aggregate); tasks that
    # never started rank apart and count for neither percentile.
    activity="""
WITH finished AS (
    SELECT CAST((julianday(finished_at) - julianday(:since)) * 86400.0 / :bucket_s AS INTEGER)
               AS bucket,
           state = 'succeeded' AS ok,
           (julianday(finished_at) - julianday(started_at)) * 86400.0 AS duration
    FROM tasks INDEXED BY tasks_finished
    WHERE finished_at >= :since AND state IN ('succeeded', 'failed', 'dead')
), ranked AS (
    SELECT bucket, ok, duration,
           row_number() OVER (PARTITION BY bucket, duration IS NULL ORDER BY duration) AS rn,
           count(duration) OVER (PARTITION BY bucket) AS n
    FROM finished
)
SELECT bucket, sum(ok) AS succeeded, sum(NOT ok) AS failed,
       max(CASE WHEN duration IS NOT NULL AND rn = (n * 50 + 99) / 100 THEN duration END) AS p50,
       max(CASE WHEN duration IS NOT NULL AND rn = (n * 95 + 99) / 100 THEN duration END) AS p95
FROM ranked GROUP BY bucket ORDER BY bucket
""",
    prune_executors="DELETE FROM executors WHERE last_seen_at < :before RETURNING executor_id",
    reschedule_task="""
UPDATE tasks SET eta = :eta WHERE task_id = :task_id AND state = 'scheduled' RETURNING *
""",
    # A retry by hand: the next attempt, waiting its outbox age from now (its eta).
    retry_task=f"""
UPDATE tasks SET state = 'submitted', attempt = attempt + 1, eta = :eta, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = 0, runs = 0, cancel_requested_at = NULL,
    cancel_requested_via = NULL,
    progress = NULL, progress_note = NULL, progress_at = NULL
WHERE task_id = :task_id AND state IN ('failed', 'dead', 'cancelled')
RETURNING {MESSAGE_COLUMNS}
""",
    cause_attempt="""
INSERT INTO attempts (task_id, attempt, cause, caused_at)
VALUES (:task_id, :attempt, :cause, :caused_at)
ON CONFLICT (task_id, attempt) DO NOTHING
""",
    # Fleet
    # The newest heartbeat per executor wins, whatever the order they arrive in.
    record_heartbeat=sql.upsert(
        "executors",
        EXECUTOR_COLUMNS,
        _param,
        where="excluded.last_seen_at >= executors.last_seen_at",
    ),
    list_executors="SELECT * FROM executors ORDER BY executor_id",
    # The publisher of a task type owns it while it is live: another executor's record is
    # taken only once that one has stopped or gone silent (or with no live_since at all).
    publish_task_type=sql.upsert(
        "task_types",
        TASK_TYPE_COLUMNS,
        _param,
        where="""task_types.published_by = excluded.published_by
    OR :live_since IS NULL
    OR NOT EXISTS (
        SELECT 1 FROM executors live
        WHERE live.executor_id = task_types.published_by AND live.stopped_at IS NULL
            AND live.last_seen_at >= :live_since)""",
    )
    + "\nRETURNING task_type",
    list_task_types="SELECT * FROM task_types ORDER BY task_type",
    # Schedules
    due_tasks=f"""
SELECT {MESSAGE_COLUMNS} FROM tasks WHERE state = 'scheduled' AND eta <= :now
ORDER BY eta LIMIT :limit
""",
    release_tasks="""
UPDATE tasks SET state = 'submitted', eta = :eta
WHERE task_id IN (SELECT value FROM json_each(:ids)) AND state = 'scheduled'
""",
    due_retries=f"""
SELECT {NEXT_ATTEMPT_COLUMNS} FROM tasks WHERE state = 'retrying' AND next_attempt_at <= :now
ORDER BY next_attempt_at LIMIT :limit
""",
    release_retries="""
UPDATE tasks SET state = 'submitted', attempt = attempt + 1, eta = :eta, next_attempt_at = NULL,
    runs = 0
WHERE task_id IN (SELECT value FROM json_each(:ids)) AND state = 'retrying'
""",
    add_schedule="""
INSERT INTO schedules (schedule_id, name, cron, timezone, task_type, params, priority, queue,
                       paused, next_fire_at, created_at, updated_at)
VALUES (:schedule_id, :name, :cron, :timezone, :task_type, :params, :priority, :queue, :paused,
        :next_fire_at, :created_at, :updated_at)
ON CONFLICT (name) DO NOTHING
""",
    list_schedules="SELECT * FROM schedules ORDER BY name",
    get_schedule="SELECT * FROM schedules WHERE name = :name",
    set_schedule_paused="""
UPDATE schedules SET paused = :paused, next_fire_at = coalesce(:next_fire_at, next_fire_at),
    updated_at = :updated_at
WHERE name = :name RETURNING *
""",
    update_schedule="""
UPDATE schedules SET cron = :cron, timezone = :timezone, params = :params, priority = :priority,
    queue = :queue, paused = :paused, next_fire_at = :next_fire_at, updated_at = :updated_at
WHERE name = :name AND updated_at = :read_at RETURNING *
""",
    delete_schedule="DELETE FROM schedules WHERE name = :name",
    due_schedules="""
SELECT * FROM schedules WHERE paused = 0 AND next_fire_at <= :now
ORDER BY next_fire_at LIMIT :limit
""",
    advance_schedule="""
UPDATE schedules SET next_fire_at = :next_fire_at, last_fire_at = :last_fire_at,
    last_task_id = :last_task_id, updated_at = :updated_at
WHERE schedule_id = :schedule_id AND next_fire_at = :last_fire_at AND paused = 0
""",
)
