"""rule.schema.json: what it refuses and where the loader says the problem is."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from otsentry.detect.loader import RuleError, compile_document, parse_document
from otsentry.detect.schema import rule_schema, schema_problems
from tests.detect.conftest import RULES

GOOD = (RULES / "modbus_listen_only.yml").read_text()


def problems_of(text: str) -> list[tuple[int, str | None, str]]:
    doc = parse_document(text, "r.yml")
    try:
        compile_document(doc)
    except RuleError as err:
        return [(err.line or 0, err.key, err.problem)]
    return []


def data_of(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(GOOD)
    data["date"] = "2026-01-01"
    data.update(changes)
    return data


def test_schema_is_valid_draft_2020_12() -> None:
    schema = rule_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_every_test_rule_and_builtin_rule_passes() -> None:
    paths = [*RULES.glob("*.yml"), *(RULES.parent.parent.parent / "rules").rglob("*.yml")]
    assert len(paths) > 4
    for path in paths:
        assert schema_problems(parse_document(path.read_text()).data) == [], path


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        ({"id": "ots-lower"}, ("id",), "a rule id is OTS-"),
        ({"rev": 0}, ("rev",), "at least 1"),
        ({"rev": "2"}, ("rev",), "expected an integer, got '2'"),
        ({"status": "beta"}, ("status",), "expected one of: stable, test"),
        ({"date": "22/11/2026"}, ("date",), "YYYY-MM-DD"),
        ({"tags": ["Attack.T0814"]}, ("tags", 0), "lower-case"),
        ({"logsource": {"protocol": "dnp3"}}, ("logsource", "protocol"), "expected one of"),
        (
            {"logsource": {"protocol": "modbus", "product": "x"}},
            ("logsource", "product"),
            "unknown key",
        ),
        ({"colour": "red"}, ("colour",), "unknown key 'colour'"),
        ({"detection": {"condition": "selection"}}, ("detection",), "at least one named selection"),
        (
            {"detection": {"sel-1": {"a": 1}, "condition": "x"}},
            ("detection", "sel-1"),
            "a selection name",
        ),
        (
            {"detection": {"selection": {"a": {"b": 1}}, "condition": "selection"}},
            ("detection", "selection", "a"),
            "a value is a string, number",
        ),
        (
            {"detection": {"selection": [{"a": 1}, "x"], "condition": "selection"}},
            ("detection", "selection", 1),
            "expected a mapping",
        ),
        (
            {"detection": {"selection": {"a b": 1}, "condition": "selection"}},
            ("detection", "selection", "a b"),
            "a selection key is a field name",
        ),
        ({"fixtures": {"match": [1]}}, ("fixtures", "match", 0), "a fixture is a map"),
        ({"fixtures": {"maybe": []}}, ("fixtures", "maybe"), "unknown key"),
        (
            {"correlation": {"type": "value_count", "timespan": "1m", "condition": {"gte": 3}}},
            ("correlation",),
            "missing required key 'field'",
        ),
        (
            {"correlation": {"type": "event_count", "timespan": "1d", "condition": {"gte": 3}}},
            ("correlation", "timespan"),
            "60s, 5m, 1h",
        ),
        (
            {"correlation": {"type": "event_count", "timespan": "1m", "condition": {"lt": 3}}},
            ("correlation", "condition", "lt"),
            "unknown key 'lt' (expected one of: gte, gt)",
        ),
        (
            {"correlation": {"type": "event_count", "timespan": "1m", "condition": {"gte": 5000}}},
            ("correlation", "condition", "gte"),
            "at most 1024",
        ),
    ],
)
def test_schema_problems_locate_the_key(
    change: dict[str, Any], path: tuple[str | int, ...], fragment: str
) -> None:
    found = schema_problems(data_of(**change))
    assert any(p == path and fragment in msg for p, msg in found), found


def test_missing_keys_are_reported_at_their_parent() -> None:
    data = data_of()
    del data["title"], data["level"]
    assert sorted(schema_problems(data)) == [
        ((), "missing required key 'level'"),
        ((), "missing required key 'title'"),
    ]


def test_not_a_mapping() -> None:
    assert schema_problems(["a"]) == [((), "a rule file holds one rule as a mapping, got a list")]


def test_loader_maps_schema_errors_to_lines() -> None:
    text = GOOD.replace("logsource: {protocol: modbus}", "logsource:\n  protocol: dnp3")
    ((line, key, problem),) = problems_of(text)
    assert (line, key) == (11, "logsource.protocol")
    assert "got 'dnp3'" in problem
    text = GOOD.replace("    sub_function: 4\n", "    sub_function: {a: 1}\n")
    ((line, key, _),) = problems_of(text)
    assert (line, key) == (14, "detection.selection.sub_function")
    text = GOOD.replace("fixtures:\n  match:\n", "fixtures:\n  match:\n    - 7\n")
    ((line, key, _),) = problems_of(text)
    assert (line, key) == (20, "fixtures.match[0]")
