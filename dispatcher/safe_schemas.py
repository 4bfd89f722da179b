"""JSON Schema validators whose regular expressions run in linear time (RE2).

Schemas come from executor heartbeats, so they are untrusted input. ``jsonschema`` matches
``pattern``, ``patternProperties`` (and the ``additionalProperties`` that depend on them) with
Python's backtracking ``re``: a pattern such as ``^(a+)+$`` takes seconds on 30 characters.
Here those three keywords match with RE2, which has no backtracking, and a schema is accepted
only if every pattern in it compiles in RE2 (no backreferences or lookarounds) and it does not
combine ``unevaluatedProperties`` with ``patternProperties`` (matched by ``jsonschema`` itself).
https://github.com/google/re2/wiki/Syntax
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import re2
from jsonschema import validators
from jsonschema.exceptions import SchemaError, ValidationError

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported by us, not printed by RE2
# Compiled patterns kept: a schema's few, times the task types a deployment has.
_CACHE_SIZE = 4096


def safe_validator(schema: dict[str, Any]) -> Any:
    """A validator for ``schema`` whose regex keywords use RE2; ``SchemaError`` if refused."""
    base = validators.validator_for(schema)
    base.check_schema(schema)
    _check_patterns(schema)
    cls = validators.extend(  # type: ignore[no-untyped-call]
        base,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )
    return cls(schema)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compiled(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise SchemaError(
            f"pattern {pattern!r} is not supported (it needs backtracking, which could take "
            f"exponential time): {exc}"
        ) from exc


def _check_patterns(node: object) -> None:
    """Compile every pattern in the schema ``node``; refuse what RE2 cannot match safely."""
    if isinstance(node, Mapping):
        if isinstance(pattern := node.get("pattern"), str):
            _compiled(pattern)
        patterns = node.get("patternProperties")
        if isinstance(patterns, Mapping):
            for key in patterns:
                _compiled(key)
            if "unevaluatedProperties" in node:
                raise SchemaError(
                    "unevaluatedProperties beside patternProperties is not supported (its "
                    "patterns would be matched by a backtracking engine)"
                )
        for value in node.values():
            _check_patterns(value)
    elif isinstance(node, list):
        for value in node:
            _check_patterns(value)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _compiled(pattern)
        for name, value in instance.items():
            if regex.search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = [_compiled(p) for p in schema.get("patternProperties", {})]
    extras = sorted(
        (
            name
            for name in instance
            if name not in named and not any(regex.search(name) for regex in patterns)
        ),
        key=str,
    )
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif additional is False and extras:
        listed = ", ".join(repr(name) for name in extras)
        yield ValidationError(f"additional properties are not allowed ({listed} unexpected)")
