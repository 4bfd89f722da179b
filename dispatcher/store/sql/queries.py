"""The named statements a SQL dialect provides: what each must do, and the parameters it takes.

Each dialect writes every statement once in its own ``queries.py`` (its table names, its
placeholders, its locking clauses), so the two dialects read side by side; the store's logic in
``dispatcher.store.sql`` runs them by name. Parameters are named after the columns they fill
(see ``Dialect``), and a statement that returns rows names its columns as the table does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# The states a task ends in, as an SQL list: no outcome, cancel or progress changes them.
FINAL_STATES = "('succeeded', 'failed', 'dead', 'cancelled')"
# The states a result may still move a task out of.
OPEN_STATES = "('submitted', 'queued', 'running', 'retrying')"

# What a result sets on a task it may still move.
RESULT_COLUMNS = (
    *("state", "attempt", "started_at", "finished_at", "next_attempt_at", "executor"),
    *("result", "error", "redelivered"),
)


def column_list(columns: Iterable[str]) -> str:
    """``a, b, c``: the columns of an INSERT."""
    return ", ".join(columns)


def value_list(columns: Iterable[str], placeholder: Callable[[str], str]) -> str:
    """The VALUES of an INSERT of ``columns``, each spelt by the dialect's ``placeholder``."""
    return ", ".join(placeholder(column) for column in columns)


def upsert(
    table: str, columns: Sequence[str], placeholder: Callable[[str], str], *, where: str = ""
) -> str:
    """Insert a row of ``columns`` into ``table``, or update every column but the key (the
    first) of the row already there; ``where`` (a condition on both rows) may refuse the update.
    """
    return f"""
INSERT INTO {table} ({column_list(columns)})
VALUES ({value_list(columns, placeholder)})
ON CONFLICT ({columns[0]}) DO UPDATE SET
    {set_from_excluded(columns[1:])}
{f"WHERE {where}" if where else ""}"""


def set_from_excluded(columns: Iterable[str]) -> str:
    """An upsert's SET list: each of ``columns`` from the row proposed for insertion."""
    return ",\n    ".join(f"{column} = excluded.{column}" for column in columns)


