"""Cron schedules: validate them, compute fire times, and manage them in the task store.

Fire times come from croniter on aware datetimes in the schedule's IANA time zone, so a
schedule follows the wall clock there across DST changes; the store keeps them in UTC.

Missed fire times (every dispatcher was down, or the schedule waited behind others) are not
made up one by one: a due schedule fires once, for the earliest fire time it missed, and its
next fire time is the first one after now.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from common import InvalidSchedule, JsonValue, TaskMessage, TaskRegistry
from common.logging import get_logger
from dispatcher.fleet import Fleet
from dispatcher.requests import TaskRequest, build_task
from dispatcher.service import Dispatcher
from dispatcher.store.protocol import TaskStore
from dispatcher.store.records import ScheduleRecord

log = get_logger(__name__)

Clock = Callable[[], datetime]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

CRON_HELP = """\
cron expressions:
  five fields:  MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK       e.g. "*/15 9-17 * * mon-fri"
  six fields:   SECOND MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK (seconds first, as in
                Quartz; e.g. "*/10 * * * * *" fires every 10 seconds)
  or one of @yearly @monthly @weekly @daily @hourly
  Each field takes *, numbers, ranges a-b, lists a,b and steps */n; months and days of the
  week also take names (jan, mon). When both day fields are restricted, either may match.
time zone:
  --tz takes an IANA name (Europe/Berlin, America/New_York; default UTC). Fire times follow
  the wall clock there: across a DST change a daily 09:00 stays at 09:00 local time; a time
  that does not exist that day (skipped by the clock change) fires at the next one that does.
missed fire times:
  while no dispatcher serve runs, nothing fires; when one starts, each schedule that missed
  fire times fires once (not once per missed time) and then continues on its cron times.
"""


def validate_cron(expression: str) -> str:
    """The expression, normalised; ``InvalidSchedule`` saying what is wrong with it."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise InvalidSchedule("cron", f"unknown alias {text!r}; use one of {_ALIASES}")
        return text.lower()
    fields = len(text.split())
    if fields not in (5, 6):
        raise InvalidSchedule(
            "cron", f"{text!r} has {fields} fields; expected 5 (minute first) or 6 (second first)"
        )
    if not croniter.is_valid(text, second_at_beginning=fields == 6):
        raise InvalidSchedule("cron", f"{text!r} is not a valid cron expression")
    return text


def validate_zone(name: str) -> ZoneInfo:
    """The IANA time zone called ``name``; ``InvalidSchedule`` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule("timezone", f"unknown IANA time zone {name!r}") from exc


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``, in UTC."""
    seconds_first = len(cron.split()) == 6
    local = after.astimezone(validate_zone(timezone))
    upcoming = croniter(cron, local, second_at_beginning=seconds_first).get_next(datetime)
    assert isinstance(upcoming, datetime)
    return upcoming.astimezone(UTC)


def following_fire_time(schedule: ScheduleRecord, now: datetime) -> datetime:
    """Where a due schedule moves on to: the first fire time after both ``now`` and the one
    it fires for, so that missed fire times collapse into the one firing."""
    return next_fire_time(schedule.cron, schedule.timezone, max(now, schedule.next_fire_at))


def fire_idempotency_key(schedule_id: UUID, fire_at: datetime) -> str:
    """One key per schedule and fire time: the store refuses a second task for it."""
    return f"schedule:{schedule_id}:{fire_at.astimezone(UTC).isoformat(timespec='microseconds')}"


