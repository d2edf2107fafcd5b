"""Feeding captures to a baseline hook: learning, and wiring network events into a pipeline.

``feed`` runs the sensor's stages (decoder, flow table with dissectors, ``NetworkEvents``) over
captures and hands every protocol and network event to one hook, with no sink and no rule
engine: that is all ``otsentry baseline learn`` needs. ``detect`` replays captures through the
whole ``Pipeline`` with a ``Detector`` as an event hook and flushes it at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otsentry.baseline.detector import Detector
from otsentry.capture import CaptureError, CaptureReader, Frame, merge_frames, open_capture
from otsentry.config import Config, DecodeAs
from otsentry.model import Alert, Event
from otsentry.netevents import NetworkEvents
from otsentry.stages import configured_registry, decoder_for, flow_table_for

#: an event hook (the pipeline's ``event_hooks`` element)
Hook = Callable[[Event], Iterable[Alert]]


@dataclass(slots=True)
class FeedResult:
    """What ``feed`` saw: packets, events, the capture errors met."""

    packets: int = 0
    events: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    errors: list[str] = field(default_factory=list)


def feed(
    paths: Sequence[Path],
    hook: Hook,
    config: Config | None = None,
    *,
    decode_as: Sequence[DecodeAs] = (),
    keep_going: bool = False,
) -> FeedResult:
    """Replay ``paths`` (merged in time order) and give every event to ``hook`` (the alerts it
    returns are ignored). A capture error is raised unless ``keep_going``."""
    result = FeedResult()

    def on_error(err: CaptureError) -> None:
        result.errors.append(str(err))

    readers: list[CaptureReader] = []
    try:
        for path in paths:
            readers.append(open_capture(path))
        frames = merge_frames(readers, keep_going, on_error)
        feed_frames(frames, hook, config, result=result, decode_as=decode_as)
    finally:
        for reader in readers:
            reader.close()
    return result


def feed_frames(
    frames: Iterable[Frame],
    hook: Hook,
    config: Config | None = None,
    *,
    decode_as: Sequence[DecodeAs] = (),
    result: FeedResult | None = None,
) -> FeedResult:
    """Every event of ``frames`` (a capture, or a live interface's) to ``hook``."""
    config = config if config is not None else Config()
    result = result if result is not None else FeedResult()

    def emit(event: Event) -> None:
        result.events += 1
        for _ in hook(event):
            pass

    net = NetworkEvents(emit, config.segment_for)
    decoder = decoder_for(config, on_arp=net.arp)
    table = flow_table_for(
        config,
        configured_registry(config, decode_as),
        emit,
        on_flow_start=net.flow_start,
        on_flow_end=net.flow_end,
    )
    packets = 0
    ts = -1
    for ts, linktype, data in frames:
        if result.first_ts is None:
            result.first_ts = ts
        packets += 1
        pkt = decoder.decode(linktype, data, ts)
        if pkt is not None:
            table.frame = packets
            table.packet(pkt, ts, data)
    result.packets = packets
    if ts >= 0:
        result.last_ts = ts
        table.close_all(ts)
    return result


def detect(
    paths: Sequence[Path],
    detector: Detector,
    out_dir: Path,
    config: Config | None = None,
    *,
    decode_as: Sequence[DecodeAs] = (),
    builtin_rules: bool = False,
) -> dict[str, Any]:
    """Replay ``paths`` through a ``Pipeline`` writing to ``out_dir`` that checks events with
    ``detector`` (as ``otsentry replay --baseline`` does). Returns the run's stats (the
    detector's under ``detection.baseline``)."""
    from otsentry.pipeline import Pipeline  # the whole sensor, only when detecting

    pipeline = Pipeline(
        config if config is not None else Config(),
        out_dir,
        decode_as=decode_as,
        builtin_rules=builtin_rules,
    )
    pipeline.use_baseline(detector)
    readers = [open_capture(p) for p in paths]
    try:

        def on_error(err: CaptureError) -> None:
            raise err

        pipeline.run(merge_frames(readers, False, on_error))
    finally:
        for reader in readers:
            reader.close()
    stats = pipeline.finish()
    return stats


def source_names(paths: Iterable[Path]) -> list[str]:
    """The capture file names a baseline records (names only: paths differ between hosts)."""
    return sorted({p.name for p in paths})


def stats_of(result: FeedResult) -> dict[str, Any]:
    """``FeedResult`` as data."""
    return {"packets": result.packets, "events": result.events, "errors": list(result.errors)}
