"""The rule engine: events in, ``RuleMatch`` objects out.

Rules are indexed by (protocol, ``event.action``): an event is tested only against the rules
indexed under its own protocol and action, its protocol's rules without an action constraint,
and the ``any``-protocol rules. Among those, a rule whose condition pins another field to a few
values (``exception_code: 2``, ``function_code: [5, 6]``) is tested only on events holding one of
them. The split of each (protocol, action) is built once and cached, so an event no rule cares
about costs a dict lookup or two. Matches come in no particular order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from otsentry.detect.compile import CompiledRule
from otsentry.detect.correlation import Correlator
from otsentry.detect.fields import ENVELOPE_FIELDS, MISSING, Accessor, accessor
from otsentry.detect.fixtures import fixture_events
from otsentry.detect.loader import load_rules
from otsentry.detect.model import Predicate, Rule, RuleMatch
from otsentry.model import Event

__all__ = ["NO_MATCHES", "FixtureResult", "RuleEngine", "fixture_results"]

#: the reader of ``anomalies`` (empty on almost every event)
_ANOMALIES: Final = ENVELOPE_FIELDS["anomalies"]

#: what ``match`` returns when nothing matched (shared, never mutated)
NO_MATCHES: Final[tuple[RuleMatch, ...]] = ()

#: (protocol, action) candidate tuples kept at most; actions come from the dissectors' finite
#: vocabularies, the cap only guards against a dissector that mints them from packet bytes
_MAX_CACHED: Final = 4096

_Handler = Callable[[Event], "RuleMatch | None"]
_Candidate = tuple[Predicate, _Handler]
#: a predicate specialised to a (protocol, action); None: the rule holds for every such event
_Test = Predicate | None
_Tested = tuple[_Test, _Handler]
#: a (protocol, action)'s rules: always tested (those that can hold), how many rules that
#: counts as, and by pinned field (record key or None, reader, value → rules)
_Entry = tuple[
    tuple[_Tested, ...],
    int,
    tuple[tuple[str | None, Accessor, Mapping[object, tuple[_Tested, ...]]], ...],
]


def _never(event: Event) -> bool:
    """The specialised predicate of a rule that cannot hold for a (protocol, action)."""
    return False


def _is_record_key(field: str) -> bool:
    """A field that is one key of the event's own protocol record (``exception_code``)."""
    return "." not in field and field not in ENVELOPE_FIELDS


_T = TypeVar("_T", _Candidate, _Tested)


def _lookup(table: Mapping[object, tuple[_T, ...]], value: Any) -> tuple[_T, ...]:
    """The rules pinned to ``value`` or, for a list, to any of its elements (each once)."""
    if value is MISSING:
        return ()
    if not isinstance(value, list | tuple):
        try:
            return table.get(value, ())
        except TypeError:
            return ()
    found: dict[int, _T] = {}
    for item in value:
        try:
            for candidate in table.get(item, ()):
                found[id(candidate[1])] = candidate
        except TypeError:
            continue
    return tuple(found.values())


