"""Selections and modifiers compiled to predicates; templates; compile errors."""

from __future__ import annotations

from typing import Any

import pytest

from otsentry.detect.compile import CompileError, compile_selection, compile_template
from otsentry.detect.fixtures import fixture_event
from otsentry.model import Event


def ev(**values: Any) -> Event:
    return fixture_event({k.replace("__", "."): v for k, v in values.items()}, "modbus")


def holds(selection: Any, event: Event) -> bool:
    pred, _ = compile_selection(selection, ("detection", "s"))
    return pred(event)


def test_equality_any_value_and_number_types() -> None:
    assert holds({"unit_id": 1}, ev(unit_id=1))
    assert holds({"unit_id": 1}, ev(unit_id=1.0))
    assert holds({"unit_id": [3, 1]}, ev(unit_id=1))
    assert not holds({"unit_id": 1}, ev(unit_id=2))
    assert not holds({"unit_id": 1}, ev(unit_id="1"))
    assert not holds({"unit_id": 1}, ev(unit_id=True))
    assert not holds({"flag": True}, ev(flag=1))
    assert holds({"flag": True}, ev(flag=True))
    assert holds({"function": "diagnostics"}, ev(function="diagnostics"))
    assert not holds({"function": "Diagnostics"}, ev(function="diagnostics"))


def test_map_is_and_list_is_or() -> None:
    sel_and = {"unit_id": 1, "function_code": 8}
    assert holds(sel_and, ev(unit_id=1, function_code=8))
    assert not holds(sel_and, ev(unit_id=1, function_code=3))
    sel_or = [{"unit_id": 1}, {"function_code": 8}]
    assert holds(sel_or, ev(unit_id=9, function_code=8))
    assert not holds(sel_or, ev(unit_id=9, function_code=3))


def test_lists_in_events_match_any_element() -> None:
    event = ev(anomalies=["modbus.flooded", "modbus.invalid_length"], items__area=[130, 132])
    assert holds({"anomalies": "modbus.flooded"}, event)
    assert holds({"items.area": 132}, event)
    assert not holds({"items.area": 131}, event)


def test_null_matches_missing_or_null() -> None:
    assert holds({"exception_code": None}, ev(unit_id=1))
    assert holds({"exception_code": None}, ev(exception_code=None))
    assert not holds({"exception_code": None}, ev(exception_code=2))
    assert holds({"exception_code": [None, 2]}, ev(exception_code=2))
    assert holds({"exception_code": [None, 2]}, ev())


def test_missing_field_matches_nothing() -> None:
    for selection in (
        {"x": 1},
        {"x|gt": 0},
        {"x|contains": ""},
        {"x|re": ".*"},
        {"x|cidr": "0.0.0.0/0"},
    ):
        assert not holds(selection, ev(y=1)), selection


def test_exists() -> None:
    assert holds({"x|exists": True}, ev(x=0))
    assert not holds({"x|exists": True}, ev(y=0))
    assert holds({"x|exists": False}, ev(y=0))
    assert holds({"anomalies|exists": False}, ev())
    assert holds({"anomalies|exists": True}, ev(anomalies="modbus.flooded"))


@pytest.mark.parametrize(
    ("mod", "bound", "true_for", "false_for"),
    [
        ("gt", 10, [11, 10.5], [10, 9, "11", True]),
        ("gte", 10, [10, 11], [9.99, "10"]),
        ("lt", 10, [9, -1], [10, 11]),
        ("lte", 10, [10, 9], [11]),
    ],
)
def test_numeric(mod: str, bound: int, true_for: list[Any], false_for: list[Any]) -> None:
    for value in true_for:
        assert holds({f"quantity|{mod}": bound}, ev(quantity=value)), value
    for value in false_for:
        assert not holds({f"quantity|{mod}": bound}, ev(quantity=value)), value


def test_cidr() -> None:
    sel = {"source.ip|cidr": ["10.10.0.0/16", "fd00::/8"]}
    assert holds(sel, ev(source__ip="10.10.30.66"))
    assert holds(sel, ev(source__ip="fd00::1"))
    assert not holds(sel, ev(source__ip="10.11.0.1"))
    assert not holds({"name|cidr": "10.0.0.0/8"}, ev(name="not-an-ip"))


