"""Published schemas are untrusted: their regexes run in linear time, or the schema is refused."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema.exceptions import SchemaError

from dispatcher.safe_schemas import safe_validator


def _errors(schema: dict[str, Any], instance: object) -> list[str]:
    return [error.message for error in safe_validator(schema).iter_errors(instance)]


def test_a_catastrophic_pattern_ends_at_once_against_a_long_string() -> None:
    # With Python's re this takes seconds at 27 characters and doubles with each one more:
    # at 100,000 it would not end within the suite's timeout (60 s per test).
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}

    errors = _errors(schema, {"s": "a" * 100_000 + "!"})

    assert len(errors) == 1
    assert "does not match" in errors[0]
    assert _errors(schema, {"s": "aaaa"}) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": r"(a)\1"},  # backreference
        {"type": "string", "pattern": r"^(?=a)a$"},  # lookahead
        {"type": "object", "patternProperties": {r"(?<=x)y": {}}},  # lookbehind
        {"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False},
        {"properties": {"deep": {"items": {"pattern": r"(\w)\1"}}}},  # nested anywhere
    ],
)
def test_a_schema_whose_patterns_need_backtracking_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        safe_validator(schema)


def test_an_invalid_schema_is_refused() -> None:
    with pytest.raises(SchemaError):
        safe_validator({"type": 12})


def test_pattern_properties_and_additional_properties_keep_their_meaning() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }

    assert _errors(schema, {"name": "n", "x-a": 1, "x-b": 2}) == []
    assert _errors(schema, {"x-a": "one"}) == ["'one' is not of type 'integer'"]
    assert _errors(schema, {"other": 1, "another": 2}) == [
        "additional properties are not allowed ('another', 'other' unexpected)"
    ]


def test_additional_properties_as_a_schema_checks_the_extra_ones() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^n": {"type": "number"}},
        "additionalProperties": {"type": "string"},
    }

    assert _errors(schema, {"n1": 1, "label": "ok"}) == []
    assert _errors(schema, {"label": 3}) == ["3 is not of type 'string'"]


def test_property_names_with_a_pattern_use_the_safe_engine() -> None:
    schema = {"type": "object", "propertyNames": {"pattern": "^(a+)+$"}}

    errors = _errors(schema, {"a" * 50_000 + "!": 1})

    assert len(errors) == 1
