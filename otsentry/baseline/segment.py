"""One segment's baseline: what learning saw (window, counts, whether it was enough) and the
aspects that learned it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otsentry.baseline.aspect import Aspect, AspectContext
from otsentry.baseline.registry import ASPECTS
from otsentry.model import Event
from otsentry.netevents import FLOW_END

#: the file format's version (``format_version``); a file of another version is refused
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Sufficiency:
    """How much traffic a baseline needs before it is trusted: at least ``min_events`` events
    and ``min_seconds`` of traffic (packet time) in the segment."""

    min_events: int = 100
    min_seconds: float = 300.0

    def verdict(self, events: int, seconds: float) -> list[str]:
        """Why the data is too little (empty: enough)."""
        out = []
        if events < self.min_events:
            out.append(f"{events} events, fewer than {self.min_events}")
        if seconds < self.min_seconds:
            out.append(f"{seconds:g} s of traffic, less than {self.min_seconds:g} s")
        return out


@dataclass(slots=True)
class LearningInfo:
    """What the learning run saw in the segment."""

    sources: list[str] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    events: int = 0
    events_by_protocol: Counter[str] = field(default_factory=Counter)
    #: packets and bytes of the segment's flows that ended (from network flow-end events)
    packets: int = 0
    bytes: int = 0
    #: reasons the data was too little (empty: enough)
    too_little_data: list[str] = field(default_factory=list)
    sufficiency: Sufficiency = field(default_factory=Sufficiency)
    #: anomaly alerts folded back in with ``otsentry baseline accept``
    accepted: int = 0

    @property
    def seconds(self) -> float:
        """Length of the learning window in packet time."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return round((self.last_ts - self.first_ts) / 1e9, 3)

    @property
    def sufficient(self) -> bool:
        """Whether enough was seen."""
        return not self.too_little_data


class SegmentBaseline:
    """The baseline of one segment: learning info and one instance of each aspect.

    ``aspects`` holds the aspects in registry order; an aspect missing from a file read from
    disk is absent here (it learned nothing, so it checks nothing). ``version`` is the short
    content hash of the file it was read from or written to (``otsentry.anomaly.baseline``).
    """

    def __init__(
        self,
        segment: str,
        aspects: Sequence[Aspect] | None = None,
        info: LearningInfo | None = None,
        classes: Sequence[type[Aspect]] | None = None,
    ) -> None:
        self.segment = segment
        self.info = info if info is not None else LearningInfo()
        if aspects is None:
            context = AspectContext(segment=segment)
            aspects = [cls(context) for cls in (ASPECTS if classes is None else classes)]
        self.aspects: dict[str, Aspect] = {a.name: a for a in aspects}
        self.version = ""
        self._routes: dict[str, tuple[Aspect, ...]] = {}

    def route(self, protocol: str) -> tuple[Aspect, ...]:
        """The aspects that want events of ``protocol`` (cached)."""
        found = self._routes.get(protocol)
        if found is None:
            found = self._routes[protocol] = tuple(
                a for a in self.aspects.values() if a.protocols is None or protocol in a.protocols
            )
        return found

    def learn(self, event: Event) -> None:
        """Count ``event`` and let the aspects that want it learn from it."""
        env = event.envelope
        info = self.info
        ts = env.ts
        if info.first_ts is None or ts < info.first_ts:
            info.first_ts = ts
        if info.last_ts is None or ts > info.last_ts:
            info.last_ts = ts
        info.events += 1
        info.events_by_protocol[env.protocol] += 1
        if event.action == FLOW_END:
            f = event.fields
            info.packets += int(f.get("packets_to_server", 0)) + int(f.get("packets_to_client", 0))
            info.bytes += int(f.get("bytes_to_server", 0)) + int(f.get("bytes_to_client", 0))
        for aspect in self.route(env.protocol):
            aspect.learn(event)

    def end_learning(self, sufficiency: Sufficiency) -> None:
        """Settle the aspects and judge whether the data was enough."""
        info = self.info
        if info.last_ts is not None:
            for aspect in self.aspects.values():
                aspect.end_learning(info.last_ts)
        info.sufficiency = sufficiency
        info.too_little_data = sufficiency.verdict(info.events, info.seconds)

    def accept(self, aspect: str, item: Mapping[str, Any]) -> bool:
        """Fold an anomaly's item back into the named aspect."""
        found = self.aspects.get(aspect)
        if found is None or not found.accept(item):
            return False
        self.info.accepted += 1
        return True

    def summary(self) -> dict[str, Any]:
        """What ``otsentry.anomaly.baseline`` says about this baseline."""
        return {
            "id": self.segment,
            "version": self.version,
            "format_version": FORMAT_VERSION,
            "sufficient": self.info.sufficient,
        }
