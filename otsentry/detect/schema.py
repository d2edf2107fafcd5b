"""Validation of rule documents against ``rule.schema.json`` (JSON Schema draft 2020-12).

Each jsonschema error becomes a (key path, problem) pair pointing at the offending key, so the
loader can name the file line: an unknown key points at that key, a missing one at its parent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

__all__ = ["Problem", "rule_schema", "schema_problems"]

#: (key path from the document root, what is wrong)
Problem: TypeAlias = tuple[tuple[str | int, ...], str]

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
}


@cache
def rule_schema() -> dict[str, Any]:
    """The rule schema as loaded from ``otsentry/detect/rule.schema.json``."""
    text = files("otsentry.detect").joinpath("rule.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Any:
    # imported on first use: a replay with only the built-in pack never needs it (~0.1 s)
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    schema = rule_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def describe(value: Any) -> str:
    """How a value appears in 'got …' messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def schema_problems(data: Any) -> list[Problem]:
    """Every way ``data`` breaks the rule schema, ordered by position in the document."""
    if not isinstance(data, dict):
        return [((), f"a rule file holds one rule as a mapping, got {describe(data)}")]
    found: list[Problem] = []
    for error in _validator().iter_errors(data):
        found.extend(_explain(error))
    unique = list(dict.fromkeys(found))
    return unique


def _explain(error: ValidationError) -> Iterable[Problem]:
    path = tuple(error.absolute_path)
    schema_path = list(error.schema_path)
    if len(schema_path) >= 2 and schema_path[-2] == "propertyNames":
        path = (*path, str(error.instance))  # the offending key itself
    kind = error.validator
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        extras = [k for k in instance if k not in known]
        expected = f" (expected one of: {', '.join(known)})" if known else ""
        return [((*path, k), f"unknown key {k!r}{expected}") for k in extras]
    if kind == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        return [(path, f"missing required key {k!r}") for k in missing]
    if kind in ("anyOf", "oneOf") and error.context:
        branch = _branch_for(error, instance)
        if branch:
            return [p for sub in branch for p in _explain(sub)]
    if isinstance(schema.get("x-message"), str) and kind not in ("type", "enum", "required"):
        return [(path, f"{schema['x-message']}, got {describe(instance)}")]
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        return [(path, f"expected one of: {options}; got {describe(instance)}")]
    if kind == "type":
        wanted = error.validator_value
        names = wanted if isinstance(wanted, list) else [wanted]
        return [(path, f"expected {' or '.join(_a(n) for n in names)}, got {describe(instance)}")]
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return [
            (path, f"expected a number {bound} {error.validator_value}, got {describe(instance)}")
        ]
    if kind == "minItems":
        return [(path, "expected a non-empty list")]
    if kind == "minLength":
        return [(path, "expected a non-empty string")]
    return [(path, error.message)]


def _branch_for(error: ValidationError, instance: Any) -> list[ValidationError]:
    """The sub-errors of the anyOf branch shaped like ``instance`` (a map for a map…)."""
    options = error.validator_value
    for index, option in enumerate(options):
        wanted = _branch_type(option, error)
        if wanted is not None and isinstance(instance, wanted):
            return [e for e in error.context if e.relative_schema_path[0] == index]
    return []


def _branch_type(option: Mapping[str, Any], error: ValidationError) -> type | None:
    ref = option.get("$ref")
    if isinstance(ref, str):
        name = ref.rpartition("/")[2]
        option = rule_schema()["$defs"].get(name, {})
    kind = option.get("type")
    return _JSON_TYPES.get(kind) if isinstance(kind, str) else None


def _a(type_name: str) -> str:
    return {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "null": "null",
    }.get(type_name, type_name)
