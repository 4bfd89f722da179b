"""Validating submissions against the task types executors published (JSON Schema).

Used when the dispatcher has no task module of its own. Validators are compiled once per
schema and kept until the schema changes, so a submit costs one validation, not a compile.
Their regular expressions run on RE2 (``dispatcher.safe_schemas``): a published schema cannot
make a submit take exponential time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jsonschema import exceptions as schema_errors

from common import DEFAULT_QUEUE, InvalidParams, JsonValue, UnknownTaskType, check_queue_name
from common.logging import get_logger
from dispatcher.safe_schemas import safe_validator
from dispatcher.store.records import TaskTypeRecord

log = get_logger(__name__)

# How long a catalog trusts what it read before reading the store again; an unknown type
# triggers a read at once (a type just deployed), at most once per this interval.
CATALOG_MAX_AGE_S = 5.0


class TaskTypeCatalog:
    """Compiled validators of the published task types."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loaded_at: float | None = None
        self._schemas: dict[str, dict[str, JsonValue]] = {}
        self._validators: dict[str, Any] = {}
        self._queues: dict[str, str] = {}

    def load(self, records: Sequence[TaskTypeRecord]) -> None:
        """Take the store's task types; only changed schemas are compiled again."""
        self._loaded_at = self._clock()
        seen = set()
        self._queues = declared_queues(records)
        for record in records:
            seen.add(record.name)
            if self._schemas.get(record.name) == record.params_schema:
                continue
            try:
                validator = safe_validator(record.params_schema)
            except schema_errors.SchemaError as exc:
                log.warning("task_type_schema_invalid", task_type=record.name, error=exc.message)
                continue
            self._validators[record.name] = validator
            self._schemas[record.name] = record.params_schema
        for gone in set(self._schemas) - seen:
            del self._schemas[gone], self._validators[gone]

    def is_stale(self, *, max_age: float = CATALOG_MAX_AGE_S) -> bool:
        """Whether the catalog should be read from the store again."""
        return self._loaded_at is None or self._clock() - self._loaded_at >= max_age

    def knows(self, task_type: str) -> bool:
        """Whether ``task_type`` has a published schema."""
        return task_type in self._validators

    def __len__(self) -> int:
        return len(self._validators)

    def queue_of(self, task_type: str) -> str | None:
        """The task queue ``task_type``'s executors declared, None if it is not published."""
        return self._queues.get(task_type)

    def validate(self, task_type: str, params: Mapping[str, JsonValue]) -> None:
        """Raise ``UnknownTaskType`` or ``InvalidParams`` (with every error) if refused.

        With no published types at all, anything passes: the set of types is unknown.
        """
        if not self._validators:
            return
        validator = self._validators.get(task_type)
        if validator is None:
            raise UnknownTaskType(task_type)
        errors = sorted(validator.iter_errors(dict(params)), key=lambda e: list(e.path))
        if errors:
            raise InvalidParams(task_type, [_error(e) for e in errors])


def _error(error: schema_errors.ValidationError) -> dict[str, object]:
    # The same keys as pydantic's errors (loc, msg, type), so clients handle one shape.
    return {"loc": list(error.absolute_path), "msg": error.message, "type": str(error.validator)}


def declared_queues(records: Sequence[TaskTypeRecord]) -> dict[str, str]:
    """The task queue each published task type declares (``default`` for none or a bad one)."""
    return {record.name: _declared_queue(record) for record in records}


def _declared_queue(record: TaskTypeRecord) -> str:
    queue = record.options.get("queue", DEFAULT_QUEUE)
    try:
        return check_queue_name(queue)  # type: ignore[arg-type]
    except ValueError:
        log.warning("task_type_queue_invalid", task_type=record.name)
        return DEFAULT_QUEUE
