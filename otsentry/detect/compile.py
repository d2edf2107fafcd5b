"""Validated rule data → a compiled rule: selections and modifiers as closures over an ``Event``.

A selection map is the AND of its entries, a list of maps the OR of them; an entry is a field
name with optional ``|modifiers`` and a value or a list of values (any of them; every one of
them with ``|all``). Each compiled rule also knows which ``event.action`` values it can match
(``actions``, None for any), which is what the engine indexes it by.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from otsentry.detect.attack import AttackError, resolve_tags
from otsentry.detect.condition import (
    ConditionError,
    Pins,
    build,
    fold,
    parse_condition,
    pins_of,
)
from otsentry.detect.correlation import CorrelationSpec, parse_timespan
from otsentry.detect.fields import ENVELOPE_FIELDS, MISSING, Accessor, FieldError, accessor
from otsentry.detect.fixtures import FixtureError, fixture_events
from otsentry.detect.model import Predicate, Rule
from otsentry.model import Conn, Envelope, Event

__all__ = [
    "MODIFIERS",
    "CompileError",
    "CompiledRule",
    "Template",
    "compile_rule",
    "compile_selection",
    "compile_template",
]

#: modifiers that choose the test (at most one per entry); ``all`` may be added to any
OPERATORS: Final = (
    "cidr",
    "gt",
    "gte",
    "lt",
    "lte",
    "re",
    "startswith",
    "endswith",
    "contains",
    "exists",
)
MODIFIERS: Final = (*OPERATORS, "all")
_CIDR_CACHE_MAX: Final = 4096

Template = Callable[[Event], str]
_KeyPath = tuple[str | int, ...]


class CompileError(ValueError):
    """A rule that passes the schema yet cannot be compiled; ``path`` locates the key."""

    def __init__(self, path: _KeyPath, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its predicate, the actions it can match, correlation and templates."""

    rule: Rule
    predicate: Predicate
    #: the ``event.action`` values the rule can match; None when any action can
    actions: frozenset[str] | None
    #: other fields the rule pins to sets of values (an event with none of them cannot match)
    pins: Mapping[str, frozenset[object]]
    correlation: CorrelationSpec | None
    message: Template
    reason: Template
    #: the predicate for events of one (protocol, action), its entries on those two fields
    #: decided in advance: a predicate, or True / False (see ``specialize``)
    specialized: Callable[[str, str], Predicate | bool] | None = None

    def specialize(self, protocol: str, action: str) -> Predicate | bool:
        """The rule's predicate for events of ``protocol`` and ``action`` only: entries on
        ``network.protocol`` and ``event.action`` decided now (True / False when that decides
        the whole condition)."""
        if self.specialized is None:
            return self.predicate
        return self.specialized(protocol, action)


# -- single values -----------------------------------------------------------------------------

_Test = Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(values: Sequence[Any]) -> _Test:
    """Equality with any of ``values`` (``1 == 1.0``; true never equals 1)."""
    bools = frozenset(v for v in values if isinstance(v, bool))
    others = frozenset(v for v in values if not isinstance(v, bool))
    if not bools:

        def test(v: Any) -> bool:
            try:
                return v in others and v.__class__ is not bool
            except TypeError:  # unhashable (a mapping inside a list)
                return False

        return test

    def test_with_bools(v: Any) -> bool:
        if v.__class__ is bool:
            return v in bools
        try:
            return v in others
        except TypeError:
            return False

    return test_with_bools


def _number_test(op: str, bound: float) -> _Test:
    if op == "gt":
        return lambda v: v.__class__ in (int, float) and v > bound
    if op == "gte":
        return lambda v: v.__class__ in (int, float) and v >= bound
    if op == "lt":
        return lambda v: v.__class__ in (int, float) and v < bound
    return lambda v: v.__class__ in (int, float) and v <= bound


