"""Polling periods and silences (``timing`` aspect).

A *cycle* is one request a client repeats to a server: a Modbus (unit, function, address,
quantity), an S7 read/write var with its items or a userdata function, an OPC UA Read of a node
list or the Publish requests of a subscription (keyed by its publishing interval, which
survives a new session, unlike the subscription id). Learning keeps the intervals between a
cycle's requests (a deterministic reservoir of at most 512: when full, every other one is
dropped and only every second interval is kept from then on) and derives:

- ``period``: the median interval; intervals over 50 periods are *breaks* (a session ended, two
  captures were learned together) and count neither for the period nor for the jitter;
- ``jitter``: half the spread between the 10th and 90th percentiles;
- the cycle is periodic when that spread is at most half the period and it has at least
  ``min_intervals`` (8) intervals; only periodic cycles are written and checked;
- ``tolerance``: max(4 x jitter, a quarter of the period, 5 ms);
- ``silent_after``: max(``silence_factor`` (10) x period, 2 x the longest interval,
  ``min_silence`` (5 s)).

Detection:

- ``period_change`` (T0830, T0856, T0831): the median of a cycle's last five intervals is more
  than ``tolerance`` from the period; reported when it leaves the band and again only after it
  came back within half the tolerance.
- ``channel_silent`` (T0814 with T0804 for reads, T0803 for writes): a cycle seen in *this* run
  has had no request for ``silent_after``. Cycles never seen in the run are not expected (a
  baseline covers more than one capture); a cycle whose connection was closed by FIN or RST
  is not silent but ended (a client shut down or a session finished), until it comes back.
  Deadlines sit in a heap with one entry per cycle: each event checks only the heap's top
  (``tick`` and ``finish`` do the same at the pipeline's tick and at the end of the run), and
  an entry whose cycle has moved on is pushed again at its new deadline, so a cycle costs one
  heap operation per ``silent_after``, not per request.

Bounded: learning keeps ``max_cycles`` (4 096) cycles seen at least twice plus 1 024 seen once
(``TieredTable``; a sweep of single requests churns through the latter); detection state exists
only for learned periodic cycles.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, Self

from otsentry.baseline.aspect import (
    MAPPINGS,
    AnomalyKind,
    Aspect,
    AspectContext,
    AspectDataError,
    Deviation,
    iso,
)
from otsentry.baseline.items import parse_iso
from otsentry.baseline.tiered import TieredTable
from otsentry.model import Direction, Event

__all__ = ["Cycle", "CycleStats", "TimingAspect", "cycle_key"]

#: (protocol, client, server, server port, request signature as sorted (name, value) pairs)
Key = tuple[str, str, str, int, tuple[tuple[str, Any], ...]]

NS = 1_000_000_000
RESERVOIR = 512
MIN_INTERVALS = 8
SILENCE_FACTOR = 10.0
MIN_SILENCE = 5.0
BREAK_FACTOR = 50
RECENT = 5
MAX_CYCLES = 4_096
MAX_SUBSCRIPTIONS = 4_096
_WRITES = ("write", "force", "modify")


# -- cycle keys -------------------------------------------------------------------------------
def _s7_items(items: Any) -> str:
    if not isinstance(items, list):
        return ""
    out = []
    for item in items[:8]:
        if isinstance(item, MAPPINGS):
            area = item.get("area_name") or item.get("area")
            db = item.get("db")
            where = f"DB{db}" if area == "data_block" else str(area)
            out.append(f"{where}@{item.get('byte')}[{item.get('length')}]")
    if len(items) > 8:
        out.append(f"+{len(items) - 8}")
    return " ".join(out)


def _opcua_nodes(nodes: Any) -> str:
    if not isinstance(nodes, list):
        return ""
    ids = [str(n.get("node_id")) for n in nodes[:8] if isinstance(n, MAPPINGS)]
    if len(nodes) > 8:
        ids.append(f"+{len(nodes) - 8}")
    return " ".join(ids)


def cycle_key(event: Event, interval: float | None = None) -> Key | None:
    """The cycle ``event`` belongs to, or None (responses alone, network events, other
    protocols). ``interval``: an OPC UA Publish's publishing interval (ms), when known."""
    env = event.envelope
    if env.direction is Direction.RESPONSE:
        return None
    protocol = env.protocol
    f = event.fields
    sig: tuple[tuple[str, Any], ...]
    if protocol == "modbus":
        sub = f.get("sub_function")
        address, function, quantity = f.get("address"), f.get("function"), f.get("quantity")
        if sub is None:  # the common case, built as one tuple (no unpacking through a list)
            sig = (
                ("address", address),
                ("function", function),
                ("quantity", quantity),
                ("unit", f.get("unit_id")),
            )
        else:
            sig = (
                ("address", address),
                ("function", function),
                ("quantity", quantity),
                ("sub_function", sub),
                ("unit", f.get("unit_id")),
            )
    elif protocol == "s7comm":
        action = event.action
        if action in ("s7comm-read-var", "s7comm-write-var"):
            sig = (("action", action), ("items", _s7_items(f.get("items"))))
        elif "szl_id" in f:
            sig = (("action", action), ("szl", f"{f.get('szl_id')}/{f.get('szl_index')}"))
        else:
            sig = (("action", action),)
    elif protocol == "opcua":
        action = event.action
        if action == "opcua-publish":
            sig = (("action", action), ("interval_ms", interval))
        elif action in ("opcua-read", "opcua-write"):
            sig = (("action", action), ("nodes", _opcua_nodes(f.get("nodes"))))
        else:
            sig = (("action", action),)
    elif protocol == "s7comm_plus":
        sig = (("action", event.action),)
    else:
        return None
    conn = env.conn
    return (protocol, conn.client_ip, conn.server_ip, conn.server_port, sig)


