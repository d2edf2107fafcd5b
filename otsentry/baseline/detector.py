"""The detection hook: checks every event against its segment's baseline and turns deviations
into explained anomaly alerts.

``Detector`` is an event hook (``pipeline.event_hooks.append(detector)``). For each event it asks
the segment's aspects that want the event's protocol for deviations (a dict lookup or two for an
event the baseline knows). Deviations are folded like rule matches:

- an item (what the deviation's ``item`` names) is reported once per run: later events showing
  the same item only count (``repeats``), in a bounded set of reported items (LRU);
- deviations of one kind and level between the same two hosts within ``window`` seconds of
  packet time make one alert (a new write function and a new read function are two alerts); its ``count`` is the events folded in, ``otsentry.anomaly.items`` the distinct
  items (at most ``MAX_ITEMS_PER_ALERT``; the rest counted in ``items_dropped``), its reason the
  first deviation's (plus how many more items there were).

The alert says what the baseline expected and what was observed (``event.reason``,
``otsentry.anomaly.expected`` / ``observed``), which baseline (segment and content version) and
whether that baseline was learned from enough traffic. ``alerts()`` are emitted as windows
close (on events and ``tick``) and at ``flush``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from otsentry.baseline.aspect import KINDS, Aspect, Deviation, ReportedOnce, rule_id
from otsentry.baseline.segment import FORMAT_VERSION, SegmentBaseline
from otsentry.detect.attack import attack_ics
from otsentry.detect.model import LEVELS
from otsentry.model import Alert, AlertKind, Event, Technique

#: open aggregation windows at most; beyond, the oldest is emitted early
MAX_OPEN_WINDOWS = 10_000
#: distinct items listed in one alert
MAX_ITEMS_PER_ALERT = 50
#: packet time between aspect ticks (ns)
TICK_NS = 1_000_000_000

#: (rule id, client ip, server ip, level)
WindowKey = tuple[str, str, str, str]


@dataclass(slots=True)
class _Window:
    first: Deviation
    segment: SegmentBaseline
    ts: int
    last_ts: int
    count: int
    items: dict[str, Mapping[str, Any]]
    items_dropped: int = 0
    evidence: str | None = None


@dataclass(slots=True)
class DetectorStats:
    """What the detector did."""

    events: int = 0
    events_without_baseline: int = 0
    deviations: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    alerts: int = 0
    windows_evicted: int = 0
    segments_without_baseline: set[str] = field(default_factory=set)


class Detector:
    """Checks events against per-segment baselines; an event hook returning anomaly alerts.

    ``on_open(event, rule_id)`` is called for the event that opens an alert window and returns
    the evidence pcap to put on the alert (the pipeline's evidence recorder), or None.
    """

    def __init__(
        self,
        baselines: Mapping[str, SegmentBaseline],
        *,
        window: float = 60.0,
        max_open: int = MAX_OPEN_WINDOWS,
        max_reported: int = 65_536,
        on_open: Callable[[Event, str], str | None] | None = None,
    ) -> None:
        self.baselines = dict(baselines)
        self.window_ns = round(window * 1e9)
        self.max_open = max_open
        self.on_open = on_open
        self.reported = ReportedOnce(max_reported)
        self.stats_ = DetectorStats()
        self._open: dict[WindowKey, _Window] = {}
        self._ready: list[Alert] = []
        self._next_tick = -1
        self._last_ts = 0
        self._attack = attack_ics()
        self._techniques: dict[tuple[str, ...], tuple[Technique, ...]] = {}
        #: segment → protocol → the ``check`` of each aspect that wants it (``route``'s order)
        self._checks: dict[str, dict[str, tuple[Callable[[Event], list[Deviation]], ...]]] = {
            name: {} for name in self.baselines
        }
        #: the aspects with time-based checks (most have none), in baseline and aspect order;
        #: each is ticked only once packet time reaches its ``due``
        self._tickers = [
            (baseline, aspect)
            for baseline in self.baselines.values()
            for aspect in baseline.aspects.values()
            if type(aspect).tick is not Aspect.tick
        ]

    # -- the hook ---------------------------------------------------------------------------
    def __call__(self, event: Event) -> list[Alert]:
        """Check one event; returns the alerts whose windows closed."""
        stats = self.stats_
        stats.events += 1
        env = event.envelope
        ts = env.ts
        if ts > self._last_ts:
            self._last_ts = ts
        # alerts whose windows the tick closed go out with this event's
        ready = self.tick(ts) if ts >= self._next_tick else None
        segment = env.conn.segment
        routes = self._checks.get(segment)
        if routes is None:
            stats.events_without_baseline += 1
            if len(stats.segments_without_baseline) < 1_024:
                stats.segments_without_baseline.add(segment)
        else:
            checks = routes.get(env.protocol)
            if checks is None:
                checks = routes[env.protocol] = tuple(
                    a.check for a in self.baselines[segment].route(env.protocol)
                )
            for check in checks:
                found = check(event)
                if found:
                    baseline = self.baselines[segment]
                    for dev in found:
                        self._add(dev, baseline, ts)
        if self._ready:
            out, self._ready = self._ready, []
            return ready + out if ready else out
        return ready or []

    def tick(self, ts: int) -> list[Alert]:
        """Time-based checks and closing windows at packet time ``ts``."""
        self._next_tick = ts + TICK_NS
        for baseline, aspect in self._tickers:
            if aspect.due <= ts:
                for dev in aspect.tick(ts):
                    self._add(dev, baseline, ts)
        self._close(ts)
        return self._take()

    def flush(self, ts: int | None = None) -> list[Alert]:
        """The end of the run: the aspects' last word, then every open window."""
        end = self._last_ts if ts is None else ts
        for baseline in self.baselines.values():
            for aspect in baseline.aspects.values():
                for dev in aspect.finish(end):
                    self._add(dev, baseline, end)
        while self._open:
            self._emit(self._open.pop(next(iter(self._open))))
        return self._take()

    # -- folding ----------------------------------------------------------------------------
    def _add(self, dev: Deviation, baseline: SegmentBaseline, ts: int) -> None:
        stats = self.stats_
        stats.deviations[dev.kind.value] += 1
        item_text = json.dumps(dev.item, sort_keys=True, default=str)
        first = self.reported.first((baseline.segment, dev.aspect, dev.kind, item_text))
        self._close(ts)
        rid = rule_id(dev.kind)
        client, server = _hosts(dev)
        key = (rid, client, server, dev.effective_level)
        win = self._open.get(key)
        if win is not None:
            win.count += 1
            win.last_ts = max(win.last_ts, ts)
            if first:
                if len(win.items) < MAX_ITEMS_PER_ALERT:
                    win.items[item_text] = dev.item
                else:
                    win.items_dropped += 1
            return
        if not first:
            stats.repeats += 1
            return
        evidence = None
        if self.on_open is not None and dev.event is not None:
            evidence = self.on_open(dev.event, rid)
        win = _Window(dev, baseline, ts, ts, 1, {item_text: dev.item}, 0, evidence)
        if self.window_ns <= 0:
            self._emit(win)
            return
        if len(self._open) >= self.max_open:
            stats.windows_evicted += 1
            self._emit(self._open.pop(next(iter(self._open))))
        self._open[key] = win

    def _close(self, now: int) -> None:
        windows = self._open
        span = self.window_ns
        while windows:
            key = next(iter(windows))
            if windows[key].ts + span > now:
                return
            self._emit(windows.pop(key))

    def _take(self) -> list[Alert]:
        if not self._ready:
            return []
        out, self._ready = self._ready, []
        return out

    def _emit(self, win: _Window) -> None:
        self.stats_.alerts += 1
        self._ready.append(self.alert_for(win))

    def alert_for(self, win: _Window) -> Alert:
        """The alert for a closed window."""
        dev = win.first
        info = KINDS[dev.kind]
        level = dev.effective_level
        severity, risk = LEVELS[level]
        techniques = self._resolve(dev.effective_techniques)
        baseline = win.segment
        reason = dev.reason
        more = len(win.items) - 1 + win.items_dropped
        if more > 0:
            reason += f" (and {more} more {'item' if more == 1 else 'items'} like it)"
        if not baseline.info.sufficient:
            reason += " [baseline learned from too little data]"
        client, server = _hosts(dev)
        anomaly: dict[str, Any] = {
            "kind": dev.kind.value,
            "aspect": dev.aspect,
            "level": level,
            "baseline": baseline.summary(),
            "item": dict(dev.item),
            "items": list(win.items.values()),
        }
        if win.items_dropped:
            anomaly["items_dropped"] = win.items_dropped
        if dev.expected is not None:
            anomaly["expected"] = dev.expected
        if dev.observed is not None:
            anomaly["observed"] = dev.observed
        if dev.score is not None:
            anomaly["score"] = dev.score
        if dev.model is not None:
            anomaly["model"] = dev.model
        if dev.features is not None:
            anomaly["features"] = dict(dev.features)
        between = f" {client} → {server}" if client and server else f" {client or server}"
        tactic = next((name for t in techniques for name in t.tactic_names), None)
        return Alert(
            ts=win.ts,
            kind=AlertKind.ANOMALY,
            rule_id=rule_id(dev.kind),
            rule_name=info.title,
            rule_version=str(FORMAT_VERSION),
            severity=severity,
            risk_score=risk,
            message=f"{info.title}:{between.rstrip()} ({baseline.segment})",
            events=(dev.event,) if dev.event is not None else (),
            techniques=techniques,
            attack_version=self._attack.version,
            reason=reason,
            count=win.count,
            evidence_pcap=win.evidence,
            anomaly=anomaly,
            rule_category=tactic,
            last_ts=win.last_ts,
            tags=tuple(f"attack.{t.id.lower()}" for t in techniques),
        )

    def _resolve(self, ids: tuple[str, ...]) -> tuple[Technique, ...]:
        found = self._techniques.get(ids)
        if found is None:
            found = self._techniques[ids] = tuple(
                t for t in (self._attack.technique(i) for i in ids) if t is not None
            )
        return found

    def stats(self) -> dict[str, Any]:
        """Counters for ``stats.json`` (``detection.baseline``)."""
        s = self.stats_
        return {
            "segments": {
                name: {
                    "version": b.version,
                    "sufficient": b.info.sufficient,
                    "too_little_data": list(b.info.too_little_data),
                }
                for name, b in sorted(self.baselines.items())
            },
            "events_checked": s.events,
            "events_without_baseline": s.events_without_baseline,
            "segments_without_baseline": sorted(s.segments_without_baseline),
            "deviations": dict(sorted(s.deviations.items())),
            "repeats_suppressed": s.repeats,
            "reported_items": len(self.reported),
            "reported_items_evicted": self.reported.evicted,
            "alerts": s.alerts,
            "windows_open": len(self._open),
            "windows_evicted": s.windows_evicted,
        }


def _hosts(dev: Deviation) -> tuple[str, str]:
    if dev.event is not None:
        conn = dev.event.envelope.conn
        return conn.client_ip, conn.server_ip
    return dev.hosts