@dataclass(frozen=True, slots=True, kw_only=True)
class Queries:
    """One dialect's SQL, statement by statement."""

    # Tasks ----------------------------------------------------------------------------------

    add_task: str
    """Insert a tasks row from task_id, task_type, params, state, attempt, submitted_at,
    idempotency_key, priority, eta, schedule_id; do nothing when the idempotency key is held.
    Returns task_id when it inserted the row, no row otherwise."""

    holders_of_keys: str
    """idempotency_key and task_id of the tasks holding any of ``keys`` (a list)."""

    mark_queued: str
    """Move task ``task_id`` to queued at ``queued_at`` if it is still submitted (run for each
    id of a batch, in id order)."""

    unconfirmed: str
    """The message columns of tasks still submitted, submitted before ``before`` and with no
    eta or one before ``before``, oldest submission first, at most ``limit``."""

    get_many: str
    """Whole tasks rows whose task_id is in ``ids`` (a list)."""

    count_submitted: str
    """task_type and the count ``n`` of the tasks with ``after < submitted_at <= until``, per
    type (the index on submitted_at answers it)."""

    list_tasks: str
    """Whole tasks rows matching ``{where}`` (empty, or ``WHERE`` and the conditions below
    joined by ``AND``), newest first by instant of submitted_at then task_id, at most
    ``limit``."""

    count_tasks: str
    """The number of tasks rows matching ``{where}``, as ``list_tasks`` builds it."""

    tasks_in_states: str
    """Condition: the task's state is in ``states`` (a list)."""

    tasks_in_state: str
    """Condition: ``state`` is ``state`` (one state: the index gives the order)."""

    tasks_of_type: str
    """Condition: the task's type is ``task_type``."""

    tasks_in_queue: str
    """Condition: routed to task queue ``queue``."""

    tasks_on_executor: str
    """Condition: the last attempt ran on executor ``executor``."""

    tasks_with_error: str
    """Condition: the error's message matches the LIKE pattern ``error_like`` (its escape
    character a backslash), ignoring the case of ASCII letters."""

    tasks_submitted_after: str
    """Condition: submitted strictly after the instant ``submitted_after``."""

    tasks_submitted_before: str
    """Condition: submitted strictly before the instant ``submitted_before``."""

    tasks_after_position: str
    """Condition: ``(submitted_at, task_id)`` sorts strictly before ``(after_submitted_at,
    after_task_id)`` in the listing's order (instants, then ids)."""

    # Outcomes -------------------------------------------------------------------------------

    record_result: str
    """Upsert a result: insert a row for an unknown task (params ``{}``, submitted_at =
    started_at), or update an open (submitted, queued, running, retrying) task's state, attempt,
    started_at, finished_at, next_attempt_at, executor, result, error and redelivered; but
    never move a task back with a retrying result of an earlier attempt. Affects no row
    otherwise. Must end without a semicolon: a ``RETURNING`` clause is appended."""

    count_duplicate_result: str
    """Add one to duplicate_results of ``task_id``."""

    record_replay: str
    """Upsert a dead task as submitted again: task_id, task_type, params, attempt,
    submitted_at, with its outcome columns cleared; a task that is not dead is left alone."""

    request_cancel: str
    """Set cancel_requested_at of the open task ``task_id`` (keeping an earlier one); a
    scheduled or retrying task (nothing of it is on the broker) becomes cancelled, finished at
    ``cancel_requested_at``."""

    record_start: str
    """Count one more start of the open attempt ``attempt`` of ``task_id`` (submitted, queued
    or running), setting it running with started_at and executor; returns its runs, no row if
    not counted."""

    start_attempt: str
    """Upsert the attempts row (task_id, attempt): set executor and started_at and add one to
    runs, unless that attempt already has its outcome."""

    end_attempt: str
    """Upsert the attempts row (task_id, attempt) with executor, started_at, finished_at,
    outcome and error, unless that attempt already has its outcome (the first one wins)."""

    attempts_of: str
    """Every attempts row of ``task_id``, by attempt."""

    reschedule_task: str
    """Set the eta of the scheduled task ``task_id`` to ``eta``; returns the row, no row if
    it is not scheduled."""

    retry_task: str
    """Move the failed, dead or cancelled task ``task_id`` to its next attempt, submitted
    again (its eta ``eta``, its outcome, progress and cancel request cleared); returns its
    ``MESSAGE_COLUMNS`` (the new attempt), no row if it is in another state."""

    cause_attempt: str
    """Insert the attempts row (task_id, attempt) with cause and caused_at (nothing else)."""

    record_progress: str
    """Set progress, progress_note and progress_at of the open task ``task_id`` unless its
    recorded progress_at is at or after the given one."""

    # Retention ------------------------------------------------------------------------------

    prune_tasks: str
    """Delete at most ``limit`` tasks in ``states`` (a list) finished before ``before``,
    oldest first, skipping rows another transaction holds; returns their task_id."""

    count_prunable: str
    """Count the tasks ``prune_tasks`` would delete, without a limit (column ``n``)."""

    prune_attempts: str
    """Delete every attempts row of the tasks in ``ids`` (a list)."""

    prune_executors: str
    """Delete the executors not heard from since ``before``; returns their executor_id."""

    # Activity -------------------------------------------------------------------------------

    activity: str
    """Tasks finished (succeeded, failed, dead) at or after ``since``, in buckets of
    ``bucket_s`` seconds from it: per ``bucket`` (0, 1, ...), ``succeeded``, ``failed``
    (failed or dead), and the nearest-rank ``p50`` and ``p95`` of their run time in seconds
    (finished_at - started_at, over the tasks that started), walking the finished_at index."""

    # Fleet ----------------------------------------------------------------------------------

    record_heartbeat: str
    """Upsert an executors row from every column of ``dispatcher.store.rows.heartbeat_values``
    unless the recorded last_seen_at is later."""

    list_executors: str
    """Every executors row, by executor_id."""

    publish_task_type: str
    """Upsert a task_types row from every column of ``task_type_values``, unless the row
    there was published by another executor that is live (not stopped, seen at or after
    ``live_since``; ``live_since`` NULL: no such guard). Returns task_type when it wrote."""

    list_task_types: str
    """Every task_types row, by task_type."""

    # Schedules ------------------------------------------------------------------------------

    due_tasks: str
    """The message columns of scheduled tasks whose eta is at or before ``now``, earliest eta
    first, at most ``limit``; locked for the rest of the transaction, skipping rows another
    transaction holds."""

    release_tasks: str
    """Move the still-scheduled tasks in ``ids`` (a list) to submitted, eta = ``eta``."""

    due_retries: str
    """``NEXT_ATTEMPT_COLUMNS`` of retrying tasks whose next attempt is due at ``now``,
    earliest first, at most ``limit``; locked as ``due_tasks`` locks."""

    release_retries: str
    """Move the still-retrying tasks in ``ids`` to submitted with their next attempt number,
    eta = ``eta`` (the release time)."""

    add_schedule: str
    """Insert a schedules row from every column but last_fire_at and last_task_id; do nothing
    when the name is taken."""

    list_schedules: str
    """Every schedules row, by name."""

    get_schedule: str
    """The schedules row called ``name``."""

    set_schedule_paused: str
    """Set paused, updated_at and (unless ``next_fire_at`` is null) next_fire_at of the
    schedule ``name``; returns the row as updated."""

    update_schedule: str
    """Set cron, timezone, params, priority, queue, paused, next_fire_at and updated_at of
    the schedule ``name`` if its updated_at is still ``read_at`` (no edit in between);
    returns the row as updated."""

    delete_schedule: str
    """Delete the schedule ``name``."""

    due_schedules: str
    """Schedules not paused whose next_fire_at is at or before ``now``, earliest first, at
    most ``limit``."""

    advance_schedule: str
    """Move the unpaused schedule ``schedule_id`` on to ``next_fire_at`` (with last_fire_at,
    last_task_id and updated_at) if its next_fire_at is still ``last_fire_at``."""
