"""The ``detection.condition`` expression: selection names joined by and / or / not.

Grammar (``not`` binds tighter than ``and``, which binds tighter than ``or``)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | quantified | NAME
    quantified := ("1" | "all") "of" (PATTERN | "them")

``PATTERN`` is a selection name, possibly with ``*`` wildcards (``selection_*``); ``them`` means
every selection. Quantifiers expand at parse time into Or / And over the names they match.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

__all__ = [
    "All",
    "Any_",
    "ConditionError",
    "Name",
    "Node",
    "Not",
    "actions_of",
    "build",
    "fold",
    "parse_condition",
    "pins_of",
]


class ConditionError(ValueError):
    """A condition that does not parse; the message says where (column, 1-based)."""


@dataclass(frozen=True, slots=True)
class Name:
    """A selection, by name."""

    name: str


@dataclass(frozen=True, slots=True)
class Not:
    """Negation."""

    item: Node


@dataclass(frozen=True, slots=True)
class All:
    """Conjunction (``and``, ``all of``)."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    """Disjunction (``or``, ``1 of``)."""

    items: tuple[Node, ...]


Node: TypeAlias = Name | Not | All | Any_

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z0-9_*]+)|(\S))")
_KEYWORDS = frozenset({"and", "or", "not", "of", "them", "all"})


def _tokens(text: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace left
            break
        if m.group(4) is not None:
            raise ConditionError(f"unexpected {m.group(4)!r} at column {m.start(4) + 1}")
        token = m.group(1) or m.group(2) or m.group(3)
        if token:
            out.append((token, m.start(m.lastindex or 0) + 1))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text
        self.names = list(names)
        self.tokens = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def where(self) -> str:
        if self.i < len(self.tokens):
            token, column = self.tokens[self.i]
            return f"{token!r} at column {column}"
        return "the end of the condition"

    def take(self) -> str:
        token = self.tokens[self.i][0]
        self.i += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise ConditionError("the condition is empty")
        node = self.expr()
        if self.i < len(self.tokens):
            raise ConditionError(f"expected 'and', 'or' or the end, got {self.where()}")
        return node

    def expr(self) -> Node:
        items = [self.term()]
        while self.peek() == "or":
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else Any_(tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.peek() == "and":
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else All(tuple(items))

    def factor(self) -> Node:
        token = self.peek()
        if token is None:
            raise ConditionError("expected a selection name, got the end of the condition")
        if token == "not":
            self.take()
            return Not(self.factor())
        if token == "(":
            self.take()
            node = self.expr()
            if self.peek() != ")":
                raise ConditionError(f"expected ')', got {self.where()}")
            self.take()
            return node
        if (
            token in ("1", "all")
            and self.i + 1 < len(self.tokens)
            and self.tokens[self.i + 1][0] == "of"
        ):
            return self.quantified()
        if token in _KEYWORDS or token == ")" or "*" in token:
            raise ConditionError(f"expected a selection name, got {self.where()}")
        if token not in self.names:
            known = ", ".join(self.names) or "none"
            raise ConditionError(
                f"unknown selection {token!r} at column {self.tokens[self.i][1]} "
                f"(selections: {known})"
            )
        self.take()
        return Name(token)

    def quantified(self) -> Node:
        quantifier = self.take()
        self.take()  # "of"
        if self.peek() is None or self.peek() in ("(", ")", "and", "or", "not"):
            raise ConditionError(f"expected a selection pattern or 'them', got {self.where()}")
        column = self.tokens[self.i][1]
        pattern = self.take()
        if pattern == "them":
            matched = list(self.names)
        else:
            matched = [n for n in self.names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise ConditionError(f"{pattern!r} at column {column} matches no selection")
        items = tuple(Name(n) for n in matched)
        if len(items) == 1:
            return items[0]
        return Any_(items) if quantifier == "1" else All(items)


def parse_condition(text: str, names: Sequence[str]) -> Node:
    """Parse a condition over the selection ``names``; ConditionError if it is malformed."""
    return _Parser(text, names).parse()


#: field → the values an event must have in it (one of them) for a condition to hold
Pins: TypeAlias = dict[str, frozenset[object]]


def pins_of(node: Node, selections: Mapping[str, Mapping[str, frozenset[object]]]) -> Pins:
    """The fields ``node`` pins to sets of values: an event lacking all of a field's values
    cannot satisfy ``node``.

    ``and`` keeps every part's pins (intersecting values of a field pinned twice), ``or`` keeps
    the fields every part pins (uniting their values), ``not`` pins nothing.
    """
    if isinstance(node, Name):
        return dict(selections.get(node.name, {}))
    if isinstance(node, Not):
        return {}
    parts = [pins_of(item, selections) for item in node.items]
    if isinstance(node, All):
        merged: Pins = {}
        for part in parts:
            for field, values in part.items():
                merged[field] = merged[field] & values if field in merged else values
        return merged
    common = set(parts[0]).intersection(*parts[1:])
    return {f: frozenset().union(*(p[f] for p in parts)) for f in common}


def actions_of(
    node: Node, selections: Mapping[str, frozenset[str] | None]
) -> frozenset[str] | None:
    """The ``event.action`` values an event must have for ``node`` to hold (None: any action)."""
    pinned = {
        n: ({"event.action": frozenset[object](v)} if v is not None else {})
        for n, v in selections.items()
    }
    found = pins_of(node, pinned).get("event.action")
    return None if found is None else frozenset(str(v) for v in found)


T = TypeVar("T")


def build(node: Node, leaf: Callable[[str], Callable[[T], bool]]) -> Callable[[T], bool]:
    """A predicate for ``node``; ``leaf(name)`` gives each selection's predicate."""
    if isinstance(node, Name):
        return leaf(node.name)
    if isinstance(node, Not):
        inner = build(node.item, leaf)
        return lambda e: not inner(e)
    return _combine(tuple(build(item, leaf) for item in node.items), isinstance(node, All))


def _combine(parts: tuple[Callable[[T], bool], ...], conjunction: bool) -> Callable[[T], bool]:
    """``parts`` and-ed (``conjunction``) or or-ed into one predicate."""
    if len(parts) == 1:
        return parts[0]
    if conjunction:
        if len(parts) == 2:
            a, b = parts
            return lambda e: a(e) and b(e)
        return lambda e: all(p(e) for p in parts)
    if len(parts) == 2:
        a, b = parts
        return lambda e: a(e) or b(e)
    return lambda e: any(p(e) for p in parts)


def fold(
    node: Node, leaf: Callable[[str], Callable[[T], bool] | bool]
) -> Callable[[T], bool] | bool:
    """Like ``build``, where ``leaf(name)`` may also be a constant (a selection decided before
    any event is seen): the constants folded away, the result a predicate or a constant."""
    if isinstance(node, Name):
        return leaf(node.name)
    if isinstance(node, Not):
        inner = fold(node.item, leaf)
        if isinstance(inner, bool):
            return not inner
        return lambda e: not inner(e)
    parts = [fold(item, leaf) for item in node.items]
    conjunction = isinstance(node, All)
    decider = not conjunction  # one false part decides an "and", one true part an "or"
    if any(p is decider for p in parts):
        return decider
    rest = tuple(p for p in parts if not isinstance(p, bool))
    if not rest:
        return conjunction
    return _combine(rest, conjunction)
