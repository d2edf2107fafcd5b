"""Wires the stages: frames → decode → flows/reassembly → dissectors → fan-out → sinks.

The per-packet loop lives in ``Pipeline.run`` and touches only locals and two bound methods.
Everything else (events, flows ending, stats) happens far less often than packets.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from otsentry import __version__
from otsentry.assets.inventory import Inventory
from otsentry.capture.base import Frame
from otsentry.config import Config, DecodeAs
from otsentry.dissect.base import Tracer
from otsentry.dissect.registry import DissectorRegistry
from otsentry.ecs import (
    DocumentIds,
    alert_doc,
    asset_doc,
    event_doc,
    iso_time,
    observer_doc,
)
from otsentry.model import Alert, Event
from otsentry.sinks.interface import Sink, Stream
from otsentry.sinks.ndjson import NdjsonSink
from otsentry.stages import configured_registry, decoder_for, flow_table_for

SEVERITY_NAMES = {21: "low", 47: "medium", 73: "high", 99: "critical"}
_PROGRESS_EVERY = 32_768  # packets between progress callbacks


@dataclass(slots=True)
class RunCounters:
    """What a run counted, outside the flow table and decoder."""

    packets: int = 0
    bytes: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    events: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
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
    ) -> None:
        self.config = config
        self.out_dir = out_dir
        self.registry = configured_registry(config, decode_as, registry)
        self.decoder = decoder_for(config)
        self.inventory = Inventory()
        #: actions that tell the inventory something about a host's role
        self.role_actions = self.inventory.ROLE_ACTIONS
        self.ndjson = NdjsonSink(out_dir, self._streams(config))
        self.sinks: list[Sink] = [self.ndjson, *(sinks or ())]
        #: sinks that take protocol events (documents are built only for them)
        self.event_sinks = [s for s in self.sinks if s.wants(Stream.EVENTS)]
        self.table = flow_table_for(
            config,
            self.registry,
            self.on_event,
            on_flow_end=self.inventory.observe_flow,
            tracer=tracer,
        )
        self.observer = observer_doc(config.sensor.name, interface)
        self.ids = DocumentIds(config.sensor.name)
        self.counters = RunCounters()
        self.event_hooks: list[Callable[[Event], Iterable[Alert]]] = []
        self._started = time.perf_counter()
        self._finished: dict[str, Any] | None = None

    @staticmethod
    def _streams(config: Config) -> list[Stream]:
        out = config.outputs
        wanted = {Stream.EVENTS: out.events, Stream.ALERTS: out.alerts, Stream.ASSETS: out.assets}
        return [s for s, on in wanted.items() if on]

    # -- the hot loop -----------------------------------------------------------------------
    def run(self, frames: Iterable[Frame], progress: Callable[[], None] | None = None) -> None:
        """Process frames until the iterator ends (or raises: counts are kept either way)."""
        decode = self.decoder.decode
        table = self.table
        packet = table.packet
        it: Iterator[Frame] = iter(frames)
        c = self.counters
        packets = nbytes = 0
        ts = first = -1
        try:
            while True:
                before = packets
                for ts, linktype, data in islice(it, _PROGRESS_EVERY):
                    if first < 0:
                        first = ts
                    packets += 1
                    nbytes += len(data)
                    pkt = decode(linktype, data, ts)
                    if pkt is not None:
                        table.frame = packets
                        packet(pkt, ts, data)
                if progress is not None:
                    progress()
                if packets - before < _PROGRESS_EVERY:
                    break
        finally:
            c.packets += packets
            c.bytes += nbytes
            if first >= 0:
                c.first_ts = first if c.first_ts is None else min(c.first_ts, first)
                c.last_ts = ts if c.last_ts is None else max(c.last_ts, ts)

    # -- fan-out ----------------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """An event from a dissector: write it, and let the detection hooks see it."""
        self.counters.events[event.envelope.protocol] += 1
        if event.identity or event.client_identity:
            self._identify(event)
        if event.action in self.role_actions:
            self.inventory.observe_event(event)
        if self.event_sinks:
            doc = event_doc(event, self.observer, self.ids)
            for sink in self.event_sinks:
                sink.write(Stream.EVENTS, doc)
        for hook in self.event_hooks:
            for alert in hook(event):
                self.on_alert(alert)

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
        """An alert from the rule engine or the baseline detector."""
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
        for asset in self.inventory.assets():
            doc = asset_doc(asset, self.observer, self.ids)
            for sink in self.sinks:
                sink.write(Stream.ASSETS, doc)
        for sink in self.sinks:
            sink.close()
        stats = self.stats()
        (self.out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
        self._finished = stats
        return stats

    def stats(self) -> dict[str, Any]:
        """Counters of the run so far (the content of ``stats.json``)."""
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
            "assets": len(self.inventory),
            "parse_errors": {
                "decode": dict(self.decoder.errors),
                "dissector_exceptions": table.stats.dissector_errors,
                "dissector_no_progress": table.stats.no_progress,
            },
            "not_ip_or_transport": dict(self.decoder.other),
            "ip_fragments": {
                "reassembled": self.decoder.fragments_reassembled,
                "trains_evicted": self.decoder.fragment_trains_evicted,
            },
            "tcp": table.stats.as_dict(),
            "capture": {"files": list(c.files), "errors": list(c.capture_errors)},
            "first_packet": iso_time(c.first_ts) if c.first_ts is not None else None,
            "last_packet": iso_time(c.last_ts) if c.last_ts is not None else None,
            "seconds": round(seconds, 3),
            "packets_per_second": round(c.packets / seconds) if seconds > 0 else 0,
        }
