"""Rule matches → alerts, with repeats folded together.

The same rule between the same two hosts (client ``source.ip``, server ``destination.ip``) within
``window`` seconds of packet time after its first match makes one alert: the first match is the
trigger (its event, message and time), later ones only raise ``count`` and move ``last_ts``. An
alert is emitted when its window closes — checked on every match, on the pipeline's periodic
tick and at the end — or early, when too many windows are open (the oldest goes first, counted).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from otsentry.detect.model import RuleMatch
from otsentry.model import Alert, AlertKind

#: open aggregation windows at most; beyond, the oldest is emitted early
MAX_OPEN_WINDOWS = 10_000

#: (rule id, source ip, destination ip)
WindowKey = tuple[str, str, str]


def alert_for(
    match: RuleMatch,
    *,
    count: int | None = None,
    last_ts: int | None = None,
    evidence_pcap: str | None = None,
) -> Alert:
    """The alert for ``match`` (the trigger), standing for ``count`` events up to ``last_ts``."""
    rule = match.rule
    tactic = next((name for t in rule.techniques for name in t.tactic_names), None)
    return Alert(
        ts=match.ts,
        kind=AlertKind.RULE,
        rule_id=rule.id,
        rule_name=rule.title,
        rule_version=str(rule.rev),
        severity=rule.severity,
        risk_score=rule.risk_score,
        message=match.message,
        events=(match.event,),
        techniques=rule.techniques,
        attack_version=rule.attack_version,
        reason=match.reason or None,
        count=match.count if count is None else count,
        evidence_pcap=evidence_pcap,
        rule_reference=rule.references[0] if rule.references else None,
        rule_category=tactic,
        last_ts=match.ts if last_ts is None else last_ts,
        tags=rule.tags,
        group=match.group,
    )


@dataclass(slots=True)
class _Window:
    first: RuleMatch
    last_ts: int
    count: int
    evidence_pcap: str | None


@dataclass(slots=True)
class AggregatorStats:
    """What the aggregator did: windows opened, matches folded into an open window, alerts
    emitted, and windows emitted early because too many were open."""

    opened: int = 0
    folded: int = 0
    emitted: int = 0
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """For ``stats.json``."""
        return {
            "windows_opened": self.opened,
            "aggregated": self.folded,
            "emitted": self.emitted,
            "windows_evicted": self.evicted,
        }


class Aggregator:
    """Folds rule matches into alerts per (rule, source ip, destination ip) and time window.

    ``emit`` receives each finished alert. ``on_open`` is called with the trigger of each new
    window and returns the evidence pcap path to put on its alert (or None).
    """

    def __init__(
        self,
        window: float,
        emit: Callable[[Alert], None],
        *,
        on_open: Callable[[RuleMatch], str | None] | None = None,
        max_open: int = MAX_OPEN_WINDOWS,
    ) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self.window_ns = round(window * 1e9)
        self.emit = emit
        self.on_open = on_open
        self.max_open = max_open
        self.stats = AggregatorStats()
        #: open windows in the order they opened (the oldest first)
        self._open: dict[WindowKey, _Window] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, matches: Iterable[RuleMatch]) -> None:
        """Fold matches in (closing the windows their time has passed first)."""
        windows = self._open
        for match in matches:
            self.tick(match.ts)
            conn = match.event.envelope.conn
            key = (match.rule.id, conn.client_ip, conn.server_ip)
            win = windows.get(key)
            if win is not None:
                win.count += match.count
                if match.ts > win.last_ts:
                    win.last_ts = match.ts
                self.stats.folded += 1
                continue
            self.stats.opened += 1
            evidence = self.on_open(match) if self.on_open is not None else None
            if self.window_ns <= 0:
                self._emit(_Window(match, match.ts, match.count, evidence))
                continue
            if len(windows) >= self.max_open:
                self.stats.evicted += 1
                self._emit(windows.pop(next(iter(windows))))
            windows[key] = _Window(match, match.ts, match.count, evidence)

    def tick(self, now: int) -> None:
        """Emit every window that closed by packet time ``now`` (nanoseconds)."""
        windows = self._open
        span = self.window_ns
        while windows:
            key = next(iter(windows))
            if windows[key].first.ts + span > now:
                return
            self._emit(windows.pop(key))

    def flush(self) -> None:
        """Emit every open window (the end of the run)."""
        windows = self._open
        while windows:
            self._emit(windows.pop(next(iter(windows))))

    def _emit(self, win: _Window) -> None:
        self.stats.emitted += 1
        self.emit(
            alert_for(
                win.first, count=win.count, last_ts=win.last_ts, evidence_pcap=win.evidence_pcap
            )
        )
