"""The PostgreSQL dialect's statements (``Queries``), beside SQLite's in the same order.

Replicas write at once, so the statements that read a condition and then act on it take row
locks, always in one order (by id, by key) so that two replicas wait for each other instead of
deadlocking; under READ COMMITTED a locked row's condition is re-checked against the committed
row. https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED
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
    return f"%({name})s"


QUERIES = Queries(
    # Tasks
    add_task="""
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, idempotency_key,
                      priority, queue, eta, schedule_id)
VALUES (%(task_id)s, %(task_type)s, %(params)s, %(state)s, %(attempt)s, %(submitted_at)s,
        %(idempotency_key)s, %(priority)s, %(queue)s, %(eta)s, %(schedule_id)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING task_id
""",
    holders_of_keys="""
SELECT idempotency_key, task_id FROM wq_tasks WHERE idempotency_key = ANY(%(keys)s)
""",
    # Run for each id in id order, so replicas lock rows in one order; an UPDATE that waited
    # for a row re-checks its state against the committed row, so an outcome is never
    # overwritten.
    mark_queued="""
UPDATE wq_tasks SET state = 'queued', queued_at = %(queued_at)s
WHERE task_id = %(task_id)s AND state = 'submitted'
""",
    unconfirmed=f"""
SELECT {MESSAGE_COLUMNS} FROM wq_tasks
WHERE state = 'submitted' AND submitted_at < %(before)s AND (eta IS NULL OR eta < %(before)s)
ORDER BY submitted_at LIMIT %(limit)s
""",
    # One array parameter, however many ids: PostgreSQL has no bound-parameter limit here.
    get_many="SELECT * FROM wq_tasks WHERE task_id = ANY(%(ids)s)",
    count_submitted="""
SELECT task_type, count(*) AS n FROM wq_tasks
WHERE submitted_at > %(after)s AND submitted_at <= %(until)s GROUP BY task_type
""",
    list_tasks="""
SELECT * FROM wq_tasks {where} ORDER BY submitted_at DESC, task_id DESC LIMIT %(limit)s
""",
    count_tasks="SELECT count(*) AS n FROM wq_tasks {where}",
    tasks_in_states="state = ANY(%(states)s)",
    tasks_in_state="state = %(state)s",
    tasks_of_type="task_type = %(task_type)s",
    tasks_in_queue="queue = %(queue)s",
    tasks_on_executor="executor = %(executor)s",
    # ILIKE ignores case (all letters, not only ASCII, but never less than SQLite's LIKE).
    tasks_with_error="error->>'message' ILIKE %(error_like)s ESCAPE '\\'",
    tasks_submitted_after="submitted_at > %(submitted_after)s",
    tasks_submitted_before="submitted_at < %(submitted_before)s",
    # A row comparison: the keyset condition in one term (uuid order is byte order, the same as
    # SQLite's order of the lower-case text form).
    tasks_after_position=("(submitted_at, task_id) < (%(after_submitted_at)s, %(after_task_id)s)"),
    # Outcomes: as in SQLite, the first final outcome wins and a late "retrying" report of an
    # earlier attempt never moves a later attempt back. ON CONFLICT locks the row even when the
    # WHERE is false, so the duplicate count that follows is exact too.
    record_result=f"""
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, started_at,
                      finished_at, next_attempt_at, executor, result, error, redelivered)
VALUES (%(task_id)s, %(task_type)s, '{{}}', %(state)s, %(attempt)s, %(started_at)s,
        %(started_at)s, %(finished_at)s, %(next_attempt_at)s, %(executor)s, %(result)s,
        %(error)s, %(redelivered)s)
ON CONFLICT (task_id) DO UPDATE SET
    {sql.set_from_excluded(sql.RESULT_COLUMNS)}
WHERE wq_tasks.state IN {sql.OPEN_STATES}
    AND (excluded.state <> 'retrying' OR excluded.attempt >= wq_tasks.attempt)""",
    count_duplicate_result="""
UPDATE wq_tasks SET duplicate_results = duplicate_results + 1 WHERE task_id = %(task_id)s
""",
    record_replay="""
INSERT INTO wq_tasks (task_id, task_type, params, state, attempt, submitted_at, queue)
VALUES (%(task_id)s, %(task_type)s, %(params)s, 'submitted', %(attempt)s, %(submitted_at)s,
        %(queue)s)
ON CONFLICT (task_id) DO UPDATE SET
    state = excluded.state, attempt = excluded.attempt, queue = excluded.queue, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = false, runs = 0
WHERE wq_tasks.state = 'dead'
""",
    request_cancel=f"""
