"""The learning hook: routes a pipeline's events to per-segment baselines.

``Learner`` is an event hook (``pipeline.event_hooks.append(learner)``): it never raises an
alert. It keeps one ``SegmentBaseline`` per segment (at most ``max_segments``; events of further
segments are counted in ``dropped_events``), and ``finish`` settles them and judges whether each
saw enough traffic (``Sufficiency``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otsentry.baseline.aspect import Aspect
from otsentry.baseline.segment import SegmentBaseline, Sufficiency
from otsentry.model import Alert, Event

#: segments one learning run keeps
MAX_SEGMENTS = 1_024


class Learner:
    """Learns a baseline per segment from the events it is called with."""

    def __init__(
        self,
        sufficiency: Sufficiency | None = None,
        *,
        classes: Sequence[type[Aspect]] | None = None,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        self.sufficiency = sufficiency if sufficiency is not None else Sufficiency()
        self.classes = classes
        self.max_segments = max_segments
        self.segments: dict[str, SegmentBaseline] = {}
        self.dropped_events = 0
        self.sources: list[str] = []

    def __call__(self, event: Event) -> tuple[Alert, ...]:
        """Learn from ``event`` (the hook's signature: no alert ever)."""
        segment = event.envelope.conn.segment
        baseline = self.segments.get(segment)
        if baseline is None:
            if len(self.segments) >= self.max_segments:
                self.dropped_events += 1
                return ()
            baseline = self.segments[segment] = SegmentBaseline(segment, classes=self.classes)
        baseline.learn(event)
        return ()

    def finish(self) -> list[SegmentBaseline]:
        """Settle every segment's baseline; they come back ordered by segment name."""
        out = []
        for name in sorted(self.segments):
            baseline = self.segments[name]
            baseline.info.sources = sorted(set(self.sources))
            baseline.end_learning(self.sufficiency)
            out.append(baseline)
        return out

    def stats(self) -> dict[str, Any]:
        """Counters of the run."""
        return {
            "segments": len(self.segments),
            "events": sum(b.info.events for b in self.segments.values()),
            "dropped_events": self.dropped_events,
        }
