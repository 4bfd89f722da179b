"""The task registry: handlers, their params models, and loading a registry by module name."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field

from common import (
    ConfigError,
    InvalidParams,
    PermanentTaskError,
    RetryableTaskError,
    SoftTimeLimitExceeded,
    TaskOptions,
    TaskRegistry,
    TimeLimitExceeded,
    UnknownTaskType,
    load_registry,
)


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


def test_task_registers_under_the_function_name(registry: TaskRegistry) -> None:
    @registry.task()
    def word_count(text: str) -> int:
        return len(text.split())

    assert registry.names() == ["word_count"]
    assert "word_count" in registry
    assert registry.get("word_count").handler is word_count


def test_task_registers_under_an_explicit_name(registry: TaskRegistry) -> None:
    @registry.task("reports.render")
    def render(title: str) -> str:
        return title

    assert "reports.render" in registry
    assert "render" not in registry
    assert registry.get("reports.render").name == "reports.render"


def test_decorator_returns_the_handler_unchanged(registry: TaskRegistry) -> None:
    def double(n: int) -> int:
        return 2 * n

    assert registry.task()(double) is double


def test_names_are_sorted(registry: TaskRegistry) -> None:
    for name in ("b", "c", "a"):
        registry.task(name)(lambda: None)

    assert registry.names() == ["a", "b", "c"]
    assert len(registry) == 3


def test_validate_applies_defaults(registry: TaskRegistry) -> None:
    @registry.task()
    def word_count(text: str, top: int = 3) -> None: ...

    assert registry.get("word_count").validate({"text": "hi"}) == {"text": "hi", "top": 3}


def test_validate_coerces_to_the_annotation(registry: TaskRegistry) -> None:
    @registry.task()
    def scale(factor: float) -> None: ...

    kwargs = registry.get("scale").validate({"factor": 2})

    assert kwargs == {"factor": 2.0}
    assert isinstance(kwargs["factor"], float)


def test_unannotated_parameter_accepts_any_value(registry: TaskRegistry) -> None:
    @registry.task()
    def echo(value) -> None: ...

    assert registry.get("echo").validate({"value": [1, "a"]}) == {"value": [1, "a"]}


def test_annotated_field_constraints_are_enforced(registry: TaskRegistry) -> None:
    @registry.task()
    def top_words(top: Annotated[int, Field(ge=1, le=100)] = 3) -> None: ...

    definition = registry.get("top_words")
    assert definition.validate({"top": 100}) == {"top": 100}
    with pytest.raises(InvalidParams) as caught:
        definition.validate({"top": 0})

    assert caught.value.task_type == "top_words"
    assert caught.value.errors[0]["loc"] == ["top"]
    assert caught.value.errors[0]["type"] == "greater_than_equal"


def test_extra_params_are_refused_with_an_error_list(registry: TaskRegistry) -> None:
    @registry.task()
    def word_count(text: str) -> None: ...

    with pytest.raises(InvalidParams, match="surprise") as caught:
        registry.get("word_count").validate({"text": "hi", "surprise": 1})

    assert caught.value.errors == [
        {"loc": ["surprise"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


def test_missing_params_are_refused(registry: TaskRegistry) -> None:
    @registry.task()
    def word_count(text: str, top: int = 3) -> None: ...

    with pytest.raises(InvalidParams) as caught:
        registry.get("word_count").validate({})

    assert [e["loc"] for e in caught.value.errors] == [["text"]]
    assert caught.value.errors[0]["type"] == "missing"


def test_invalid_params_errors_are_json_ready(registry: TaskRegistry) -> None:
    @registry.task()
    def f(n: int) -> None: ...

    with pytest.raises(InvalidParams) as caught:
        registry.get("f").validate({"n": object()})

    # No input echoed back: params may hold data the caller should not see in logs.
    assert set(caught.value.errors[0]) == {"loc", "msg", "type"}


def test_unknown_type_raises_unknown_task_type(registry: TaskRegistry) -> None:
    with pytest.raises(UnknownTaskType) as caught:
        registry.get("nope")

    assert caught.value.task_type == "nope"


def test_registering_a_type_twice_is_a_config_error(registry: TaskRegistry) -> None:
    registry.task("same")(lambda: None)

    with pytest.raises(ConfigError, match="twice"):
        registry.task("same")(lambda: None)


def test_var_positional_parameters_are_refused(registry: TaskRegistry) -> None:
    def handler(*args: int) -> None: ...

    with pytest.raises(ConfigError, match="args"):
        registry.task()(handler)


def test_var_keyword_parameters_are_refused(registry: TaskRegistry) -> None:
    def handler(**kwargs: int) -> None: ...

    with pytest.raises(ConfigError, match="kwargs"):
        registry.task()(handler)


def test_positional_only_parameters_are_refused(registry: TaskRegistry) -> None:
    def handler(n: int, /) -> None: ...

    with pytest.raises(ConfigError, match="'n'"):
        registry.task()(handler)


def test_underscore_and_reserved_parameter_names_are_passed_through(
    registry: TaskRegistry,
) -> None:
    @registry.task()
    def handler(_secret: int, json: str = "x", copy: bool = False) -> None: ...

    definition = registry.get("handler")
    assert definition.parameters == ["_secret", "json", "copy"]
    assert definition.validate({"_secret": 1, "json": "y"}) == {
        "_secret": 1,
        "json": "y",
        "copy": False,
    }
    assert set(definition.params_schema()["properties"]) == {"_secret", "json", "copy"}


def test_bare_decorator_registers_under_the_function_name(registry: TaskRegistry) -> None:
    @registry.task
    def bare(n: int) -> int:
        return n

    assert bare(2) == 2
    assert registry.get("bare").validate({"n": 3}) == {"n": 3}


def test_unresolvable_annotation_is_a_config_error(registry: TaskRegistry) -> None:
    def handler(n: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigError, match="annotations"):
        registry.task()(handler)


@pytest.mark.parametrize("name", ["has space", "1starts_with_digit", "x" * 129, "semi;colon"])
def test_invalid_task_type_name_is_a_config_error(registry: TaskRegistry, name: str) -> None:
    with pytest.raises(ConfigError, match="must match"):
        registry.task(name)(lambda: None)


def test_lambda_without_a_name_is_a_config_error(registry: TaskRegistry) -> None:
    # Without a name the function's is used; a lambda's, "<lambda>", is not a valid task type.
    with pytest.raises(ConfigError, match="<lambda>"):
        registry.task()(lambda: None)


def test_async_handler_is_detected(registry: TaskRegistry) -> None:
    @registry.task()
    async def fetch(url: str) -> str:
        return url

    @registry.task()
    def compute(n: int) -> int:
        return n

    assert registry.get("fetch").is_async
    assert not registry.get("compute").is_async


def test_params_schema_is_a_json_schema(registry: TaskRegistry) -> None:
    @registry.task()
    def word_count(text: str, top: Annotated[int, Field(ge=1, le=100)] = 3) -> None: ...

    schema: dict[str, Any] = registry.get("word_count").params_schema()

    assert schema["type"] == "object"
    assert schema["required"] == ["text"]
    assert schema["properties"]["text"]["type"] == "string"
    assert schema["properties"]["top"] == {
        "default": 3,
        "maximum": 100,
        "minimum": 1,
        "title": "Top",
        "type": "integer",
    }
    assert schema["additionalProperties"] is False


def test_task_options_defaults() -> None:
    options = TaskOptions()

    assert options.max_retries == 3
    assert options.retry_backoff == 1.0
    assert options.retry_backoff_max == 600.0
    assert options.permanent == ()
    assert options.soft_time_limit is None
    assert options.time_limit is None


def test_task_without_options_gets_the_defaults(registry: TaskRegistry) -> None:
    @registry.task()
    def plain() -> None: ...

    @registry.task
    def bare() -> None: ...

    assert registry.get("plain").options == TaskOptions()
    assert registry.get("bare").options == TaskOptions()


def test_options_reach_the_task_definition(registry: TaskRegistry) -> None:
    @registry.task(
        "resize",
        max_retries=5,
        retry_backoff=2.0,
        retry_backoff_max=60.0,
        permanent=(LookupError,),
        soft_time_limit=10.0,
        time_limit=12.0,
    )
    def resize(width: int) -> int:
        return width

    assert registry.get("resize").options == TaskOptions(
        max_retries=5,
        retry_backoff=2.0,
        retry_backoff_max=60.0,
        permanent=(LookupError,),
        soft_time_limit=10.0,
        time_limit=12.0,
    )


def test_options_without_a_name_register_under_the_function_name(registry: TaskRegistry) -> None:
    @registry.task(max_retries=0)
    def once() -> None: ...

    assert registry.get("once").options.max_retries == 0


def test_zero_retries_is_allowed() -> None:
    assert TaskOptions(max_retries=0).max_retries == 0


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"retry_backoff": 0},
        {"retry_backoff": -1.0},
        {"retry_backoff_max": 0},
        {"soft_time_limit": 0},
        {"time_limit": -5.0},
    ],
)
def test_invalid_options_are_config_errors(registry: TaskRegistry, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TaskOptions(**options)
    with pytest.raises(ConfigError):
        registry.task("checked", **options)
    assert "checked" not in registry


def test_unknown_option_is_a_config_error(registry: TaskRegistry) -> None:
    with pytest.raises(ConfigError, match=r"unknown task option.*max_retry"):
        registry.task("typo", max_retry=5)


@pytest.mark.parametrize("permanent", [[LookupError], (LookupError, "ValueError")])
def test_permanent_must_be_a_tuple_of_exception_types(
    registry: TaskRegistry, permanent: object
) -> None:
    with pytest.raises(ConfigError):
        registry.task("strict", permanent=permanent)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("x"),
        ConnectionError("reset"),
        TimeoutError(),
        RetryableTaskError("later", delay=3),
        KeyError("k"),
    ],
)
def test_ordinary_errors_are_retryable(error: Exception) -> None:
    assert TaskOptions().is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        PermanentTaskError("bad"),
        InvalidParams("t", [{"loc": ["x"], "msg": "no"}]),
        UnknownTaskType("t"),
        SoftTimeLimitExceeded(),
        TimeLimitExceeded(3.0),
    ],
)
def test_permanent_task_errors_are_never_retryable(error: Exception) -> None:
    # Whatever the options say: even an empty permanent list and many retries.
    assert not TaskOptions(max_retries=10, permanent=()).is_retryable(error)


def test_options_can_make_more_errors_permanent() -> None:
    options = TaskOptions(permanent=(LookupError, ZeroDivisionError))

    assert not options.is_retryable(KeyError("k"))  # a LookupError subclass
    assert not options.is_retryable(ZeroDivisionError())
    assert options.is_retryable(ValueError("v"))


def test_task_options_are_immutable() -> None:
    options = TaskOptions()

    with pytest.raises(AttributeError):
        options.max_retries = 9  # type: ignore[misc]


def test_load_registry_finds_the_modules_registry() -> None:
    registry = load_registry("examples.tasks")

    assert registry.names() == ["convert_currency", "notify", "render_report", "word_count"]


def test_load_registry_accepts_module_and_attribute() -> None:
    from examples import tasks

    assert load_registry("examples.tasks:registry") is tasks.registry


def test_load_registry_refuses_an_attribute_that_is_not_a_registry() -> None:
    with pytest.raises(ConfigError, match="not a TaskRegistry"):
        load_registry("examples.tasks:word_count")


def test_load_registry_refuses_a_module_without_a_registry() -> None:
    with pytest.raises(ConfigError, match="0 TaskRegistry"):
        load_registry("common.errors")


def test_load_registry_refuses_a_missing_module() -> None:
    with pytest.raises(ConfigError, match="cannot import task module 'no_such_module_wq'"):
        load_registry("no_such_module_wq")