class RuleEngine:
    """Matches events against compiled rules; holds the correlation state of one run."""

    def __init__(self, rules: Iterable[CompiledRule]) -> None:
        self.compiled: tuple[CompiledRule, ...] = tuple(rules)
        self.rules: tuple[Rule, ...] = tuple(c.rule for c in self.compiled)
        self.correlators: dict[str, Correlator] = {}
        self.matches: Counter[str] = Counter()
        self.events = 0
        self.evaluations = 0
        #: protocol → action → rules pinned to that action
        self._by_action: dict[str, dict[str, list[_Candidate]]] = {}
        #: protocol → rules of that protocol with no action constraint
        self._unpinned: dict[str, list[_Candidate]] = {}
        self._anywhere: list[_Candidate] = []
        self._anywhere_by_action: dict[str, list[_Candidate]] = {}
        self._cache: dict[tuple[str, str], _Entry] = {}
        self._pins: dict[int, Mapping[str, frozenset[object]]] = {}
        self._rank: dict[str, int] = {c.rule.id: i for i, c in enumerate(self.compiled)}
        self._rule_of: dict[int, str] = {}
        self._order: dict[int, int] = {}
        self._compiled: dict[int, CompiledRule] = {}
        for index, compiled in enumerate(self.compiled):
            candidate = (compiled.predicate, self._handler(compiled))
            self._compiled[id(candidate[1])] = compiled
            self._rule_of[id(candidate[1])] = compiled.rule.id
            self._order[id(candidate[1])] = index
            self._pins[id(candidate[1])] = compiled.pins
            protocol = compiled.rule.protocol
            if protocol == "any":
                if compiled.actions is None:
                    self._anywhere.append(candidate)
                else:
                    for action in compiled.actions:
                        self._anywhere_by_action.setdefault(action, []).append(candidate)
            elif compiled.actions is None:
                self._unpinned.setdefault(protocol, []).append(candidate)
            else:
                table = self._by_action.setdefault(protocol, {})
                for action in compiled.actions:
                    table.setdefault(action, []).append(candidate)

    @classmethod
    def load(
        cls,
        paths: Sequence[str | Path] = (),
        *,
        builtin: bool = True,
        disabled: Iterable[str] = (),
    ) -> RuleEngine:
        """An engine over the built-in pack (unless ``builtin=False``) and the rule files or
        directories in ``paths``, less the ``disabled`` ids. Raises RuleError."""
        return cls(load_rules(paths, builtin=builtin, disabled=disabled))

    # -- matching --------------------------------------------------------------------------

    def _handler(self, compiled: CompiledRule) -> _Handler:
        rule = compiled.rule
        message = compiled.message
        reason = compiled.reason
        counts = self.matches
        rid = rule.id
        spec = compiled.correlation
        if spec is None:

            def plain(event: Event) -> RuleMatch:
                counts[rid] += 1
                return RuleMatch(rule, event, event.envelope.ts, message(event), reason(event))

            return plain

        correlator = self.correlators[rid] = Correlator(spec)
        observe = correlator.observe

        def correlated(event: Event) -> RuleMatch | None:
            count = observe(event)
            if count is None:
                return None
            counts[rid] += 1
            group = correlator.group_pairs(correlator.group_of(event))
            return RuleMatch(
                rule, event, event.envelope.ts, message(event), reason(event), count, group
            )

        return correlated

    def candidates(self, protocol: str, action: str) -> tuple[_Candidate, ...]:
        """The (predicate, handler) pairs an event of this protocol and action may be tested
        on, in the order the rules were given."""
        pool = [
            *self._by_action.get(protocol, {}).get(action, ()),
            *self._unpinned.get(protocol, ()),
            *self._anywhere_by_action.get(action, ()),
            *self._anywhere,
        ]
        return tuple(sorted(pool, key=lambda c: self._order[id(c[1])]))

    def candidate_rules(self, protocol: str, action: str) -> list[str]:
        """The ids of the rules an event of this protocol and action may be tested on."""
        return [self._rule_of[id(h)] for _, h in self.candidates(protocol, action)]

    def _split(
        self, protocol: str, action: str
    ) -> tuple[list[_Candidate], dict[str, dict[object, tuple[_Candidate, ...]]]]:
        """The candidates split: rules always tested, and rules tested only when the event
        holds one of the values they pin a field to (by field: value → rules)."""
        always: list[_Candidate] = []
        by_field: dict[str, dict[object, list[_Candidate]]] = {}
        for candidate in self.candidates(protocol, action):
            pins = self._pins[id(candidate[1])]
            if not pins:
                always.append(candidate)
                continue
            field = min(pins, key=lambda f: (len(pins[f]), f))
            table = by_field.setdefault(field, {})
            for value in pins[field]:
                table.setdefault(value, []).append(candidate)
        return always, {f: {v: tuple(c) for v, c in t.items()} for f, t in by_field.items()}

    def _entry(self, protocol: str, action: str) -> _Entry:
        """The cached split of the candidates (``_split``), each predicate specialised to the
        protocol and action (``CompiledRule.specialize``: None when the rule holds whatever
        the rest of the event, left out when it cannot hold), and how many rules the event is
        counted as tested on before the pinned ones."""
        key = (protocol, action)
        entry = self._cache.get(key)
        if entry is not None:
            return entry
        always, by_field = self._split(protocol, action)
        special: dict[int, _Test] = {}
        for candidate in always + [c for t in by_field.values() for cs in t.values() for c in cs]:
            handler = candidate[1]
            if id(handler) not in special:
                decided = self._compiled[id(handler)].specialize(protocol, action)
                special[id(handler)] = (
                    None if decided is True else _never if decided is False else decided
                )
        entry = (
            tuple((special[id(h)], h) for _, h in always if special[id(h)] is not _never),
            len(always),
            tuple(
                (
                    field if _is_record_key(field) else None,
                    accessor(field),
                    {v: tuple((special[id(h)], h) for _, h in cs) for v, cs in table.items()},
                )
                for field, table in sorted(by_field.items())
            ),
        )
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key] = entry
        return entry

    def tested_rules(self, event: Event) -> list[str]:
        """The ids of the rules ``match`` evaluates for this event, in rule order."""
        always, by_field = self._split(event.envelope.protocol, event.action)
        pinned = [(accessor(field), table) for field, table in by_field.items()]
        tested = [*always, *(c for get, table in pinned for c in _lookup(table, get(event)))]
        return sorted({self._rule_of[id(h)] for _, h in tested}, key=self._rank.__getitem__)

    def match(self, event: Event) -> Sequence[RuleMatch]:
        """The rules that hold for ``event`` (correlation rules: those crossing a threshold)."""
        self.events += 1
        entry = self._cache.get((event.envelope.protocol, event.action))
        if entry is None:
            entry = self._entry(event.envelope.protocol, event.action)
        always, tested, pinned = entry
        out: list[RuleMatch] | None = None
        if tested:
            self.evaluations += tested
            for predicate, handler in always:
                if predicate is None or predicate(event):
                    hit = handler(event)
                    if hit is not None:
                        if out is None:
                            out = [hit]
                        else:
                            out.append(hit)
        for record_key, get, table in pinned:
            # a key of the protocol record is read in place, other fields through their reader
            if record_key is not None:
                value = event.fields.get(record_key, MISSING)
            elif get is _ANOMALIES:  # pinned by the cross-protocol rules: read in place too
                value = event.anomalies
                if not value:
                    continue
            else:
                value = get(event)
            if value is MISSING or value is None:
                continue
            if value.__class__ is list or value.__class__ is tuple:
                found = _lookup(table, value)
            else:
                try:
                    found = table.get(value, ())
                except TypeError:  # unhashable: a mapping
                    found = ()
            if not found:
                continue
            self.evaluations += len(found)
            for predicate, handler in found:
                if predicate is None or predicate(event):
                    hit = handler(event)
                    if hit is not None:
                        if out is None:
                            out = [hit]
                        else:
                            out.append(hit)
        return NO_MATCHES if out is None else tuple(out)

    # -- counters --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Rules loaded, events tested, rule evaluations, matches per rule id, correlation
        groups held and evicted."""
        return {
            "rules": len(self.compiled),
            "events": self.events,
            "evaluations": self.evaluations,
            "matches": dict(sorted(self.matches.items())),
            "correlation_groups": sum(len(c.groups) for c in self.correlators.values()),
            "correlation_groups_evicted": sum(c.evicted for c in self.correlators.values()),
        }


# -- fixtures ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FixtureResult:
    """One fixture of a rule run on a fresh engine: ``match`` ones must match, ``nomatch`` not."""

    rule_id: str
    kind: str  # "match" | "nomatch"
    index: int
    matches: int

    @property
    def passed(self) -> bool:
        """A match fixture matched at least once; a nomatch fixture never did."""
        return (self.matches > 0) == (self.kind == "match")

    def __str__(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        seen = f"{self.matches} match" + ("" if self.matches == 1 else "es")
        return f"{self.rule_id} fixtures.{self.kind}[{self.index}]: {verdict} ({seen})"


def fixture_results(compiled: CompiledRule) -> list[FixtureResult]:
    """Run a rule's fixtures, each on a fresh engine holding only that rule."""
    fixtures = compiled.rule.raw.get("fixtures") or {}
    results: list[FixtureResult] = []
    for kind in ("match", "nomatch"):
        for index, fixture in enumerate(fixtures.get(kind, ())):
            engine = RuleEngine([compiled])
            hits = sum(
                len(engine.match(event))
                for event in fixture_events(fixture, compiled.rule.protocol)
            )
            results.append(FixtureResult(compiled.rule.id, kind, index, hits))
    return results
