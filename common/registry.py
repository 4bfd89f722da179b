"""Task types: handlers registered with a decorator, their params models and JSON Schemas.

Both services agree on this: the executor runs what is registered, and the dispatcher may load
the same module to refuse unknown types and invalid params before anything is published.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from common.errors import ConfigError, InvalidParams, PermanentTaskError, UnknownTaskType
from common.messages import TASK_TYPE_PATTERN, TaskTypeInfo
from common.topology import DEFAULT_QUEUE, check_queue_name

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task type is retried and limited.

    Attributes:
        max_retries: retries after the first attempt; 0 never retries.
        retry_backoff: seconds before the first retry; doubles per retry, with jitter.
        retry_backoff_max: the longest wait between two attempts.
        permanent: exception types that fail the task at once (``PermanentTaskError`` and
            invalid params always do).
        soft_time_limit: seconds after which the handler is told to wrap up.
        time_limit: seconds after which the attempt is abandoned and recorded as timed out.
        queue: the task queue its tasks go to unless a submission names another; executors
            consume the queues of their task types (``default``: the ``wq.tasks`` queue).
    """

    max_retries: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 600.0
    permanent: tuple[type[BaseException], ...] = ()
    soft_time_limit: float | None = None
    time_limit: float | None = None
    queue: str = DEFAULT_QUEUE

    def __post_init__(self) -> None:
        try:
            check_queue_name(self.queue)
        except ValueError as exc:
            raise ConfigError(f"queue {self.queue!r}: {exc}") from None
        if self.max_retries < 0 or self.retry_backoff <= 0 or self.retry_backoff_max <= 0:
            raise ConfigError("max_retries must be >= 0 and the backoffs > 0")
        permanent_ok = isinstance(self.permanent, tuple) and all(
            isinstance(kind, type) and issubclass(kind, BaseException) for kind in self.permanent
        )
        if not permanent_ok:
            raise ConfigError("permanent must be a tuple of exception classes")
        for limit in (self.soft_time_limit, self.time_limit):
            if limit is not None and limit <= 0:
                raise ConfigError("time limits must be > 0 seconds")

    def is_retryable(self, error: BaseException) -> bool:
        """Whether a handler's exception may succeed on a later attempt."""
        if isinstance(error, PermanentTaskError | InvalidParams):
            return False
        return not isinstance(error, self.permanent)


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A registered task type: its name, handler, params model and options."""

    name: str
    handler: Callable[..., Any]
    params_model: type[BaseModel]
    options: TaskOptions = TaskOptions()

    @property
    def is_async(self) -> bool:
        """Whether the handler is a coroutine function (runs on the loop, not in a thread)."""
        return inspect.iscoroutinefunction(self.handler)

    def validate(self, params: Mapping[str, object]) -> dict[str, Any]:
        """Validate params and return the keyword arguments for the handler."""
        try:
            model = self.params_model.model_validate(params)
        except ValidationError as exc:
            raise invalid_params(self.name, exc) from exc
        # Fields are aliased (see _params_model): hand the handler its own parameter names.
        return {
            field.alias or name: getattr(model, name)
            for name, field in type(model).model_fields.items()
        }

    @property
    def parameters(self) -> list[str]:
        """The handler's parameter names, in order."""
        return [field.alias or name for name, field in self.params_model.model_fields.items()]

    def params_schema(self) -> dict[str, Any]:
        """The params' JSON Schema, for documentation and non-Python producers."""
        return self.params_model.model_json_schema()

    def describe(self) -> TaskTypeInfo:
        """What executors publish about this task type: schema, description and options."""
        options = self.options
        return TaskTypeInfo(
            name=self.name,
            params_schema=self.params_schema(),
            description=(inspect.getdoc(self.handler) or "").strip().split("\n\n")[0] or None,
            options={
                "max_retries": options.max_retries,
                "retry_backoff": options.retry_backoff,
                "retry_backoff_max": options.retry_backoff_max,
                "permanent": [kind.__name__ for kind in options.permanent],
                "soft_time_limit": options.soft_time_limit,
                "time_limit": options.time_limit,
                "queue": options.queue,
            },
        )


