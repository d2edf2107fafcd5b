"""The condition language: precedence, parentheses, quantifiers, errors, action derivation."""

from __future__ import annotations

import itertools

import pytest

from otsentry.detect.condition import (
    All,
    Any_,
    ConditionError,
    Name,
    Not,
    actions_of,
    build,
    parse_condition,
)

NAMES = ["a", "b", "c", "sel_1", "sel_2", "other"]


def evaluate(text: str, truth: dict[str, bool]) -> bool:
    tree = parse_condition(text, list(truth))
    pred = build(tree, lambda name: lambda _e: truth[name])
    return pred(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a or b and c", lambda a, b, c: a or (b and c)),
        ("a and b or c", lambda a, b, c: (a and b) or c),
        ("not a and b", lambda a, b, c: (not a) and b),
        ("not a or b", lambda a, b, c: (not a) or b),
        ("not (a or b) and c", lambda a, b, c: (not (a or b)) and c),
        ("(a or b) and c", lambda a, b, c: (a or b) and c),
        ("a and not not b", lambda a, b, c: a and b),
        ("a or b or c and not a", lambda a, b, c: a or b or (c and not a)),
    ],
)
def test_precedence_matches_python(text: str, expected: object) -> None:
    for a, b, c in itertools.product([False, True], repeat=3):
        assert evaluate(text, {"a": a, "b": b, "c": c}) == expected(a, b, c), (text, a, b, c)  # type: ignore[operator]


def test_tree_shapes() -> None:
    assert parse_condition("a or b and not c", NAMES) == Any_(
        (Name("a"), All((Name("b"), Not(Name("c")))))
    )
    assert parse_condition("1 of sel_*", NAMES) == Any_((Name("sel_1"), Name("sel_2")))
    assert parse_condition("all of sel_*", NAMES) == All((Name("sel_1"), Name("sel_2")))
    assert parse_condition("all of them", ["x", "y"]) == All((Name("x"), Name("y")))
    assert parse_condition("1 of them", ["x"]) == Name("x")
    assert parse_condition("1 of oth*r and not a", NAMES) == All((Name("other"), Not(Name("a"))))


def test_quantifiers_evaluate() -> None:
    truth = {"sel_1": False, "sel_2": True, "other": False}
    assert evaluate("1 of sel_*", truth)
    assert not evaluate("all of sel_*", truth)
    assert not evaluate("all of them", truth)
    assert evaluate("1 of them", truth)
    assert evaluate("not all of sel_* and 1 of sel_*", truth)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the condition is empty"),
        ("a and", "expected a selection name, got the end of the condition"),
        ("a b", "expected 'and', 'or' or the end, got 'b' at column 3"),
        ("(a or b", "expected ')', got the end of the condition"),
        ("a or b)", "got ')' at column 7"),
        ("nope", "unknown selection 'nope' at column 1"),
        ("a | b", "unexpected '|' at column 3"),
        ("1 of x_*", "'x_*' at column 6 matches no selection"),
        ("all of", "expected a selection pattern or 'them'"),
        ("sel_*", "expected a selection name, got 'sel_*'"),
        ("and a", "expected a selection name, got 'and' at column 1"),
    ],
)
def test_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as err:
        parse_condition(text, NAMES)
    assert message in str(err.value)


def test_actions_of() -> None:
    sel = {
        "read": frozenset({"modbus-read-coils", "modbus-read-holding-registers"}),
        "coils": frozenset({"modbus-read-coils"}),
        "write": frozenset({"modbus-write-single-coil"}),
        "free": None,
    }
    names = list(sel)

    def acts(text: str) -> frozenset[str] | None:
        return actions_of(parse_condition(text, names), sel)

    assert acts("read and coils") == {"modbus-read-coils"}
    assert acts("read or write") == sel["read"] | sel["write"]
    assert acts("read and free") == sel["read"]
    assert acts("free and not write") is None
    assert acts("read or free") is None
    assert acts("not read") is None
    assert acts("coils and write") == frozenset()
    assert acts("1 of them") is None
    assert acts("all of them") == frozenset()
    assert acts("(read or write) and not coils") == sel["read"] | sel["write"]
