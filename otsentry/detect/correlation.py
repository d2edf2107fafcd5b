"""Thresholds over a rule's matches: ``event_count`` and ``value_count`` in a sliding window.

Time is packet time (``Envelope.ts``). Each group (the ``group-by`` values) keeps the times of its
matches (event_count) or the last time of each distinct value (value_count) inside the window.
When the count first meets the condition the correlation fires with that count and the group's
window starts again. State is bounded: ``MAX_GROUPS`` groups per rule, least recently seen
evicted first (counted in ``evicted``), and ``MAX_ENTRIES`` times or values per group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Final

from otsentry.detect.fields import (
    CONN_ATTRIBUTES,
    ENVELOPE_FIELDS,
    FLOW_FIELDS,
    MISSING,
    Accessor,
)
from otsentry.model import Conn, Event

__all__ = [
    "MAX_ENTRIES",
    "MAX_GROUPS",
    "CorrelationSpec",
    "Correlator",
    "parse_timespan",
]

MAX_GROUPS: Final = 65_536
MAX_ENTRIES: Final = 1_024
#: flows whose group key is remembered (cleared when full; an entry keeps its flow's Conn alive,
#: ended or not, so a larger cap costs memory on long captures, not speed)
_FLOW_KEYS_MAX: Final = 1_024


_UNITS: Final = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_timespan(text: str) -> int:
    """``60s`` / ``5m`` / ``1h`` → nanoseconds (ValueError otherwise)."""
    text = text.strip()
    unit = _UNITS.get(text[-1:])
    if unit is None or not text[:-1].isdigit() or int(text[:-1]) <= 0:
        raise ValueError(f"bad timespan {text!r} (expected e.g. 60s, 5m, 1h)")
    return int(text[:-1]) * unit


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """A rule's ``correlation`` block, compiled."""

    kind: str  # event_count | value_count
    group_by: tuple[str, ...]
    group_getters: tuple[Accessor, ...]
    timespan_ns: int
    op: str  # gte | gt
    threshold: int
    field: str | None = None
    field_getter: Accessor | None = None

    def holds(self, count: int) -> bool:
        """Whether ``count`` meets the condition."""
        return count > self.threshold if self.op == "gt" else count >= self.threshold


def _key(value: Any) -> Any:
    """A field value as a dict key (strings and integers as they are)."""
    cls = value.__class__
    if cls is str or cls is int:
        return value
    return _hashable(value)