def invalid_params(task_type: str, exc: ValidationError) -> InvalidParams:
    """``InvalidParams`` carrying pydantic's errors, JSON-ready and without the input values."""
    errors: list[dict[str, object]] = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return InvalidParams(task_type, errors)


class TaskRegistry:
    """A named set of task types."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}

    @overload
    def task(self, name: _F) -> _F: ...

    @overload
    def task(self, name: str | None = None, **options: Any) -> Callable[[_F], _F]: ...

    def task(self, name: str | _F | None = None, **options: Any) -> _F | Callable[[_F], _F]:
        """Register a function as the handler of task type ``name`` (default: its name).

        Works bare (``@registry.task``) or called (``@registry.task("resize", max_retries=5)``;
        the keywords are ``TaskOptions`` fields). The function's parameters, with their
        annotations and defaults, become the params model; unknown params are refused.
        """
        if callable(name):
            return self.task(None)(name)
        try:
            task_options = TaskOptions(**options)
        except TypeError as exc:
            raise ConfigError(f"unknown task option: {exc}") from exc

        def register(handler: _F) -> _F:
            task_type = name or handler.__name__
            if task_type in self._tasks:
                raise ConfigError(f"task type {task_type!r} is registered twice")
            self._tasks[task_type] = TaskDefinition(
                task_type, handler, _params_model(task_type, handler), task_options
            )
            return handler

        return register

    def get(self, task_type: str) -> TaskDefinition:
        """The definition of ``task_type``, or ``UnknownTaskType``."""
        try:
            return self._tasks[task_type]
        except KeyError:
            raise UnknownTaskType(task_type) from None

    def names(self) -> list[str]:
        """Registered task types, sorted."""
        return sorted(self._tasks)

    def queues(self) -> list[str]:
        """The task queues the registered types declare, sorted (``default`` if none)."""
        return sorted({t.options.queue for t in self._tasks.values()} or {DEFAULT_QUEUE})

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def _params_model(task_type: str, handler: Callable[..., Any]) -> type[BaseModel]:
    if not re.match(TASK_TYPE_PATTERN, task_type):
        raise ConfigError(f"task type {task_type!r} must match {TASK_TYPE_PATTERN}")
    try:
        signature = inspect.signature(handler, eval_str=True)
    except (NameError, TypeError, SyntaxError) as exc:
        raise ConfigError(f"task {task_type!r}: cannot resolve its annotations: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ConfigError(f"task {task_type!r}: parameter {param.name!r} must be named")
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        # Prefixed field names with the parameter as alias: any parameter name works, even
        # ones pydantic reserves (``json``, ``copy``) or treats as private (``_token``).
        fields[f"p_{param.name}"] = (annotation, Field(default, alias=param.name))
    model_name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]", task_type))
    try:
        return create_model(f"{model_name}Params", __config__=ConfigDict(extra="forbid"), **fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"task {task_type!r}: unusable parameter types: {exc}") from exc


def load_registry(spec: str, *, search_path: str | None = ".") -> TaskRegistry:
    """Import ``module`` or ``module:attribute`` and return its ``TaskRegistry``.

    ``search_path`` is put first on ``sys.path`` so that ``examples.tasks`` imports from the
    working directory even when run through a console script.
    """
    module_name, _, attribute = spec.partition(":")
    if search_path is not None and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import task module {module_name!r}: {exc}") from exc
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, TaskRegistry):
            raise ConfigError(f"{spec!r} is not a TaskRegistry")
        return found
    registries = [v for v in vars(module).values() if isinstance(v, TaskRegistry)]
    if len(registries) != 1:
        raise ConfigError(
            f"module {module_name!r} holds {len(registries)} TaskRegistry objects;"
            " name one as module:attribute"
        )
    return registries[0]