def test_string_modifiers() -> None:
    event = ev(service="ReadRequest", items__name=["DB1.DBX0", "MB7"])
    assert holds({"service|startswith": ["Write", "Read"]}, event)
    assert not holds({"service|startswith": "read"}, event)
    assert holds({"service|endswith": "Request"}, event)
    assert holds({"service|contains": "dRe"}, event)
    assert holds({"items.name|startswith": "MB"}, event)
    assert not holds({"count|contains": "1"}, ev(count=11))


def test_regex_is_search() -> None:
    assert holds({"service|re": r"Re(ad|quest)$"}, ev(service="ReadRequest"))
    assert holds({"service|re": "ead"}, ev(service="ReadRequest"))
    assert not holds({"service|re": "^ead"}, ev(service="ReadRequest"))


def test_all() -> None:
    event = ev(anomalies=["modbus.a", "modbus.b"])
    assert holds({"anomalies|all": ["modbus.a", "modbus.b"]}, event)
    assert not holds({"anomalies|all": ["modbus.a", "modbus.c"]}, event)
    assert holds({"anomalies": ["modbus.a", "modbus.c"]}, event)
    assert holds({"name|contains|all": ["Read", "Req"]}, ev(name="ReadRequest"))
    assert not holds({"name|contains|all": ["Read", "Write"]}, ev(name="ReadRequest"))


@pytest.mark.parametrize(
    ("selection", "fragment"),
    [
        ({"x|nope": 1}, "unknown modifier 'nope'"),
        ({"x|gt|lt": 1}, "at most one of"),
        ({"x|gt|gt": 1}, "repeated"),
        ({"x|gt": "a"}, "|gt needs a number"),
        ({"x|re": "("}, "bad regular expression"),
        ({"x|cidr": "10.0.0.300/8"}, "|cidr needs a network"),
        ({"x|exists": "yes"}, "|exists takes true or false"),
        ({"x|contains": 3}, "|contains needs a string"),
        ({"x|gt": None}, "cannot test null"),
        ({"event.kind": "alert"}, "unknown field 'event.kind'"),
    ],
)
def test_compile_errors(selection: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CompileError) as err:
        compile_selection(selection, ("detection", "s"))
    assert fragment in err.value.problem
    assert err.value.path == ("detection", "s", next(iter(selection)))


def test_selection_pins() -> None:
    def pins(selection: Any) -> dict[str, frozenset[object]]:
        return compile_selection(selection, ("s",))[1]

    assert pins({"event.action": "modbus-diagnostics", "sub_function": 4}) == {
        "event.action": {"modbus-diagnostics"},
        "sub_function": {4},
    }
    assert pins({"event.action": ["a", "b"], "unit_id": [1, 2.5]}) == {
        "event.action": {"a", "b"},
        "unit_id": {1, 2.5},
    }
    # modifiers, null, booleans and the like pin nothing
    assert pins({"event.action|startswith": "modbus-", "x": None, "y": [1, None], "z": True}) == {}
    assert pins([{"event.action": "a", "x": 1}, {"event.action": "b", "y": 1}]) == {
        "event.action": {"a", "b"}
    }
    assert pins([{"event.action": "a"}, {"x": 1}]) == {}


def test_templates() -> None:
    event = ev(source__ip="10.0.0.9", unit_id=3, items__area=[130, 132], ok=True)
    render = compile_template(
        "{source.ip} unit {unit_id} areas {items.area} ok {ok} {missing} {{x}}", ("message",)
    )
    assert render(event) == "10.0.0.9 unit 3 areas 130, 132 ok true ? {x}"
    for bad, fragment in [
        ("a {b", "unbalanced '{'"),
        ("a } b", "unbalanced '}'"),
        ("{}", "empty placeholder"),
        ("{event.nope}", "unknown field"),
    ]:
        with pytest.raises(CompileError) as err:
            compile_template(bad, ("message",))
        assert fragment in err.value.problem