def _hashable(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


class _Group:
    """One group's window: match times (event_count) or the last time of each distinct value
    (value_count). Only the kind's own container is made, and times are a list (a deque costs
    ~600 bytes even empty): a flood of sources makes tens of thousands of groups."""

    __slots__ = ("times", "values")

    times: list[int]
    values: OrderedDict[Any, int]

    def __init__(self, value_count: bool) -> None:
        if value_count:
            self.values = OrderedDict()
        else:
            self.times = []


class Correlator:
    """The state of one correlation rule: its groups and their windows."""

    def __init__(
        self, spec: CorrelationSpec, max_groups: int = MAX_GROUPS, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.spec = spec
        self.max_groups = max_groups
        self.max_entries = max_entries
        self.groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        #: groups dropped because ``max_groups`` were held
        self.evicted = 0
        self._group_of = self._grouper()
        self._value_count = spec.kind == "value_count"
        self._observe: Callable[[_Group, Event, int], int] = (
            self._count_values if spec.kind == "value_count" else self._count_events
        )
        field = spec.field
        #: value_count's field when it is a key of the event's own record (``unit_id``)
        self._field_key = (
            field
            if field is not None and "." not in field and field not in ENVELOPE_FIELDS
            else None
        )
        #: the least count that fires (``spec.holds`` as one comparison)
        self._fires_at = spec.threshold + 1 if spec.op == "gt" else spec.threshold

    def group_of(self, event: Event) -> tuple[Any, ...]:
        """The group-by values of an event."""
        return self._group_of(event)

    def _grouper(self) -> Callable[[Event], tuple[Any, ...]]:
        getters = self.spec.group_getters
        if not getters:
            return lambda e: ()
        if len(getters) == 1:
            (g0,) = getters
            plain: Callable[[Event], tuple[Any, ...]] = lambda e: (_key(g0(e)),)  # noqa: E731
        elif len(getters) == 2:
            g0, g1 = getters
            plain = lambda e: (_key(g0(e)), _key(g1(e)))  # noqa: E731
        else:
            plain = lambda e: tuple(_key(g(e)) for g in getters)  # noqa: E731
        if not FLOW_FIELDS.issuperset(self.spec.group_by):
            return plain
        # the group key of a Conn attribute that is a string, an integer or None is the
        # attribute itself (what ``_key`` of its reader gives)
        attrs = [CONN_ATTRIBUTES.get(f) for f in self.spec.group_by]
        if len(attrs) == 2 and attrs[0] and attrs[1]:
            # read from the Conn in one call; anything but a string, integer or None (never in
            # a flow's Conn) goes the general way
            of_conn = attrgetter(attrs[0], attrs[1])

            def two(e: Event) -> tuple[Any, ...]:
                key: tuple[Any, Any] = of_conn(e.envelope.conn)
                a, b = key
                if (a.__class__ is str or a.__class__ is int or a is None) and (
                    b.__class__ is str or b.__class__ is int or b is None
                ):
                    return key
                return plain(e)

            return two
        if len(attrs) == 1 and attrs[0]:
            attr = attrs[0]

            def one(e: Event) -> tuple[Any, ...]:
                a = getattr(e.envelope.conn, attr)
                if a.__class__ is str or a.__class__ is int or a is None:
                    return (a,)
                return plain(e)

            return one
        # grouped by what a flow's events share (source.ip, destination.ip…): one key per flow,
        # found by the Conn's identity (holding the Conn keeps its id from being reused)
        by_flow: dict[int, tuple[Conn, tuple[Any, ...]]] = {}

        def of_flow(e: Event) -> tuple[Any, ...]:
            conn = e.envelope.conn
            hit = by_flow.get(id(conn))
            if hit is not None and hit[0] is conn:
                return hit[1]
            if len(by_flow) >= _FLOW_KEYS_MAX:
                by_flow.clear()
            key = plain(e)
            by_flow[id(conn)] = (conn, key)
            return key

        return of_flow

    def observe(self, event: Event) -> int | None:
        """Count a match; the count reached when the condition holds (then the group restarts),
        else None."""
        key = self._group_of(event)
        groups = self.groups
        group = groups.get(key)
        if group is None:
            if len(groups) >= self.max_groups:
                groups.popitem(last=False)
                self.evicted += 1
            group = groups[key] = _Group(self._value_count)
        else:
            groups.move_to_end(key)
        count = self._observe(group, event, event.envelope.ts)
        if count >= self._fires_at:
            del groups[key]
            return count
        return None

    def _count_events(self, group: _Group, event: Event, ts: int) -> int:
        times = group.times
        start = ts - self.spec.timespan_ns
        stale = 0
        for seen in times:
            if seen > start:
                break
            stale += 1
        if len(times) - stale >= self.max_entries:
            stale += 1
        if stale:
            del times[:stale]
        times.append(ts)
        return len(times)

    def _count_values(self, group: _Group, event: Event, ts: int) -> int:
        if self._field_key is not None:  # a key of the event's own record, read in place
            value = event.fields.get(self._field_key, MISSING)
            if value is None:
                value = MISSING
        else:
            getter = self.spec.field_getter
            value = getter(event) if getter is not None else MISSING
        values = group.values
        start = ts - self.spec.timespan_ns
        # values are kept oldest first: only when the oldest has aged out is there work to do
        if values and next(iter(values.values())) <= start:
            stale = []
            for old, seen in values.items():
                if seen > start:
                    break
                stale.append(old)
            for old in stale:
                del values[old]
        if value is MISSING:
            return len(values)
        cls = value.__class__
        if cls is int or cls is str:  # the common case: one plain value (a unit id, an address)
            if value in values:
                values.move_to_end(value)
            elif len(values) >= self.max_entries:
                values.popitem(last=False)
            values[value] = ts
            return len(values)
        items = value if isinstance(value, list | tuple) else (value,)
        for item in items:
            key = _key(item)
            if key in values:
                values.move_to_end(key)
            elif len(values) >= self.max_entries:
                values.popitem(last=False)
            values[key] = ts
        return len(values)

    def group_pairs(self, key: tuple[Any, ...]) -> tuple[tuple[str, Any], ...]:
        """``((field, value), …)`` for a group key, as ``RuleMatch.group`` holds them."""
        return tuple(zip(self.spec.group_by, key, strict=True))
