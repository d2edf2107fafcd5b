"""Wires the stages: frames → decode → flows/reassembly → dissectors → fan-out → sinks.

The per-packet loop lives in ``Pipeline.run`` and touches only locals and three bound methods
(the evidence ring's append, the decoder, the flow table). Everything else (events, rule
matching, flows ending, alert windows, stats) happens far less often than packets.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import count, islice
from pathlib import Path
from typing import Any, Protocol

from otsentry import __version__
from otsentry import decode as decoding
from otsentry.accel import SPEEDUPS
from otsentry.assets.inventory import Inventory
from otsentry.capture.base import Frame
from otsentry.config import Config, DecodeAs
from otsentry.detect.alerts import Aggregator
from otsentry.detect.evidence import EvidenceRecorder
from otsentry.detect.model import Rule, RuleMatch
from otsentry.dissect.base import Tracer
from otsentry.dissect.registry import DissectorRegistry
from otsentry.ecs import (
    DocumentIds,
    alert_doc,
    asset_doc,
    event_doc,
    event_lines,
    iso_time,
    observer_doc,
    stats_doc,
)
from otsentry.flow.table import Flow
from otsentry.model import Alert, Event
from otsentry.netevents import NetworkEvents
from otsentry.sinks.interface import LineSink, ReportingSink, Sink, Stream
from otsentry.sinks.ndjson import NdjsonSink
from otsentry.stages import configured_registry, decoder_for, flow_table_for

SEVERITY_NAMES = {21: "low", 47: "medium", 73: "high", 99: "critical"}
_PROGRESS_EVERY = 32_768  # packets between progress callbacks (and alert/evidence ticks)


#: collector thresholds while a pipeline exists: per-packet objects are freed by reference
#: counting, and only flows (flow, context and dissector refer to each other) form cycles, so
#: generation 0 need not be scanned every 700 allocations (the default)
_GC_THRESHOLD = (10_000, 20, 10)


def _tune_gc() -> None:
    if gc.get_threshold()[0] < _GC_THRESHOLD[0]:
        gc.set_threshold(*_GC_THRESHOLD)


class Matcher(Protocol):
    """What the pipeline needs of the rule engine (``otsentry.detect.engine.RuleEngine``)."""

    @property
    def rules(self) -> Collection[Rule]:
        """The rules loaded."""
        ...

    def match(self, event: Event) -> Sequence[RuleMatch]:
        """The rules ``event`` matches (empty, and falsy, for almost every event)."""
        ...

    def stats(self) -> dict[str, Any]:
        """The engine's counters, for ``stats.json``."""
        ...


class BaselineDetector(Protocol):
    """What the pipeline needs of the baseline detector (``otsentry.baseline.detector``)."""

    def __call__(self, event: Event) -> Iterable[Alert]:
        """Check an event; the anomaly alerts whose aggregation windows closed."""
        ...

    def tick(self, ts: int) -> Iterable[Alert]:
        """Time-based checks at packet time ``ts``."""
        ...

    def flush(self, ts: int | None = None) -> Iterable[Alert]:
        """The end of the run: every alert still held."""
        ...

    def stats(self) -> dict[str, Any]:
        """The detector's counters, for ``stats.json``."""
        ...


def load_rules(
    config: Config, paths: Sequence[Path] = (), builtin: bool | None = None
) -> Matcher | None:
    """The rule engine for the config's ``detection`` section plus ``paths`` (``builtin``
    overrides ``detection.builtin_rules``); None when there is no rule to load. A broken rule
    file raises ``otsentry.detect.loader.RuleError`` (a ValueError)."""
    detection = config.detection
    sources = (*detection.rules, *paths)
    with_builtin = detection.builtin_rules if builtin is None else builtin
    if not sources and not with_builtin:
        return None
    from otsentry.detect.engine import RuleEngine  # the loader's YAML and schema only when needed

    return RuleEngine.load(sources, builtin=with_builtin, disabled=detection.disabled_rules)


def ndjson_streams(config: Config) -> list[Stream]:
    """The streams the config's ``outputs`` writes to local NDJSON files."""
    out = config.outputs
    wanted = {Stream.EVENTS: out.events, Stream.ALERTS: out.alerts, Stream.ASSETS: out.assets}
    return [s for s, on in wanted.items() if on]