UPDATE wq_tasks SET
    cancel_requested_at = COALESCE(cancel_requested_at, %(cancel_requested_at)s),
    cancel_requested_via = CASE WHEN cancel_requested_at IS NULL THEN %(via)s
                                ELSE cancel_requested_via END,
    finished_at = CASE WHEN state IN ('scheduled', 'retrying') THEN %(cancel_requested_at)s
                       ELSE finished_at END,
    next_attempt_at = CASE WHEN state = 'retrying' THEN NULL ELSE next_attempt_at END,
    state = CASE WHEN state IN ('scheduled', 'retrying') THEN 'cancelled' ELSE state END
WHERE task_id = %(task_id)s AND state NOT IN {sql.FINAL_STATES}
""",
    record_progress=f"""
UPDATE wq_tasks SET progress = %(progress)s, progress_note = %(progress_note)s,
    progress_at = %(progress_at)s
WHERE task_id = %(task_id)s AND state NOT IN {sql.FINAL_STATES}
    AND (progress_at IS NULL OR progress_at < %(progress_at)s)
""",
    # A start counts towards the delivery limit only for the attempt the task is on, and only
    # while that attempt is open: a late notice changes nothing.
    record_start="""
UPDATE wq_tasks SET state = 'running', runs = runs + 1, started_at = %(started_at)s,
    executor = %(executor)s
WHERE task_id = %(task_id)s AND attempt = %(attempt)s
    AND state IN ('submitted', 'queued', 'running')
RETURNING runs
""",
    # Attempts: a start notice opens (or re-opens) its attempt; the first outcome closes it.
    start_attempt="""
INSERT INTO wq_attempts (task_id, attempt, executor, started_at, runs)
VALUES (%(task_id)s, %(attempt)s, %(executor)s, %(started_at)s, 1)
ON CONFLICT (task_id, attempt) DO UPDATE SET
    executor = excluded.executor, started_at = excluded.started_at, runs = wq_attempts.runs + 1
WHERE wq_attempts.outcome IS NULL
""",
    end_attempt="""
INSERT INTO wq_attempts (task_id, attempt, executor, started_at, finished_at, outcome, error)
VALUES (%(task_id)s, %(attempt)s, %(executor)s, %(started_at)s, %(finished_at)s,
        %(outcome)s, %(error)s)
ON CONFLICT (task_id, attempt) DO UPDATE SET
    executor = excluded.executor, started_at = excluded.started_at,
    finished_at = excluded.finished_at, outcome = excluded.outcome, error = excluded.error
WHERE wq_attempts.outcome IS NULL
""",
    attempts_of="SELECT * FROM wq_attempts WHERE task_id = %(task_id)s ORDER BY attempt",
    # Retention: oldest first, a batch at a time; replicas sweeping at once skip each other's
    # rows instead of waiting for them.
    prune_tasks="""
DELETE FROM wq_tasks WHERE task_id IN (
    SELECT task_id FROM wq_tasks
    WHERE finished_at < %(before)s AND state = ANY(%(states)s)
    ORDER BY finished_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING task_id
""",
    count_prunable="""
SELECT count(*) AS n FROM wq_tasks WHERE finished_at < %(before)s AND state = ANY(%(states)s)
""",
    prune_attempts="DELETE FROM wq_attempts WHERE task_id = ANY(%(ids)s)",
    activity="""
SELECT floor(extract(epoch FROM finished_at - %(since)s) / %(bucket_s)s)::int AS bucket,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state <> 'succeeded') AS failed,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           AS p50,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           AS p95
FROM wq_tasks
WHERE finished_at >= %(since)s AND state IN ('succeeded', 'failed', 'dead')
GROUP BY 1 ORDER BY 1
""",
    prune_executors=(
        "DELETE FROM wq_executors WHERE last_seen_at < %(before)s RETURNING executor_id"
    ),
    reschedule_task="""
UPDATE wq_tasks SET eta = %(eta)s WHERE task_id = %(task_id)s AND state = 'scheduled' RETURNING *
""",
    # A retry by hand: the next attempt, waiting its outbox age from now (its eta).
    retry_task=f"""
UPDATE wq_tasks SET state = 'submitted', attempt = attempt + 1, eta = %(eta)s, queued_at = NULL,
    started_at = NULL, finished_at = NULL, next_attempt_at = NULL, executor = NULL,
    result = NULL, error = NULL, redelivered = false, runs = 0, cancel_requested_at = NULL,
    cancel_requested_via = NULL,
    progress = NULL, progress_note = NULL, progress_at = NULL