class ScheduleBook:
    """Creates, lists, pauses, resumes and deletes schedules; finds and fires due ones.

    ``ScheduleBook.of(dispatcher)`` shares the dispatcher's store, registry, clock and fleet.
    Without a registry, a ``fleet`` validates new schedules against the task types executors
    published, as submissions are.
    """

    def __init__(
        self,
        store: TaskStore,
        registry: TaskRegistry | None,
        clock: Clock,
        *,
        fleet: Fleet | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        self._store = store
        self._max_body_bytes = max_body_bytes
        self._registry = registry
        self._clock = clock
        self._fleet = fleet

    @classmethod
    def of(cls, dispatcher: Dispatcher) -> ScheduleBook:
        """The schedules in ``dispatcher``'s store, validated as its submissions are."""
        return cls(
            dispatcher.store,
            dispatcher.registry,
            dispatcher.clock,
            fleet=dispatcher.fleet,
            max_body_bytes=dispatcher.max_body_bytes,
        )

    async def create(
        self,
        name: str,
        cron: str,
        task_type: str,
        params: Mapping[str, JsonValue] | None = None,
        *,
        timezone: str = "UTC",
        priority: int = 0,
        paused: bool = False,
        queue: str | None = None,
    ) -> ScheduleRecord:
        """Validate and record a schedule; its first fire time is the first after now.

        Its tasks go to ``queue``, else to the queue its task type declares (as now known).

        Raises:
            InvalidSchedule: bad name, cron expression or time zone.
            UnknownTaskType, InvalidParams: the task would be refused at submit.
            ScheduleExists: the name is taken.
        """
        if not re.fullmatch(NAME_PATTERN, name):
            raise InvalidSchedule("name", f"{name!r} does not match {NAME_PATTERN}")
        cron = validate_cron(cron)
        validate_zone(timezone)
        now = self._clock()
        request = TaskRequest(task_type, dict(params or {}), priority=priority, queue=queue)
        task = await self._validated(request, now)
        schedule = ScheduleRecord(
            schedule_id=uuid4(),
            name=name,
            cron=cron,
            timezone=timezone,
            task_type=task.task_type,
            params=task.params,
            priority=task.priority,
            queue=task.queue,
            paused=paused,
            next_fire_at=next_fire_time(cron, timezone, now),
            created_at=now,
            updated_at=now,
        )
        await self._store.add_schedule(schedule)
        log.info("schedule_created", schedule=name, cron=cron, timezone=timezone)
        return schedule

    async def update(
        self,
        name: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        params: Mapping[str, JsonValue] | None = None,
        priority: int | None = None,
        queue: str | None = None,
        paused: bool | None = None,
    ) -> ScheduleRecord:
        """Edit a schedule: each field given replaces its value, validated as at creation.

        A new cron or time zone, or a resume, moves the next fire time to the first after now;
        otherwise it stays. ``ScheduleConflict`` when another edit landed in between.
        """
        current = await self._store.get_schedule(name)
        now = self._clock()
        cron = validate_cron(cron) if cron is not None else current.cron
        timezone = timezone if timezone is not None else current.timezone
        validate_zone(timezone)
        request = TaskRequest(
            current.task_type,
            dict(params if params is not None else current.params),
            priority=priority if priority is not None else current.priority,
            queue=queue if queue is not None else current.queue,
        )
        task = await self._validated(request, now)
        paused = paused if paused is not None else current.paused
        moved = (cron, timezone) != (current.cron, current.timezone)
        resumed = current.paused and not paused
        upcoming = next_fire_time(cron, timezone, now) if moved or resumed else current.next_fire_at
        edited = current.model_copy(
            update={
                "cron": cron,
                "timezone": timezone,
                "params": task.params,
                "priority": task.priority,
                "queue": task.queue,
                "paused": paused,
                "next_fire_at": upcoming,
                "updated_at": now,
            }
        )
        schedule = await self._store.update_schedule(edited, read_at=current.updated_at)
        log.info("schedule_updated", schedule=name, next_fire_at=upcoming.isoformat())
        return schedule

    async def run_now(self, name: str) -> UUID:
        """Fire the schedule once now, outside its cron times; returns the task's id.

        The task is recorded as due now, as a delayed task whose time has come: ``dispatcher
        serve`` publishes it at its next pass (within ``WQ_DISPATCHER_SCHEDULER_INTERVAL``),
        so this needs no broker. The schedule's own fire times are not moved.
        """
        schedule = await self._store.get_schedule(name)
        now = self._clock()
        task = await self._validated(_request(schedule), now)
        (task_id,) = await self._store.add_scheduled([task], [now])
        log.info("schedule_run_now", schedule=name, task_id=str(task_id))
        return task_id

    async def _validated(self, request: TaskRequest, now: datetime) -> TaskMessage:
        """The task ``request`` makes, validated exactly like a submission, so that a
        schedule never fires a refused task."""
        if self._registry is None and self._fleet is not None:
            await self._fleet.validate([(request.task_type, dict(request.params))])
        return build_task(
            request,
            self._registry,
            lambda: now,
            max_body_bytes=self._max_body_bytes,
            declared_queue=self._fleet.queue_of if self._fleet is not None else lambda _: None,
        )

    async def all(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        return await self._store.list_schedules()

    async def get(self, name: str) -> ScheduleRecord:
        """The schedule called ``name``, or ``ScheduleNotFound``."""
        return await self._store.get_schedule(name)

    async def pause(self, name: str) -> ScheduleRecord:
        """Stop firing until resumed."""
        schedule = await self._store.set_schedule_paused(
            name, paused=True, next_fire_at=None, at=self._clock()
        )
        log.info("schedule_paused", schedule=name)
        return schedule

    async def resume(self, name: str) -> ScheduleRecord:
        """Fire again from the next fire time after now: the paused time is not made up."""
        current = await self._store.get_schedule(name)
        now = self._clock()
        upcoming = next_fire_time(current.cron, current.timezone, now)
        schedule = await self._store.set_schedule_paused(
            name, paused=False, next_fire_at=upcoming, at=now
        )
        log.info("schedule_resumed", schedule=name, next_fire_at=upcoming.isoformat())
        return schedule

    async def delete(self, name: str) -> None:
        """Delete the schedule; tasks it already submitted are kept."""
        await self._store.delete_schedule(name)
        log.info("schedule_deleted", schedule=name)

    async def fire_due(self, limit: int) -> list[TaskMessage]:
        """Record one task per due schedule; returns those this dispatcher recorded.

        The caller publishes them. A schedule another replica fired first records nothing.
        """
        now = self._clock()
        fired: list[TaskMessage] = []
        for schedule in await self._store.due_schedules(now, limit):
            task = _build(schedule, now)
            key = fire_idempotency_key(schedule.schedule_id, schedule.next_fire_at)
            upcoming = following_fire_time(schedule, now)
            if await self._store.fire_schedule(schedule, upcoming, task, key):
                log.info(
                    "schedule_fired",
                    schedule=schedule.name,
                    task_id=str(task.task_id),
                    fire_at=schedule.next_fire_at.isoformat(),
                    next_fire_at=upcoming.isoformat(),
                )
                fired.append(task)
        return fired


def _request(schedule: ScheduleRecord) -> TaskRequest:
    """The task the schedule submits at each fire."""
    return TaskRequest(
        schedule.task_type, schedule.params, priority=schedule.priority, queue=schedule.queue
    )


def _build(schedule: ScheduleRecord, now: datetime) -> TaskMessage:
    return build_task(_request(schedule), None, lambda: now)


async def run_due(dispatcher: Dispatcher, book: ScheduleBook, *, limit: int) -> int:
    """One scheduler pass: fire due schedules and publish their tasks; returns how many.

    Safe with any number of dispatcher replicas: each fire time is recorded by exactly one.
    (Delayed tasks and retries are released by every dispatcher that records results.)
    """
    fired = await book.fire_due(limit)
    return await dispatcher.publish_recorded(fired) if fired else 0
