"""Per-link, per-time-window feature vectors for the baseline's outlier model.

A **link** is (segment, client IP, server IP, service): the service is the ICS protocol of the
events or flows (``modbus``, ``s7comm`` — S7comm-plus included —, ``opcua``, or the ICS service
of a well-known port a flow went to, ``enip``…) and ``other`` for every other port, so that a
port scan or a burst of connections to IT services is one window of a host pair, not one per
port. A **window** is a slice of
packet time ``window_seconds`` long, counted from the first event the extractor saw (so a
replay's windows do not depend on the wall clock). Every event of a link adds to the link's
window that holds its time; a window closes when the segment's packet time (the newest event
time seen) passes its end by ``grace_seconds`` — events are reported a little after the packets
that made them (a transaction at its response, an unanswered request at its timeout), and the
grace lets them land where they belong. An event for a window already closed goes to the link's
newest open window (counted as ``late``). Windows still open when a run ends did not cover their
whole length and are returned ``complete=False``: neither learning nor scoring uses them.

Features of a window (names in ``GENERIC_FEATURES``; every value is a non-negative number):

- ``action.<event.action>``: protocol events of that action (``action.modbus-write-single-coil``);
  which actions become features is decided by the model from its training windows;
- ``actions_distinct``: distinct actions; ``failures``: events with outcome ``failure``
  (exceptions, error classes, service faults, refused jobs); ``unanswered``: outcome
  ``unknown`` (requests without a response); ``anomalies``: events carrying a dissector anomaly;
- ``addresses_distinct``: distinct data addresses touched — Modbus (unit, function, start
  address), S7 items (area, DB, byte), OPC UA node, method and browse-path ids;
  ``units_distinct``: distinct Modbus unit ids and S7 (area, DB) pairs; ``items``: data items
  asked for — Modbus quantity, S7 item count, OPC UA node / item / method / path count;
- ``gap_mean_ms`` / ``gap_std_ms`` / ``gap_max_ms``: time between consecutive protocol events of
  the link (the first event's gap reaches back to the link's previous window); left out of
  ``values`` (missing, not 0) when the window has fewer than two gaps (no protocol event, or
  one or two: too few to say anything about the link's rhythm);
- ``flows_started``, ``flows_ended``, ``flows_failed`` (rejected or unanswered connections):
  from the network events (a flow whose protocol is not known when it starts — found later by
  probing its payload — is counted at its first protocol event, or at its end); ``flow_kib``:
  KiB both ways of the flows that ended in the window and lasted at most one window (a
  long-lived polling connection's total would land as one lump in the window it closes in, and
  say nothing about that window).

State is bounded: at most ``max_links`` links are remembered (least recently active evicted) and
``max_open_windows`` windows open (the oldest closed early, ``complete=False``), at most
``max_pending_flows`` undecided flow starts (the oldest counted under ``other``); a window keeps
at most ``max_distinct`` addresses, units and actions (further ones are counted, not
remembered).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from otsentry.baseline.aspect import MAPPINGS
from otsentry.model import Event

__all__ = [
    "ACTION_PREFIX",
    "GENERIC_FEATURES",
    "OPTIONAL_FEATURES",
    "LinkKey",
    "WindowExtractor",
    "WindowVector",
    "link_of",
]

#: prefix of the per-action count features
ACTION_PREFIX: Final = "action."
#: the features every window has, in the model's order (per-action counts follow them)
GENERIC_FEATURES: Final[tuple[str, ...]] = (
    "actions_distinct",
    "failures",
    "unanswered",
    "anomalies",
    "addresses_distinct",
    "units_distinct",
    "items",
    "gap_mean_ms",
    "gap_std_ms",
    "gap_max_ms",
    "flows_started",
    "flows_ended",
    "flows_failed",
    "flow_kib",
)
#: features a window may lack (missing rather than 0)
OPTIONAL_FEATURES: Final[frozenset[str]] = frozenset({"gap_mean_ms", "gap_std_ms", "gap_max_ms"})

NETWORK: Final = "network"
#: a time no packet reaches
_NEVER: Final = float("inf")
FLOW_START: Final = "network-flow-start"
FLOW_END: Final = "network-flow-end"

OTHER_SERVICE: Final = "other"
#: the transports whose flows are links
_LINK_TRANSPORTS: Final = ("tcp", "udp")
#: protocols counted under another's service
_SERVICE_OF: Final = {"s7comm_plus": "s7comm"}

#: (segment, client IP, server IP, service)
LinkKey = tuple[str, str, str, str]


def link_of(event: Event) -> LinkKey | None:
    """The link an event belongs to; None for events of no link (ARP)."""
    env = event.envelope
    conn = env.conn
    if conn.transport not in _LINK_TRANSPORTS:
        return None
    service = env.protocol
    if service == NETWORK:
        service = _flow_service(event.fields) or OTHER_SERVICE
    return (conn.segment, conn.client_ip, conn.server_ip, _SERVICE_OF.get(service, service))


def _flow_service(fields: Mapping[str, Any]) -> str:
    return str(fields.get("protocol") or fields.get("ics_service") or "")


@dataclass(frozen=True, slots=True)
class WindowVector:
    """One closed window of one link: its features by name, and the event that stands for it.

    ``start`` is the window's first instant (ns); ``complete`` is False for a window that did
    not cover its whole length (open when the run ended, or closed early by the cap).
    """

    link: LinkKey
    start: int
    end: int
    values: Mapping[str, float]
    events: int
    complete: bool = True
    sample: Event | None = None

    def describe(self) -> str:
        """``10.10.30.66 → 10.10.30.5 modbus``."""
        _, client, server, service = self.link
        return f"{client} → {server} {service}"


@dataclass(slots=True)
class _Window:
    """The counters of one open window."""

    index: int
    events: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    addresses: set[Any] = field(default_factory=set)
    units: set[Any] = field(default_factory=set)
    failures: int = 0
    unanswered: int = 0
    anomalies: int = 0
    items: int = 0
    gaps: int = 0
    gap_sum: float = 0.0
    gap_sumsq: float = 0.0
    gap_max: float = 0.0
    flows_started: int = 0
    flows_ended: int = 0
    flows_failed: int = 0
    flow_bytes: int = 0
    sample: Event | None = None


@dataclass(slots=True)
class _Link:
    """What a link remembers between windows."""

    last_ts: int | None = None
    windows: dict[int, _Window] = field(default_factory=dict)


@dataclass(slots=True)
class ExtractorStats:
    """Counters of a ``WindowExtractor``."""

    events: int = 0
    ignored: int = 0  # events of no link (ARP)
    late: int = 0
    flow_starts_deferred: int = 0
    pending_evicted: int = 0
    windows_closed: int = 0
    windows_incomplete: int = 0
    links_evicted: int = 0
    windows_forced: int = 0  # closed early because too many were open
    capped: int = 0  # addresses / units / actions not remembered because a window was full

    def as_dict(self) -> dict[str, int]:
        """The counters as plain data."""
        return {
            "events": self.events,
            "ignored": self.ignored,
            "late": self.late,
            "flow_starts_deferred": self.flow_starts_deferred,
            "pending_evicted": self.pending_evicted,
            "windows_closed": self.windows_closed,
            "windows_incomplete": self.windows_incomplete,
            "links_evicted": self.links_evicted,
            "windows_forced": self.windows_forced,
            "capped": self.capped,
        }


class WindowExtractor:
    """Turns a segment's events into closed per-link windows (see the module doc).

    ``add(event)`` and ``advance(ts)`` return the windows that closed because packet time
    moved on; ``flush()`` closes the rest, marked incomplete; ``reset()`` starts afresh.
    """

    def __init__(
        self,
        window_seconds: float = 10.0,
        *,
        grace_seconds: float | None = None,
        max_links: int = 4_096,
        max_open_windows: int = 16_384,
        max_distinct: int = 4_096,
        max_pending_flows: int = 4_096,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.window_ns = int(window_seconds * 1e9)
        grace = min(window_seconds, 2.0) if grace_seconds is None else grace_seconds
        self.grace_ns = int(grace * 1e9)
        self.max_links = max_links
        self.max_open = max_open_windows
        self.max_distinct = max_distinct
        self.max_pending = max_pending_flows
        #: community id → flow-start events whose protocol was not known yet
        self._pending: OrderedDict[str, Event] = OrderedDict()
        self.origin: int | None = None
        #: the packet time at which the next window closes (set once ``origin`` is; computed
        #: when ``_low`` moves, so that most events only compare their time with it)
        self.due: float = _NEVER
        self._links: OrderedDict[LinkKey, _Link] = OrderedDict()
        self._open = 0
        #: window index → the links with a window open at it (closing looks only here)
        self._at: dict[int, set[LinkKey]] = {}
        #: the lowest window index that may still be open (closing scans start here)
        self._low = 0
        self.stats = ExtractorStats()

    def __len__(self) -> int:
        """Windows open."""
        return self._open

    # -- input ------------------------------------------------------------------------------
    def add(self, event: Event) -> list[WindowVector]:
        """Count ``event`` into its link's window; return windows that closed meanwhile."""
        stats = self.stats
        stats.events += 1
        env = event.envelope
        conn = env.conn
        ts = env.ts
        if conn.transport not in _LINK_TRANSPORTS:  # no link (ARP)
            stats.ignored += 1
            return self.advance(ts)
        # the link as ``link_of`` makes it
        service = env.protocol
        flow_service = ""
        if service == NETWORK:
            flow_service = _flow_service(event.fields)
            service = flow_service or OTHER_SERVICE
        key = (conn.segment, conn.client_ip, conn.server_ip, _SERVICE_OF.get(service, service))
        origin = self.origin
        if origin is None:
            origin = self.origin = ts
            self.due = ts + self.grace_ns + self.window_ns
        closed = self.advance(ts) if ts >= self.due else []
        if not flow_service and event.action == FLOW_START:
            self._defer(event, ts, closed)
            return closed
        # the common case (the link's window for ``ts`` is open) without ``_window_for``
        links = self._links
        link = links.get(key)
        index = (ts - origin) // self.window_ns
        window = link.windows.get(index) if link is not None and index >= self._low else None
        if link is None or window is None:
            window, link = self._window_for(key, ts, closed)
        else:
            links.move_to_end(key)
        self._count(window, link, event, ts)
        if self._pending:
            start = self._pending.pop(event.envelope.conn.community_id, None)
            if start is not None:  # the flow's start, counted where its protocol is known
                window.flows_started += 1
                window.events += 1
        return closed

    def _defer(self, event: Event, ts: int, closed: list[WindowVector]) -> None:
        self.stats.flow_starts_deferred += 1
        pending = self._pending
        pending[event.envelope.conn.community_id] = event
        if len(pending) > self.max_pending:
            _, oldest = pending.popitem(last=False)
            self.stats.pending_evicted += 1
            key = link_of(oldest)
            if key is not None:
                self._count(*self._window_for(key, ts, closed), oldest, ts)

    def advance(self, ts: int) -> list[WindowVector]:
        """Packet time reached ``ts``: close the windows it has passed (with the grace)."""
        if ts < self.due:  # also when there is no origin yet
            return []
        assert self.origin is not None
        # windows whose end + grace <= ts close: index < (ts - grace - origin) // W; ``due``
        # is the first time at which that is more than ``_low``
        first_open = (ts - self.grace_ns - self.origin) // self.window_ns
        self._low = first_open
        self.due = self.origin + self.grace_ns + (first_open + 1) * self.window_ns
        return self._close_before(first_open)

    def flush(self) -> list[WindowVector]:
        """Close every window still open (marked incomplete); the links are kept."""
        out: list[WindowVector] = []
        for key, link in self._links.items():
            for index in sorted(link.windows):
                out.append(self._vector(key, link, link.windows[index], complete=False))
            link.windows.clear()
        self._open = 0
        self._at.clear()
        out.sort(key=_order)
        return out

    def reset(self) -> None:
        """Forget every link and the time origin (a new run starts); counters are kept."""
        self.flush()
        self._links.clear()
        self._pending.clear()
        self.origin = None
        self.due = _NEVER
        self._low = 0

    # -- windows ----------------------------------------------------------------------------
    def _window_for(
        self, key: LinkKey, ts: int, closed: list[WindowVector]
    ) -> tuple[_Window, _Link]:
        """The window ``key``'s event at ``ts`` counts in, and the link."""
        assert self.origin is not None
        links = self._links
        link = links.get(key)
        if link is None:
            link = links[key] = _Link()
            if len(links) > self.max_links:
                self._evict_link(closed)
        else:
            links.move_to_end(key)
        index = (ts - self.origin) // self.window_ns
        if index < 0:
            index = 0
        if index < self._low:  # its window has closed: the newest open one takes it
            self.stats.late += 1
            index = max(link.windows) if link.windows else self._low
        window = link.windows.get(index)
        if window is None:
            window = link.windows[index] = _Window(index)
            self._open += 1
            at = self._at.get(index)
            if at is None:
                self._at[index] = {key}
            else:
                at.add(key)
            if self._open > self.max_open:
                self._force_oldest(closed, keep=(key, index))
        return window, link

    def _close_before(self, index: int) -> list[WindowVector]:
        at = self._at
        due = [i for i in at if i < index]
        if not due:
            return []
        out: list[WindowVector] = []
        links = self._links
        for i in due:
            for key in at.pop(i):
                link = links[key]
                out.append(self._vector(key, link, link.windows.pop(i), complete=True))
                self._open -= 1
        out.sort(key=_order)
        return out

    def _forget(self, key: LinkKey, index: int) -> None:
        """``key``'s window at ``index`` is no longer open."""
        at = self._at[index]
        at.discard(key)
        if not at:
            del self._at[index]

    def _evict_link(self, closed: list[WindowVector]) -> None:
        key, link = self._links.popitem(last=False)
        self.stats.links_evicted += 1
        for index in sorted(link.windows):
            closed.append(self._vector(key, link, link.windows[index], complete=False))
            self._forget(key, index)
            self._open -= 1

    def _force_oldest(self, closed: list[WindowVector], keep: tuple[LinkKey, int]) -> None:
        oldest: tuple[int, LinkKey] | None = None
        for key, link in self._links.items():
            for index in link.windows:
                if (key, index) != keep and (oldest is None or (index, key) < oldest):
                    oldest = (index, key)
        if oldest is None:
            return
        index, key = oldest
        link = self._links[key]
        closed.append(self._vector(key, link, link.windows.pop(index), complete=False))
        self._forget(key, index)
        self._open -= 1
        self.stats.windows_forced += 1

    def _vector(self, key: LinkKey, link: _Link, w: _Window, *, complete: bool) -> WindowVector:
        assert self.origin is not None
        if complete:
            self.stats.windows_closed += 1
        else:
            self.stats.windows_incomplete += 1
        values: dict[str, float] = {
            "actions_distinct": float(len(w.actions)),
            "failures": float(w.failures),
            "unanswered": float(w.unanswered),
            "anomalies": float(w.anomalies),
            "addresses_distinct": float(len(w.addresses)),
            "units_distinct": float(len(w.units)),
            "items": float(w.items),
            "flows_started": float(w.flows_started),
            "flows_ended": float(w.flows_ended),
            "flows_failed": float(w.flows_failed),
            "flow_kib": w.flow_bytes / 1024,
        }
        if w.gaps >= 2:
            mean = w.gap_sum / w.gaps
            var = max(0.0, w.gap_sumsq / w.gaps - mean * mean)
            values["gap_mean_ms"] = mean / 1e6
            values["gap_std_ms"] = math.sqrt(var) / 1e6
            values["gap_max_ms"] = w.gap_max / 1e6
        for action, count in sorted(w.actions.items()):
            values[ACTION_PREFIX + action] = float(count)
        start = self.origin + w.index * self.window_ns
        return WindowVector(
            link=key,
            start=start,
            end=start + self.window_ns,
            values=values,
            events=w.events,
            complete=complete,
            sample=w.sample,
        )

    # -- counting ---------------------------------------------------------------------------
    def _count(self, w: _Window, link: _Link, event: Event, ts: int) -> None:
        w.events += 1
        protocol = event.envelope.protocol
        if protocol == NETWORK:
            self._count_flow(w, event)
            if w.sample is None:
                w.sample = event
            return
        sample = w.sample
        if sample is None or sample.envelope.protocol == NETWORK:
            w.sample = event
        action = event.action
        actions = w.actions
        if action in actions:
            actions[action] += 1
        elif len(actions) < self.max_distinct:
            actions[action] = 1
        else:
            self.stats.capped += 1
        outcome = event.outcome
        if outcome == "failure":
            w.failures += 1
        elif outcome == "unknown":
            w.unanswered += 1
        if event.anomalies:
            w.anomalies += 1
        last = link.last_ts
        if last is not None:
            gap = ts - last if ts > last else 0
            w.gaps += 1
            w.gap_sum += gap
            w.gap_sumsq += float(gap) * gap
            if gap > w.gap_max:
                w.gap_max = gap
        if last is None or ts > last:
            link.last_ts = ts
        fields = event.fields
        quantity = fields.get("quantity")
        w.items += quantity if type(quantity) is int else _items(fields)
        # units and addresses: a Modbus request's from its fields, others' from their records
        # (what a window has seen already is passed over without calling ``_remember``)
        unit = fields.get("unit_id")
        address = fields.get("address")
        if unit is not None:
            units = w.units
            unit_key = ("unit", unit)
            if unit_key not in units:
                self._remember(units, unit_key)
        if isinstance(address, int):
            addresses = w.addresses
            address_key = ("modbus", unit, fields.get("function_code"), address)
            if address_key not in addresses:
                self._remember(addresses, address_key)
        if not _RECORD_KEYS.isdisjoint(fields):
            self._count_records(w, fields)

    def _count_records(self, w: _Window, fields: Mapping[str, Any]) -> None:
        """The units and addresses of an event's records: S7 items (area, DB, byte), OPC UA
        nodes, methods and paths."""
        units, addresses = w.units, w.addresses
        items = fields.get("items")
        if isinstance(items, list | tuple):
            # one pass: each item's unit and address
            for item in items:
                if not isinstance(item, MAPPINGS):
                    continue
                address_key: Any
                if "area" in item:
                    area, db = item.get("area"), item.get("db")
                    unit_key = ("area", area, db)
                    if unit_key not in units:
                        self._remember(units, unit_key)
                    address_key = ("s7", area, db, item.get("byte"))
                elif "node_id" in item:
                    address_key = ("node", item["node_id"])
                else:
                    continue
                if address_key not in addresses:
                    self._remember(addresses, address_key)
        if "nodes" in fields or "methods" in fields or "paths" in fields:
            for address_key in _other_record_addresses(fields):
                if address_key not in addresses:
                    self._remember(addresses, address_key)

    def _remember(self, seen: set[Any], item: Any) -> None:
        """Add ``item`` (not in ``seen``) unless the window is full."""
        if len(seen) < self.max_distinct:
            seen.add(item)
        else:
            self.stats.capped += 1

    def _count_flow(self, w: _Window, event: Event) -> None:
        fields = event.fields
        if event.action == FLOW_START:
            w.flows_started += 1
        elif event.action == FLOW_END:
            w.flows_ended += 1
            if event.outcome == "failure":
                w.flows_failed += 1
            duration = event.duration_ns
            if duration is not None and duration <= self.window_ns:
                w.flow_bytes += _int(fields.get("bytes_to_server")) + _int(
                    fields.get("bytes_to_client")
                )


def _order(v: WindowVector) -> tuple[int, LinkKey]:
    return (v.start, v.link)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


_COUNT_KEYS: Final = ("node_count", "item_count", "method_count", "path_count")


def _items(fields: Mapping[str, Any]) -> int:
    quantity = fields.get("quantity")
    if isinstance(quantity, int) and not isinstance(quantity, bool):
        return quantity
    for key in _COUNT_KEYS:
        n = fields.get(key)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return 0


#: the fields that hold lists of records (S7 items, OPC UA nodes, methods and paths)
_RECORD_KEYS: Final = frozenset({"items", "nodes", "methods", "paths"})


def _other_record_addresses(fields: Mapping[str, Any]) -> Iterable[Any]:
    """The addresses in an event's OPC UA nodes, methods and paths (``_count_records`` does the
    items)."""
    for node in _records(fields.get("nodes")):
        node_id = node.get("node_id")
        if node_id is not None:
            yield ("node", node_id)
    for method in _records(fields.get("methods")):
        yield ("method", method.get("object_id"), method.get("method_id"))
    for path in _records(fields.get("paths")):
        yield ("path", path.get("start_node"), path.get("path"))


def _records(value: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, MAPPINGS):
                yield item