WHERE task_id = %(task_id)s AND state IN ('failed', 'dead', 'cancelled')
RETURNING {MESSAGE_COLUMNS}
""",
    cause_attempt="""
INSERT INTO wq_attempts (task_id, attempt, cause, caused_at)
VALUES (%(task_id)s, %(attempt)s, %(cause)s, %(caused_at)s)
ON CONFLICT (task_id, attempt) DO NOTHING
""",
    # Fleet
    # The newest heartbeat per executor wins, whatever the order they arrive in.
    record_heartbeat=sql.upsert(
        "wq_executors",
        EXECUTOR_COLUMNS,
        _param,
        where="excluded.last_seen_at >= wq_executors.last_seen_at",
    ),
    list_executors="SELECT * FROM wq_executors ORDER BY executor_id",
    # The publisher of a task type owns it while it is live: another executor's record is
    # taken only once that one has stopped or gone silent (or with no live_since at all).
    publish_task_type=sql.upsert(
        "wq_task_types",
        TASK_TYPE_COLUMNS,
        _param,
        where="""wq_task_types.published_by = excluded.published_by
    OR %(live_since)s::timestamptz IS NULL
    OR NOT EXISTS (
        SELECT 1 FROM wq_executors live
        WHERE live.executor_id = wq_task_types.published_by AND live.stopped_at IS NULL
            AND live.last_seen_at >= %(live_since)s::timestamptz)""",
    )
    + "\nRETURNING task_type",
    list_task_types="SELECT * FROM wq_task_types ORDER BY task_type",
    # Schedules. SKIP LOCKED: replicas claiming at once take disjoint rows instead of queueing
    # on each other; the rows stay locked until the release in the same transaction.
    # https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE
    due_tasks=f"""
SELECT {MESSAGE_COLUMNS} FROM wq_tasks WHERE state = 'scheduled' AND eta <= %(now)s
ORDER BY eta LIMIT %(limit)s FOR UPDATE SKIP LOCKED
""",
    release_tasks="""
UPDATE wq_tasks SET state = 'submitted', eta = %(eta)s
WHERE task_id = ANY(%(ids)s) AND state = 'scheduled'
""",
    due_retries=f"""
SELECT {NEXT_ATTEMPT_COLUMNS} FROM wq_tasks
WHERE state = 'retrying' AND next_attempt_at <= %(now)s
ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
""",
    release_retries="""
UPDATE wq_tasks SET state = 'submitted', attempt = attempt + 1, eta = %(eta)s,
    next_attempt_at = NULL, runs = 0
WHERE task_id = ANY(%(ids)s) AND state = 'retrying'
""",
    add_schedule="""
INSERT INTO wq_schedules (schedule_id, name, cron, timezone, task_type, params, priority,
                          queue, paused, next_fire_at, created_at, updated_at)
VALUES (%(schedule_id)s, %(name)s, %(cron)s, %(timezone)s, %(task_type)s, %(params)s,
        %(priority)s, %(queue)s, %(paused)s, %(next_fire_at)s, %(created_at)s, %(updated_at)s)
ON CONFLICT (name) DO NOTHING
""",
    list_schedules="SELECT * FROM wq_schedules ORDER BY name",
    get_schedule="SELECT * FROM wq_schedules WHERE name = %(name)s",
    set_schedule_paused="""
UPDATE wq_schedules SET paused = %(paused)s,
    next_fire_at = coalesce(%(next_fire_at)s, next_fire_at), updated_at = %(updated_at)s
WHERE name = %(name)s RETURNING *
""",
    update_schedule="""
UPDATE wq_schedules SET cron = %(cron)s, timezone = %(timezone)s, params = %(params)s,
    priority = %(priority)s, queue = %(queue)s, paused = %(paused)s,
    next_fire_at = %(next_fire_at)s, updated_at = %(updated_at)s
WHERE name = %(name)s AND updated_at = %(read_at)s RETURNING *
""",
    delete_schedule="DELETE FROM wq_schedules WHERE name = %(name)s",
    due_schedules="""
SELECT * FROM wq_schedules WHERE NOT paused AND next_fire_at <= %(now)s
ORDER BY next_fire_at LIMIT %(limit)s
""",
    # The schedule row's lock serialises replicas firing it: the second waits for the first to
    # commit, re-checks next_fire_at against the committed row and updates nothing.
    advance_schedule="""
UPDATE wq_schedules SET next_fire_at = %(next_fire_at)s, last_fire_at = %(last_fire_at)s,
    last_task_id = %(last_task_id)s, updated_at = %(updated_at)s
WHERE schedule_id = %(schedule_id)s AND next_fire_at = %(last_fire_at)s AND NOT paused
""",
)