def _label(key: Key) -> str:
    protocol, client, server, port, sig = key
    parts = " ".join(f"{k}={v}" for k, v in sig if v is not None and v != "")
    return f"{protocol} {parts} from {client} to {server}:{port}"


def _sort_key(key: Key) -> tuple[Any, ...]:
    protocol, client, server, port, sig = key
    return (_ip(client), _ip(server), port, protocol, repr(sig))


def _ip(text: str) -> tuple[int, int, str]:
    try:
        a = ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (a.version, int(a), text)


def _secs(ns: float) -> float:
    return round(ns / NS, 6)


def _dur(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 2 else f"{seconds:.1f} s"


# -- learning ---------------------------------------------------------------------------------
class CycleStats:
    """What learning saw of one cycle: requests, and a decimated reservoir of intervals."""

    __slots__ = ("count", "first", "intervals", "last", "seen", "stride")

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0
        self.intervals: list[int] = []
        self.stride = 1
        self.seen = 0  # intervals seen, kept or not

    def add(self, ts: int) -> None:
        """One request at ``ts``."""
        self.count += 1
        if self.count == 1:
            self.first = self.last = ts
            return
        delta = ts - self.last
        if delta < 0:
            return
        self.last = ts
        self.seen += 1
        if self.seen % self.stride:
            return
        intervals = self.intervals
        intervals.append(delta)
        if len(intervals) >= RESERVOIR:
            del intervals[1::2]
            self.stride *= 2


class Cycle:
    """A learned periodic cycle and the thresholds derived from it (times in seconds)."""

    __slots__ = (
        "breaks",
        "first",
        "jitter",
        "key",
        "last",
        "longest",
        "period",
        "samples",
        "silent_after",
        "tolerance",
    )

    def __init__(self, key: Key) -> None:
        self.key = key
        self.period = self.jitter = self.tolerance = self.silent_after = self.longest = 0.0
        self.samples = self.breaks = 0
        self.first = self.last = 0

    @classmethod
    def learned(
        cls,
        key: Key,
        stats: CycleStats,
        min_intervals: int = MIN_INTERVALS,
        silence_factor: float = SILENCE_FACTOR,
        min_silence: float = MIN_SILENCE,
    ) -> Cycle | None:
        """The cycle, or None when it is not periodic or has too few intervals."""
        if stats.seen < min_intervals or not stats.intervals:
            return None
        ordered = sorted(stats.intervals)
        median = ordered[len(ordered) // 2]
        if median <= 0:
            return None
        kept = [d for d in ordered if d <= BREAK_FACTOR * median]
        if len(kept) * stats.stride < min_intervals:
            return None
        median = kept[len(kept) // 2]
        p10 = kept[len(kept) // 10]
        p90 = kept[min(len(kept) - 1, (len(kept) * 9) // 10)]
        if p90 - p10 > median / 2:
            return None
        c = cls(key)
        c.period = _secs(median)
        c.jitter = _secs((p90 - p10) / 2)
        c.longest = _secs(kept[-1])
        c.samples = stats.seen
        c.breaks = (len(ordered) - len(kept)) * stats.stride
        c.first, c.last = stats.first, stats.last
        c.derive(silence_factor, min_silence)
        return c

    def derive(self, silence_factor: float, min_silence: float) -> None:
        """Tolerance and silence threshold from period, jitter and the longest interval."""
        self.tolerance = round(max(4 * self.jitter, self.period / 4, 0.005), 6)
        self.silent_after = round(
            max(silence_factor * self.period, 2 * self.longest, min_silence), 6
        )

    def describe(self) -> str:
        """ "every 200 ms (jitter 1 ms, 99 intervals)" """
        return f"every {_dur(self.period)} (jitter {_dur(self.jitter)}, {self.samples:,} intervals)"

    def to_data(self) -> dict[str, Any]:
        """Plain data, key fields first."""
        protocol, client, server, port, sig = self.key
        return {
            "protocol": protocol,
            "client": client,
            "server": server,
            "port": port,
            "request": dict(sig),
            "label": _label(self.key),
            "period": self.period,
            "jitter": self.jitter,
            "tolerance": self.tolerance,
            "longest": self.longest,
            "silent_after": self.silent_after,
            "samples": self.samples,
            "breaks": self.breaks,
            "first_seen": iso(self.first),
            "last_seen": iso(self.last),
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str) -> Cycle:
        """Rebuild from ``to_data``'s output."""
        try:
            request = data["request"]
            if not isinstance(request, Mapping):
                raise TypeError("request is not a mapping")
            key: Key = (
                str(data["protocol"]),
                str(data["client"]),
                str(data["server"]),
                int(data["port"]),
                tuple(sorted(request.items())),
            )
            c = cls(key)
            c.period = float(data["period"])
            c.jitter = float(data["jitter"])
            c.tolerance = float(data["tolerance"])
            c.longest = float(data.get("longest", c.period))
            c.silent_after = float(data["silent_after"])
            c.samples = int(data.get("samples", 0))
            c.breaks = int(data.get("breaks", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise AspectDataError(where, f"bad cycle: {exc}") from None
        c.first = parse_iso(data.get("first_seen"), f"{where}.first_seen")
        c.last = parse_iso(data.get("last_seen"), f"{where}.last_seen")
        if c.period <= 0 or c.silent_after <= 0:
            raise AspectDataError(f"{where}.period", "period and silent_after must be positive")
        return c


# -- detection state --------------------------------------------------------------------------
class _Watch:
    """A learned cycle during one detector run."""

    __slots__ = ("closed", "deviating", "flow", "in_heap", "last", "recent", "silent")

    def __init__(self) -> None:
        self.last = -1
        self.recent: list[int] = []
        self.deviating = False
        self.silent = False
        self.closed = False
        self.in_heap = False
        self.flow = ""


class TimingAspect(Aspect):
    """Learns the period and jitter of every polling cycle; reports ``period_change`` and
    ``channel_silent``.

    Options (``baseline.timing``): ``min_intervals`` (8), ``silence_factor`` (10),
    ``min_silence`` (5 s), ``max_cycles`` (4 096).
    """

    name = "timing"
    protocols = frozenset({"modbus", "s7comm", "s7comm_plus", "opcua", "network"})

    def __init__(self, context: AspectContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        self.min_intervals = int(opts.get("min_intervals", MIN_INTERVALS))
        self.silence_factor = float(opts.get("silence_factor", SILENCE_FACTOR))
        self.min_silence = float(opts.get("min_silence", MIN_SILENCE))
        self.max_cycles = int(opts.get("max_cycles", MAX_CYCLES))
        self.table: TieredTable[Key, CycleStats] = TieredTable(
            self.max_cycles, self.max_cycles // 4
        )
        self.cycles: dict[Key, Cycle] = {}
        self.aperiodic = 0
        self._dirty = False
        #: (client, server, subscription id) → publishing interval (ms)
        self._intervals: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        #: the learned cycles seen in this run (by the cycle: hashed by identity, not by key)
        self._watch: dict[Cycle, _Watch] = {}
        #: (client, server, port) → the learned cycles of that link
        self._links: dict[tuple[str, str, int], list[Cycle]] = {}
        self._heap: list[tuple[int, int, Cycle]] = []
        #: the heap's first deadline (the detector ticks this aspect from then on)
        self.due: float = math.inf
        self._seq = 0
        self.period_changes = 0
        self.silences = 0
        self.closed = 0
        self.loaded_dropped = 0

    # -- shared -----------------------------------------------------------------------------
    def _key(self, event: Event) -> Key | None:
        if event.envelope.protocol != "opcua":
            return cycle_key(event)
        action = event.action
        conn = event.envelope.conn
        f = event.fields
        if action == "opcua-create-subscription":
            sid, interval = f.get("subscription_id"), f.get("revised_publishing_interval")
            if isinstance(sid, int) and isinstance(interval, int | float):
                intervals = self._intervals
                intervals[(conn.client_ip, conn.server_ip, sid)] = float(interval)
                if len(intervals) > MAX_SUBSCRIPTIONS:
                    intervals.popitem(last=False)
        elif action == "opcua-publish":
            sid = f.get("subscription_id")
            interval = (
                self._intervals.get((conn.client_ip, conn.server_ip, sid))
                if isinstance(sid, int)
                else None
            )
            return cycle_key(event, interval)
        return cycle_key(event)

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        key = self._key(event)
        if key is not None:
            self.table.touch(key, CycleStats).add(event.envelope.ts)
            self._dirty = True

    def _settle(self) -> None:
        if not self._dirty:
            return
        self.cycles.clear()
        self.aperiodic = 0
        for key, stats in self.table.items():
            cycle = Cycle.learned(
                key, stats, self.min_intervals, self.silence_factor, self.min_silence
            )
            if cycle is None:
                self.aperiodic += 1
            else:
                self.cycles[key] = cycle
        self._index()
        if self._watch:  # learned more after checking: the run's state goes to the new cycles
            cycles = self.cycles
            self._watch = {cycles.get(c.key, c): w for c, w in self._watch.items()}
            self._heap = [(d, n, cycles.get(c.key, c)) for d, n, c in self._heap]
        self._dirty = False

    def _index(self) -> None:
        self._links.clear()
        for key, cycle in self.cycles.items():
            self._links.setdefault((key[1], key[2], key[3]), []).append(cycle)

    def end_learning(self, ts: int) -> None:
        self._settle()

    def to_data(self) -> dict[str, Any]:
        self._settle()
        return {
            "min_intervals": self.min_intervals,
            "silence_factor": self.silence_factor,
            "min_silence": self.min_silence,
            "aperiodic": self.aperiodic,
            "dropped": self.table.dropped + self.table.evicted + self.loaded_dropped,
            "cycles": [self.cycles[k].to_data() for k in sorted(self.cycles, key=_sort_key)],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        aspect = cls(context)
        try:
            aspect.min_intervals = int(data.get("min_intervals", MIN_INTERVALS))
            aspect.silence_factor = float(data.get("silence_factor", SILENCE_FACTOR))
            aspect.min_silence = float(data.get("min_silence", MIN_SILENCE))
            aspect.aperiodic = int(data.get("aperiodic", 0))
            aspect.loaded_dropped = int(data.get("dropped", 0))
        except (TypeError, ValueError) as exc:
            raise AspectDataError("", f"bad settings: {exc}") from None
        rows = data.get("cycles") or []
        if not isinstance(rows, list):
            raise AspectDataError("cycles", "not a list")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise AspectDataError(f"cycles[{i}]", "not a mapping")
            cycle = Cycle.from_data(row, f"cycles[{i}]")
            aspect.cycles[cycle.key] = cycle
        aspect._index()
        return aspect

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        if self._dirty:
            self._settle()
        env = event.envelope
        ts = env.ts
        out = self._expire(ts) if self.due <= ts else []
        protocol = env.protocol
        if protocol == "network":
            if event.action == "network-flow-end" and event.fields.get("reason") in ("fin", "rst"):
                self._close(event)
            return out
        key = cycle_key(event) if protocol != "opcua" else self._key(event)
        cycle = self.cycles.get(key) if key is not None else None
        if cycle is None:
            return out
        watch = self._watch.get(cycle)
        if watch is None:
            watch = self._watch[cycle] = _Watch()
        watch.flow = event.envelope.conn.community_id
        watch.closed = watch.silent = False
        last = watch.last
        if ts > last:
            watch.last = ts
        if not watch.in_heap:
            self._push(watch, cycle)
        if last < 0 or ts <= last:
            return out
        delta = ts - last
        recent = watch.recent
        if delta > cycle.silent_after * NS:
            recent.clear()
            return out
        recent.append(delta)
        if len(recent) > RECENT:
            del recent[0]
        if len(recent) >= 3:
            dev = self._period(cycle, watch, event)
            if dev is not None:
                out.append(dev)
        return out

    def _period(self, cycle: Cycle, watch: _Watch, event: Event) -> Deviation | None:
        median = sorted(watch.recent)[len(watch.recent) // 2] / NS
        off = abs(median - cycle.period)
        if off <= cycle.tolerance:
            if watch.deviating and off <= cycle.tolerance / 2:
                watch.deviating = False
            return None
        if watch.deviating:
            return None
        watch.deviating = True
        self.period_changes += 1
        conn = event.envelope.conn
        return Deviation(
            kind=AnomalyKind.PERIOD_CHANGE,
            aspect=self.name,
            item=self._item(cycle, period=round(median, 6)),
            reason=(
                f"{_label(cycle.key)} came {cycle.describe()}; "
                f"the last {len(watch.recent)} intervals had a median of {_dur(median)}"
            ),
            expected={"period": cycle.period, "jitter": cycle.jitter, "tolerance": cycle.tolerance},
            observed={"period": round(median, 6), "intervals": len(watch.recent)},
            event=event,
            hosts=(conn.client_ip, conn.server_ip),
        )

    def _push(self, watch: _Watch, cycle: Cycle) -> None:
        self._seq += 1
        deadline = watch.last + int(cycle.silent_after * NS)
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq, cycle))
        self.due = heap[0][0]
        watch.in_heap = True

    def _expire(self, now: int) -> list[Deviation]:
        """Silences due at ``now``: pop due deadlines, push again those that moved on."""
        heap = self._heap
        out: list[Deviation] = []
        while heap and heap[0][0] <= now:
            _, _, cycle = heapq.heappop(heap)
            watch = self._watch[cycle]
            watch.in_heap = False
            if watch.closed:
                continue
            if watch.last + int(cycle.silent_after * NS) > now:
                self._push(watch, cycle)
                continue
            watch.silent = True
            self.silences += 1
            out.append(self._silent(cycle, watch, now))
        self.due = heap[0][0] if heap else math.inf
        return out

    def _silent(self, cycle: Cycle, watch: _Watch, now: int) -> Deviation:
        _, client, server, _, sig = cycle.key
        idle = (now - watch.last) / NS
        action = str(dict(sig).get("action") or dict(sig).get("function") or "")
        writes = any(w in action for w in _WRITES)
        return Deviation(
            kind=AnomalyKind.CHANNEL_SILENT,
            aspect=self.name,
            item=self._item(cycle),
            reason=(
                f"{_label(cycle.key)} came {cycle.describe()}; nothing for {idle:.1f} s "
                f"since {iso(watch.last)} (silent after {cycle.silent_after:g} s)"
            ),
            expected={"period": cycle.period, "silent_after": cycle.silent_after},
            observed={"idle": round(idle, 3), "last_seen": iso(watch.last)},
            techniques=("T0814", "T0803" if writes else "T0804"),
            hosts=(client, server),
        )

    def _close(self, event: Event) -> None:
        conn = event.envelope.conn
        for cycle in self._links.get((conn.client_ip, conn.server_ip, conn.server_port), ()):
            watch = self._watch.get(cycle)
            if watch is not None and watch.flow == conn.community_id and not watch.closed:
                watch.closed = True
                self.closed += 1

    def _item(self, cycle: Cycle, **extra: Any) -> dict[str, Any]:
        protocol, client, server, port, sig = cycle.key
        return {
            "protocol": protocol,
            "client": client,
            "server": server,
            "port": port,
            "request": dict(sig),
            **extra,
        }

    def tick(self, ts: int) -> list[Deviation]:
        return self._expire(ts) if self.due <= ts else []

    def finish(self, ts: int) -> list[Deviation]:
        return self.tick(ts)

    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            request = item["request"]
            key: Key = (
                str(item["protocol"]),
                str(item["client"]),
                str(item["server"]),
                int(item["port"]),
                tuple(sorted(request.items())),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        cycle = self.cycles.get(key)
        if cycle is None:
            return False
        period = item.get("period")
        if isinstance(period, int | float) and period > 0:
            # the new period becomes the learned one; the jitter widens to cover the change
            cycle.jitter = round(max(cycle.jitter, abs(period - cycle.period) / 4), 6)
            cycle.period = round(float(period), 6)
            cycle.longest = max(cycle.longest, cycle.period)
        else:  # a silence accepted: allow twice the idle time seen
            cycle.longest = max(cycle.longest, cycle.silent_after)
        cycle.derive(self.silence_factor, self.min_silence)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "cycles": len(self.cycles),
            "watched": len(self._watch),
            "dropped": self.table.dropped + self.table.evicted,
            "period_changes": self.period_changes,
            "silences": self.silences,
            "closed": self.closed,
        }