def write_stats_file(path: Path, stats: Mapping[str, Any]) -> None:
    """A stats file replaced atomically (readers never see half of it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(stats, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(slots=True)
class RunCounters:
    """What a run counted, outside the flow table and decoder."""

    packets: int = 0
    bytes: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    events: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    #: protocol records carrying a dissector anomaly (malformed, out of spec), per protocol
    malformed: Counter[str] = field(default_factory=Counter)
    capture_errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class Pipeline:
    """One replay or live session: owns the decoder, flow table, inventory and sinks."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        *,
        registry: DissectorRegistry | None = None,
        decode_as: Sequence[DecodeAs] = (),
        sinks: Sequence[Sink] | None = None,
        interface: str | None = None,
        tracer: Tracer | None = None,
        rules: Sequence[Path] = (),
        builtin_rules: bool | None = None,
        engine: Matcher | None = None,
        append: bool = False,
    ) -> None:
        """``rules`` adds rule files or directories to the config's, ``builtin_rules`` overrides
        ``detection.builtin_rules``; ``engine`` replaces the engine they would build. A broken
        rule file raises ``otsentry.detect.loader.RuleError``. ``append`` adds to existing NDJSON
        files instead of starting them empty (the live sensor)."""
        _tune_gc()
        self.config = config
        self.out_dir = out_dir
        self.registry = configured_registry(config, decode_as, registry)
        #: flow and ARP events, for the rule engine and detection hooks only (never written to
        #: events.ndjson, which keeps to protocol records)
        self.network = NetworkEvents(self.on_network_event, config.segment_for)
        self.decoder = decoder_for(config, on_arp=self.network.arp)
        self.inventory = Inventory()
        #: actions that tell the inventory something about a host's role
        self.role_actions = self.inventory.ROLE_ACTIONS
        self.ndjson = NdjsonSink(out_dir, ndjson_streams(config), append=append)
        self.sinks: list[Sink] = [self.ndjson, *(sinks or ())]
        #: sinks that take protocol events (documents are built only for them)
        self.event_sinks = [s for s in self.sinks if s.wants(Stream.EVENTS)]
        #: of those, the ones taking ready NDJSON lines (``write_lines``) and the ones taking
        #: documents: when every one takes lines, a line is serialised without building the
        #: document
        self._line_sinks: list[LineSink] = [s for s in self.event_sinks if isinstance(s, LineSink)]
        self._doc_sinks = [s for s in self.event_sinks if not isinstance(s, LineSink)]
        self.table = flow_table_for(
            config,
            self.registry,
            self.on_event,
            on_flow_start=self.network.flow_start,
            on_flow_end=self._flow_ended,
            tracer=tracer,
        )
        self.observer = observer_doc(config.sensor.name, interface)
        self.ids = DocumentIds(config.sensor.name)
        #: ``ecs.event_line`` (its commonest case compiled when the compiled module is in use)
        self._event_line = event_lines()
        self.counters = RunCounters()
        self.event_hooks: list[Callable[[Event], Iterable[Alert]]] = []
        #: the baseline detector (``use_baseline``), also one of the event hooks
        self.baseline: BaselineDetector | None = None
        self.engine = engine if engine is not None else load_rules(config, rules, builtin_rules)
        self._match = self.engine.match if self.engine is not None else None
        self.rule_matches: Counter[str] = Counter()
        alerts = config.alerts
        ev = alerts.evidence
        #: evidence pcaps; none when disabled or when no sink takes the alerts they belong to
        self.evidence = (
            EvidenceRecorder(
                out_dir,
                packets_before=ev.packets_before,
                packets_after=ev.packets_after,
                ring_packets=ev.ring_packets,
                max_files=ev.max_files,
                wait=max(alerts.aggregation_window, 1.0),
            )
            if ev.enabled and any(s.wants(Stream.ALERTS) for s in self.sinks)
            else None
        )
        self.aggregator = Aggregator(
            alerts.aggregation_window,
            self._write_alert,
            on_open=self._evidence_for_match if self.evidence is not None else None,
        )
        #: packets counted before the current ``run`` call; whether one is under way
        self._base = 0
        #: the packets of the current ``run`` call up to the one being processed
        self._in_run = 0
        self._running = False
        self._started = time.perf_counter()
        self._finished: dict[str, Any] | None = None
        #: adds what the pipeline does not know to every stats snapshot (the live sensor's
        #: capture counters and its own state)
        self.stats_extra: Callable[[dict[str, Any]], None] | None = None

    # -- the hot loop -----------------------------------------------------------------------
    def run(
        self,
        frames: Iterable[Frame],
        progress: Callable[[], None] | None = None,
        numbers: Iterable[int] | None = None,
    ) -> None:
        """Process frames until the iterator ends (or raises: counts are kept either way).

        ``numbers`` gives each frame's number as the records name it (``request_frame``…; one
        taken after each frame): a worker's share of a capture numbered as the capture is. By
        default frames are numbered on from the packets counted before.

        Every ``_PROGRESS_EVERY`` packets (fewer when the evidence ring is small, so that no
        frame leaves it unseen) the alert windows and evidence captures are ticked and
        ``progress`` is called."""
        decode = self.decoder.decode
        fast = decoding.FAST_TCP4 if type(self.decoder) is decoding.Decoder else None
        table = self.table
        packet = table.fast_packet()
        evidence = self.evidence
        # the evidence ring keeps the frame tuples themselves and their flow keys beside them;
        # without evidence zero-length deques swallow them at the same cost as a test
        keep = (evidence.ring if evidence is not None else deque(maxlen=0)).append
        mark = (evidence.keys if evidence is not None else deque(maxlen=0)).append
        run_frames = SPEEDUPS.run_frames if SPEEDUPS is not None else None
        ring = keep if evidence is not None else None
        keys = mark if evidence is not None else None
        batch = _PROGRESS_EVERY
        if evidence is not None:
            batch = max(1, min(batch, evidence.ring_packets // 2))
        it: Iterator[Frame] = iter(frames)
        c = self.counters
        packets = nbytes = 0
        ts = first = -1
        self._base = c.packets
        numbered = iter(numbers) if numbers is not None else count(c.packets + 1)
        self._running = True
        try:
            while True:
                before = packets
                if run_frames is not None:  # the same loop, compiled
                    state = [packets, nbytes, first, ts]
                    try:
                        run_frames(
                            it, numbered, batch, ring, keys, fast is not None, decode, packet,
                            table, self, state,
                        )  # fmt: skip
                    finally:
                        packets, nbytes, first, ts = state
                else:
                    for frame, number in zip(islice(it, batch), numbered, strict=False):
                        keep(frame)
                        ts, linktype, data = frame
                        if first < 0:
                            first = ts
                        packets += 1
                        nbytes += len(data)
                        # the commonest frame without the call of decode (the same packet)
                        pkt = fast(data) if fast is not None and linktype == 1 else None
                        if pkt is None:
                            pkt = decode(linktype, data, ts)
                        mark(pkt and pkt[0])
                        if pkt is not None:
                            table.frame = number
                            self._in_run = packets
                            packet(pkt, ts, data)
                if packets > before:
                    self.tick(ts, self._base + packets)
                if progress is not None:
                    progress()
                if packets - before < batch:
                    break
        finally:
            self._running = False
            c.packets += packets
            c.bytes += nbytes
            if first >= 0:
                c.first_ts = first if c.first_ts is None else min(c.first_ts, first)
                c.last_ts = ts if c.last_ts is None else max(c.last_ts, ts)

    def tick(self, ts: int, packet_no: int) -> None:
        """Periodic work at packet time ``ts`` after packet ``packet_no``: close the alert
        windows that are due, collect evidence packets."""
        self.aggregator.tick(ts)
        if self.baseline is not None:
            for alert in self.baseline.tick(ts):
                self.on_alert(alert)
        if self.evidence is not None:
            self.evidence.advance(packet_no, ts)

    def evidence_for(self, event: Event, rule_id: str) -> str | None:
        """Start an evidence pcap of ``event``'s flow at the current packet (None when off)."""
        if self.evidence is None:
            return None
        return self.evidence.start(event.envelope.conn, rule_id, self._packet_no())

    def use_baseline(self, detector: BaselineDetector) -> None:
        """Check every event against a baseline: ``detector`` becomes an event hook, is ticked
        with the alert windows and flushed at the end; its stats go to ``detection.baseline``."""
        self.baseline = detector
        self.event_hooks.append(detector)

    def replace_rules(self, engine: Matcher | None) -> None:
        """Match events against ``engine`` from now on (a SIGHUP reload). Flows, assets, alert
        windows and counters stay; the old engine's correlation windows go with it."""
        self.engine = engine
        self._match = engine.match if engine is not None else None

    def replace_baseline(self, detector: BaselineDetector | None) -> None:
        """Check events against ``detector`` from now on (a SIGHUP reload): the old detector's
        open windows are closed and their alerts written first."""
        old = self.baseline
        if old is not None:
            for alert in old.flush(self.counters.last_ts):
                self.on_alert(alert)
            self.event_hooks.remove(old)
        self.baseline = None
        if detector is not None:
            self.use_baseline(detector)

    def _packet_no(self) -> int:
        """The number of the packet being processed (the last one outside ``run``)."""
        if self._running:
            return self._base + self._in_run
        return self.counters.packets

    # -- fan-out ----------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """An event from a dissector: write it, and let the detection hooks see it."""
        self.counters.events[event.envelope.protocol] += 1
        if event.anomalies:
            self.counters.malformed[event.envelope.protocol] += 1
        if event.identity or event.client_identity:
            self._identify(event)
        if event.action in self.role_actions:
            self.inventory.observe_event(event)
        if self._doc_sinks:  # one document (one event.id) for every sink
            doc = event_doc(event, self.observer, self.ids)
            for sink in self.event_sinks:
                sink.write(Stream.EVENTS, doc)
        elif self._line_sinks:
            line = self._event_line(event, self.observer, self.ids)
            for line_sink in self._line_sinks:
                line_sink.write_lines(Stream.EVENTS, line, 1)
        match = self._match
        if match is not None:
            found = match(event)
            if found:
                self._on_matches(found)
        for hook in self.event_hooks:
            for alert in hook(event):
                self.on_alert(alert)

    def _flow_ended(self, flow: Flow) -> None:
        """A flow left the table: into the inventory, and a ``network-flow-end`` event."""
        self.inventory.observe_flow(flow)
        self.network.flow_end(flow)

    def on_network_event(self, event: Event) -> None:
        """A flow or ARP event: to the rule engine and the detection hooks, never to a sink
        (``on_event`` does the same inline: it runs for every protocol event)."""
        match = self._match
        if match is not None:
            found = match(event)
            if found:
                self._on_matches(found)
        for hook in self.event_hooks:
            for alert in hook(event):
                self.on_alert(alert)

    def _on_matches(self, matches: Sequence[RuleMatch]) -> None:
        counts = self.rule_matches
        for m in matches:
            counts[m.rule.id] += 1
        self.aggregator.add(matches)

    def _evidence_for_match(self, match: RuleMatch) -> str | None:
        assert self.evidence is not None
        conn = match.event.envelope.conn
        return self.evidence.start(conn, match.rule.id, self._packet_no())

    def _identify(self, event: Event) -> None:
        env = event.envelope
        conn = env.conn
        if event.identity:
            self.inventory.identify(conn.segment, conn.server_ip, env.protocol, event.identity)
        if event.client_identity:
            self.inventory.identify(
                conn.segment, conn.client_ip, env.protocol, event.client_identity
            )

    def on_alert(self, alert: Alert) -> None:
        """An alert from a detection hook (the baseline detector): evidence is taken now, and
        the alert written."""
        if alert.evidence_pcap is None and self.evidence is not None and alert.events:
            conn = alert.events[0].envelope.conn
            path = self.evidence.start(conn, alert.rule_id, self._packet_no())
            if path is not None:
                alert = replace(alert, evidence_pcap=path)
        self._write_alert(alert)

    def _write_alert(self, alert: Alert) -> None:
        self.counters.alerts[SEVERITY_NAMES.get(alert.severity, str(alert.severity))] += 1
        doc = alert_doc(alert, self.observer, self.ids)
        for sink in self.sinks:
            sink.write(Stream.ALERTS, doc)

    # -- the end ----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """End every flow, write assets and ``stats.json``, close the sinks; return the stats."""
        if self._finished is not None:
            return self._finished
        c = self.counters
        end_ts = c.last_ts if c.last_ts is not None else time.time_ns()
        self.table.close_all(end_ts)
        if self.baseline is not None:
            for alert in self.baseline.flush(end_ts):
                self.on_alert(alert)
        self.aggregator.flush()
        if self.evidence is not None:
            self.evidence.finish(c.packets)
        for asset in self.inventory.assets():
            doc = asset_doc(asset, self.observer, self.ids)
            for sink in self.sinks:
                sink.write(Stream.ASSETS, doc)
        if any(s.wants(Stream.STATS) for s in self.sinks):
            self.send_stats(self.stats())
        for sink in self.sinks:
            sink.close()
        stats = self.stats()
        self.write_stats(stats)
        self._finished = stats
        return stats

    def flush(self) -> None:
        """Push what the sinks hold out (files to disk, partial batches to the clusters)."""
        for sink in self.sinks:
            sink.flush()

    def write_stats(self, stats: dict[str, Any]) -> None:
        """``stats.json`` in the output directory, replaced atomically (readers never see half)."""
        write_stats_file(self.out_dir / "stats.json", stats)

    def send_stats(self, stats: dict[str, Any]) -> None:
        """A stats document to the sinks that take them (the clusters' metrics stream)."""
        ts = self.counters.last_ts if self.counters.last_ts is not None else time.time_ns()
        doc = stats_doc(stats, self.observer, self.ids, ts)
        for sink in self.sinks:
            if sink.wants(Stream.STATS):
                sink.write(Stream.STATS, doc)

    def stats(self) -> dict[str, Any]:
        """Counters of the run so far (the content of ``stats.json``)."""
        stats = self._stats()
        if self.stats_extra is not None:
            self.stats_extra(stats)
        return stats

    def _stats(self) -> dict[str, Any]:
        c = self.counters
        seconds = time.perf_counter() - self._started
        table = self.table
        alerts = {name: c.alerts.get(name, 0) for name in SEVERITY_NAMES.values()}
        return {
            "version": __version__,
            "packets": c.packets,
            "bytes": c.bytes,
            "flows": table.flows_total,
            "flows_active": len(table),
            "flows_peak": table.peak_flows,
            "flows_ended": dict(table.ended),
            "flows_by_protocol": dict(table.flows_by_protocol),
            "pdus": {name: table.pdus.get(name, 0) for name in self.registry.names},
            "events": dict(c.events),
            "alerts": alerts,
            "alerts_total": sum(c.alerts.values()),
            "detection": self._detection_stats(),
            "evidence": (
                self.evidence.stats.as_dict() if self.evidence is not None else {"enabled": False}
            ),
            "assets": len(self.inventory),
            "assets_evicted": self.inventory.evicted,
            "asset_facts_evicted": self.inventory.facts_evicted,
            "network": self.network.stats(),
            "parse_errors": {
                "decode": dict(self.decoder.errors),
                "dissector_exceptions": table.stats.dissector_errors,
                "dissector_no_progress": table.stats.no_progress,
                "by_protocol": {name: c.malformed.get(name, 0) for name in self.registry.names},
            },
            "not_ip_or_transport": dict(self.decoder.other),
            "ip_fragments": {
                "reassembled": self.decoder.fragments_reassembled,
                "trains_evicted": self.decoder.fragment_trains_evicted,
            },
            "tcp": table.stats.as_dict(),
            "capture": {"files": list(c.files), "errors": list(c.capture_errors)},
            "outputs": {
                sink.name: sink.as_dict() for sink in self.sinks if isinstance(sink, ReportingSink)
            },
            "first_packet": iso_time(c.first_ts) if c.first_ts is not None else None,
            "last_packet": iso_time(c.last_ts) if c.last_ts is not None else None,
            "seconds": round(seconds, 3),
            "packets_per_second": round(c.packets / seconds) if seconds > 0 else 0,
        }

    def _detection_stats(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "rules_loaded": len(engine.rules) if engine is not None else 0,
            "matches": dict(sorted(self.rule_matches.items())),
            **self.aggregator.stats.as_dict(),
            "windows_open": len(self.aggregator),
            "engine": engine.stats() if engine is not None else {},
            "baseline": self.baseline.stats() if self.baseline is not None else None,
        }