def _cidr_test(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> _Test:
    cache: dict[str, bool] = {}

    def inside(v: Any) -> bool:
        if v.__class__ is not str:
            return False
        hit = cache.get(v)
        if hit is None:
            try:
                addr = ipaddress.ip_address(v)
            except ValueError:
                hit = False
            else:
                hit = any(addr in net for net in networks)
            if len(cache) >= _CIDR_CACHE_MAX:
                cache.clear()
            cache[v] = hit
        return hit

    return inside


def _string_test(op: str, value: str) -> _Test:
    if op == "startswith":
        return lambda v: v.__class__ is str and v.startswith(value)
    if op == "endswith":
        return lambda v: v.__class__ is str and v.endswith(value)
    return lambda v: v.__class__ is str and value in v


def _value_tests(op: str | None, values: Sequence[Any], path: _KeyPath) -> list[_Test]:
    """One test per listed value (equality is folded into one set lookup by the caller)."""
    if op in ("gt", "gte", "lt", "lte"):
        tests = []
        for v in values:
            if not _is_number(v):
                raise CompileError(path, f"|{op} needs a number, got {v!r}")
            tests.append(_number_test(op, v))
        return tests
    if op == "cidr":
        tests = []
        for v in values:
            try:
                net = ipaddress.ip_network(str(v), strict=False) if isinstance(v, str) else None
            except ValueError:
                net = None
            if net is None:
                raise CompileError(path, f"|cidr needs a network such as 10.10.0.0/16, got {v!r}")
            tests.append(_cidr_test([net]))
        return tests
    if op == "re":
        tests = []
        for v in values:
            if not isinstance(v, str):
                raise CompileError(path, f"|re needs a regular expression string, got {v!r}")
            try:
                rx = re.compile(v)
            except re.error as exc:
                raise CompileError(path, f"bad regular expression {v!r}: {exc}") from None
            tests.append(_regex_test(rx))
        return tests
    if op in ("startswith", "endswith", "contains"):
        tests = []
        for v in values:
            if not isinstance(v, str):
                raise CompileError(path, f"|{op} needs a string, got {v!r}")
            tests.append(_string_test(op, v))
        return tests
    return [_equals([v]) for v in values]


def _regex_test(rx: re.Pattern[str]) -> _Test:
    search = rx.search
    return lambda v: v.__class__ is str and search(v) is not None


def _any_of(tests: Sequence[_Test]) -> _Test:
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(t(v) for t in tests)


# -- selection entries -------------------------------------------------------------------------


def _on_field(get: Accessor, test: _Test, null_ok: bool) -> Predicate:
    """Apply ``test`` to the field (any element of a list); a missing field → ``null_ok``."""

    def pred(e: Event) -> bool:
        v = get(e)
        if v is MISSING:
            return null_ok
        if v.__class__ is list or v.__class__ is tuple:
            return any(test(x) for x in v)
        return test(v)

    return pred


def _entry(key: str, value: Any, path: _KeyPath) -> Predicate:
    name, *mods = key.split("|")
    for mod in mods:
        if mod not in MODIFIERS:
            raise CompileError(
                path, f"unknown modifier {mod!r} (expected one of: {', '.join(MODIFIERS)})"
            )
    if len(set(mods)) != len(mods):
        raise CompileError(path, "a modifier is repeated")
    ops = [m for m in mods if m != "all"]
    if len(ops) > 1:
        raise CompileError(path, f"at most one of {', '.join(OPERATORS)} per key, got {ops}")
    op = ops[0] if ops else None
    every = "all" in mods
    try:
        get = accessor(name)
    except FieldError as exc:
        raise CompileError(path, str(exc)) from None
    values = list(value) if isinstance(value, list) else [value]

    if op == "exists":
        if len(values) != 1 or not isinstance(values[0], bool) or every:
            raise CompileError(path, "|exists takes true or false")
        want = values[0]
        if "." not in name and name not in ENVELOPE_FIELDS:
            # a key of the event's own record, read in place (absent and null alike missing)
            if want:
                return lambda e: e.fields.get(name) is not None
            return lambda e: e.fields.get(name) is None
        return lambda e: (get(e) is not MISSING) is want
    null_ok = any(v is None for v in values)
    present = [v for v in values if v is not None]
    if op is not None and null_ok:
        raise CompileError(path, f"|{op} cannot test null")
    if every:
        if not present:
            raise CompileError(path, "|all needs values")
        preds = [_on_field(get, t, False) for t in _value_tests(op, present, path)]
        if len(preds) == 1:
            return preds[0]
        return lambda e: all(p(e) for p in preds)
    if not present:  # field: null → missing or null
        return lambda e: get(e) is MISSING
    if op is None:
        test = _equals(present)
    elif op in ("startswith", "endswith") and all(isinstance(v, str) for v in present):
        _value_tests(op, present, path)  # type checks
        prefixes = tuple(present)
        if op == "startswith":
            test = lambda v: v.__class__ is str and v.startswith(prefixes)  # noqa: E731
        else:
            test = lambda v: v.__class__ is str and v.endswith(prefixes)  # noqa: E731
    elif op == "cidr":
        _value_tests(op, present, path)
        nets = [ipaddress.ip_network(v, strict=False) for v in present]
        test = _cidr_test(nets)
    else:
        test = _any_of(_value_tests(op, present, path))
    return _on_field(get, test, null_ok)


def _entry_pins(key: str, value: Any) -> frozenset[object] | None:
    """The values a plain equality entry pins its field to (None: it pins nothing)."""
    if "|" in key:
        return None
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is None or isinstance(v, bool) or not isinstance(v, str | int | float):
            return None
    return frozenset(values)


def _selection_map(selection: Mapping[str, Any], path: _KeyPath) -> tuple[Predicate, Pins]:
    preds = [_entry(k, v, (*path, k)) for k, v in selection.items()]
    pins: Pins = {}
    for k, v in selection.items():
        pinned = _entry_pins(k, v)
        if pinned is not None:
            pins[k] = pinned
    if len(preds) == 1:
        return preds[0], pins
    if len(preds) == 2:
        a, b = preds
        return (lambda e: a(e) and b(e)), pins
    parts = tuple(preds)
    return (lambda e: all(p(e) for p in parts)), pins


def compile_selection(selection: Any, path: _KeyPath) -> tuple[Predicate, Pins]:
    """A selection (map, or list of maps) → (predicate, the field values it pins)."""
    if isinstance(selection, Mapping):
        return _selection_map(selection, path)
    compiled = [_selection_map(item, (*path, i)) for i, item in enumerate(selection)]
    preds = tuple(p for p, _ in compiled)
    maps = [pins for _, pins in compiled]
    common = set(maps[0]).intersection(*maps[1:])
    return _or(preds), {f: frozenset().union(*(m[f] for m in maps)) for f in common}


#: envelope fields the engine knows before testing an event (it indexes rules by them)
_KNOWN_FIELDS: Final = frozenset(("event.action", "network.protocol"))
_NO_CONN: Final = Conn("", "", "", 0, "", 0)


def _field_of(key: str) -> str:
    return key.split("|", 1)[0]


def _touches_known(selection: Any) -> bool:
    maps = [selection] if isinstance(selection, Mapping) else selection
    return any(_field_of(k) in _KNOWN_FIELDS for m in maps for k in m)


def _decided_map(selection: Mapping[str, Any], path: _KeyPath, known: Event) -> Predicate | bool:
    """A selection map for events like ``known`` (same protocol and action): its entries on
    those fields decided, the rest compiled as before; True / False when nothing is left."""
    rest: dict[str, Any] = {}
    for k, v in selection.items():
        if _field_of(k) in _KNOWN_FIELDS:
            if not _entry(k, v, (*path, k))(known):
                return False
        else:
            rest[k] = v
    if not rest:
        return True
    return _selection_map(rest, path)[0]


def decided_selection(selection: Any, path: _KeyPath, known: Event) -> Predicate | bool:
    """``compile_selection``'s predicate for events with ``known``'s protocol and action
    (True / False when they decide it)."""
    if isinstance(selection, Mapping):
        return _decided_map(selection, path, known)
    preds: list[Predicate] = []
    for i, item in enumerate(selection):
        pred = _decided_map(item, (*path, i), known)
        if pred is True:
            return True
        if pred is not False:
            preds.append(pred)
    return _or(preds) if preds else False


def _or(preds: Sequence[Predicate]) -> Predicate:
    if len(preds) == 1:
        return preds[0]
    parts = tuple(preds)
    return lambda e: any(p(e) for p in parts)


# -- templates ---------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def render_value(value: Any) -> str:
    """A field value as text in a message: lists joined by ', ', absent as '?'."""
    if value is MISSING or value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(render_value(v) for v in value) if value else "?"
    return str(value)


def compile_template(text: str, path: _KeyPath) -> Template:
    """``"PLC stop from {source.ip}"`` → a function of an event; ``{{``/``}}`` are braces."""
    parts: list[str | Accessor] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif token in ("{", "}"):
            raise CompileError(path, f"unbalanced {token!r} at column {m.start() + 1}")
        else:
            name = (m.group(1) or "").strip()
            if not name:
                raise CompileError(path, f"empty placeholder at column {m.start() + 1}")
            try:
                parts.append(accessor(name))
            except FieldError as exc:
                raise CompileError(path, f"placeholder {{{name}}}: {exc}") from None
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    frozen = tuple(parts)

    def render(e: Event) -> str:
        return "".join(p if isinstance(p, str) else render_value(p(e)) for p in frozen)

    return render


def _default_message(title: str) -> Template:
    src = accessor("source.ip")
    dst = accessor("destination.ip")
    return lambda e: f"{title} from {render_value(src(e))} to {render_value(dst(e))}"


# -- rules -------------------------------------------------------------------------------------


def compile_rule(data: Mapping[str, Any], source: str = "") -> CompiledRule:
    """Compile schema-valid rule data; CompileError locates anything else wrong."""
    protocol = str(data["logsource"]["protocol"])
    tags = tuple(str(t) for t in data.get("tags", ()))
    try:
        techniques, attack_version = resolve_tags(tags)
    except AttackError as exc:
        raise CompileError(("tags", exc.index), str(exc)) from None

    detection: Mapping[str, Any] = data["detection"]
    names = [k for k in detection if k != "condition"]
    selections: dict[str, Predicate] = {}
    pinned: dict[str, Pins] = {}
    for name in names:
        selections[name], pinned[name] = compile_selection(detection[name], ("detection", name))
    try:
        tree = parse_condition(str(detection["condition"]), names)
    except ConditionError as exc:
        raise CompileError(("detection", "condition"), str(exc)) from None
    predicate: Predicate = build(tree, selections.__getitem__)
    pins = pins_of(tree, pinned)
    action_pins = pins.pop("event.action", None)
    actions = None if action_pins is None else frozenset(str(a) for a in action_pins)

    specialized: Callable[[str, str], Predicate | bool] | None = None
    if any(_touches_known(detection[name]) for name in names):

        def decide(protocol: str, action: str) -> Predicate | bool:
            known = Event(Envelope(0, _NO_CONN, protocol), action)
            decided = {
                name: decided_selection(detection[name], ("detection", name), known)
                if _touches_known(detection[name])
                else selections[name]
                for name in names
            }
            return fold(tree, decided.__getitem__)

        specialized = decide

    correlation = _correlation(data.get("correlation"))
    title = str(data["title"])
    message = (
        compile_template(str(data["message"]), ("message",))
        if "message" in data
        else _default_message(title)
    )
    reason = (
        compile_template(str(data["reason"]), ("reason",)) if "reason" in data else (lambda e: "")
    )
    _check_fixtures(data.get("fixtures") or {}, protocol)

    rule = Rule(
        id=str(data["id"]),
        rev=int(data["rev"]),
        title=title,
        status=str(data["status"]),
        level=str(data["level"]),
        protocol=protocol,
        description=str(data.get("description", "")).strip(),
        references=tuple(str(r) for r in data.get("references", ())),
        tags=tags,
        techniques=techniques,
        attack_version=attack_version if techniques else "",
        falsepositives=tuple(str(f) for f in data.get("falsepositives", ())),
        author=str(data.get("author", "")),
        date=str(data.get("date", "")),
        source=source,
        message=str(data["message"]) if "message" in data else None,
        reason=str(data["reason"]) if "reason" in data else None,
        raw=data,
    )
    return CompiledRule(rule, predicate, actions, pins, correlation, message, reason, specialized)


def _correlation(spec: Mapping[str, Any] | None) -> CorrelationSpec | None:
    if spec is None:
        return None
    group_by = tuple(str(f) for f in spec.get("group-by", ()))
    getters: list[Accessor] = []
    for i, name in enumerate(group_by):
        try:
            getters.append(accessor(name))
        except FieldError as exc:
            raise CompileError(("correlation", "group-by", i), str(exc)) from None
    field_get: Accessor | None = None
    if "field" in spec:
        try:
            field_get = accessor(str(spec["field"]))
        except FieldError as exc:
            raise CompileError(("correlation", "field"), str(exc)) from None
    ((op, threshold),) = spec["condition"].items()
    return CorrelationSpec(
        kind=str(spec["type"]),
        group_by=group_by,
        group_getters=tuple(getters),
        timespan_ns=parse_timespan(str(spec["timespan"])),
        op=str(op),
        threshold=int(threshold),
        field=str(spec["field"]) if "field" in spec else None,
        field_getter=field_get,
    )


def _check_fixtures(fixtures: Mapping[str, Any], protocol: str) -> None:
    for kind in ("match", "nomatch"):
        for i, fixture in enumerate(fixtures.get(kind, ())):
            try:
                fixture_events(fixture, protocol)
            except FixtureError as exc:
                path: _KeyPath = ("fixtures", kind, i)
                if exc.index is not None:
                    path = (*path, exc.index)
                if exc.key is not None:
                    path = (*path, exc.key)
                raise CompileError(path, exc.problem) from None
