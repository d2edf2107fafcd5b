"""The live sensor: frames from a mirror port through the pipeline, for months.

One process reads batches of frames from the AF_PACKET capture and runs them through the same
pipeline as a replay. Between batches it does what a replay never has to: ticks alert windows on a
quiet network (wall-clock time), flushes the NDJSON files so alerts show up within a second,
writes ``stats.json`` every ``stats_interval`` seconds (and a stats document to the clusters),
reloads rules and baselines on SIGHUP, and stops cleanly on SIGINT/SIGTERM or after ``duration``.
The capture path only receives: nothing here ever transmits on the monitored interfaces.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from otsentry.config import Config, DecodeAs
from otsentry.ecs import iso_time
from otsentry.pipeline import Pipeline, load_rules
from otsentry.sinks.interface import Sink

log = logging.getLogger("otsentry.sensor")

#: packets handed to the pipeline at a time, and how long a read waits on a quiet network
BATCH = 4096
READ_TIMEOUT = 0.2
#: NDJSON files are flushed at least this often (seconds), so alerts reach readers promptly
FLUSH_EVERY = 1.0


class FrameSource(Protocol):
    """What the sensor reads from: ``otsentry.capture.live.LiveCapture`` (or a test stand-in)."""

    def read(self, max_frames: int = BATCH, timeout: float = READ_TIMEOUT) -> list[Any]: ...

    def stats(self) -> dict[str, dict[str, int]]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class SensorOptions:
    """How the sensor runs (the command line's options)."""

    interfaces: tuple[str, ...]
    bpf: str | None = None
    duration: float | None = None
    stats_interval: float = 10.0
    rules: tuple[Path, ...] = ()
    builtin_rules: bool | None = None
    baseline: Path | None = None
    decode_as: Sequence[DecodeAs] = ()
    worker: int | None = None  # this process's number among several workers
    workers: int = 1
    fanout: str = "hash"  # how workers share the traffic: "hash" (flow) or "hostpair"


@dataclass(slots=True)
class SensorState:
    """The sensor's own counters, reported under ``sensor`` in stats.json."""

    started_wall: int = field(default_factory=time.time_ns)
    started: float = field(default_factory=time.monotonic)
    state: str = "running"
    reloads: int = 0
    last_reload: str | None = None
    last_reload_error: str | None = None
    batch_high_water: int = 0
    last_batch: int = 0
    rate_packets: float = 0.0
    rate_bytes: float = 0.0


class Sensor:
    """One capture feeding one pipeline; see the module docstring."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        options: SensorOptions,
        source: FrameSource,
        *,
        sinks: Sequence[Sink] = (),
        clock: Callable[[], float] = time.monotonic,
        on_view: Callable[[dict[str, Any]], None] | None = None,
        view_interval: float = 1.0,
    ) -> None:
        """``on_view`` gets a fresh stats snapshot every ``view_interval`` seconds (a terminal's
        live view); stats.json is written every ``options.stats_interval`` seconds."""
        self.config = config
        self.options = options
        self.source = source
        self.clock = clock
        self.state = SensorState()
        self.pipeline = Pipeline(
            config,
            out_dir,
            decode_as=options.decode_as,
            sinks=sinks,
            interface=options.interfaces[0] if options.interfaces else None,
            rules=options.rules,
            builtin_rules=options.builtin_rules,
            append=True,
        )
        self.pipeline.stats_extra = self._add_live_stats
        if options.baseline is not None:
            self.pipeline.use_baseline(load_detector(options.baseline, config, self.pipeline))
        self._stop = False
        self._reload = False
        self._capture: dict[str, dict[str, int]] = {}
        self._rate_mark = (clock(), 0, 0)
        self.on_view = on_view
        self.view_interval = view_interval
        #: the interfaces' own receive counters at start (sysfs), for "packets filtered"
        self._rx_start = {name: interface_rx(name) for name in options.interfaces}

    # -- control (signal handlers set flags; the loop acts on them between batches) ----------------
    def stop(self, *_: Any) -> None:
        """Finish the current batch, then flush and stop."""
        self._stop = True

    def request_reload(self, *_: Any) -> None:
        """Reload rules and the baseline between two batches."""
        self._reload = True

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop, SIGHUP reloads, while the sensor runs (restored afterwards)."""
        handlers: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
        wanted = {
            signal.SIGINT: self.stop,
            signal.SIGTERM: self.stop,
            signal.SIGHUP: self.request_reload,
        }
        for sig, handler in wanted.items():
            handlers[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for number, old in handlers.items():
                signal.signal(number, old if old is not None else signal.SIG_DFL)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Capture until stopped or ``duration`` passed; return the final stats."""
        opts = self.options
        pipeline = self.pipeline
        clock = self.clock
        state = self.state
        deadline = state.started + opts.duration if opts.duration is not None else None
        next_stats = state.started + opts.stats_interval
        next_flush = state.started + FLUSH_EVERY
        next_view = state.started
        read = self.source.read
        try:
            while not self._stop:
                frames = read(BATCH, READ_TIMEOUT)
                now = clock()
                if frames:
                    n = len(frames)
                    state.last_batch = n
                    if n > state.batch_high_water:
                        state.batch_high_water = n
                    pipeline.run(frames)
                else:
                    # a quiet network: alert windows and evidence still close on time
                    pipeline.tick(time.time_ns(), pipeline.counters.packets)
                if now >= next_flush:
                    pipeline.flush()
                    next_flush = now + FLUSH_EVERY
                if now >= next_stats:
                    self.report()
                    next_stats = now + opts.stats_interval
                if self.on_view is not None and now >= next_view:
                    self._capture = self.source.stats()
                    self.on_view(pipeline.stats())
                    next_view = now + self.view_interval
                if self._reload:
                    self._reload = False
                    self.reload()
                if deadline is not None and now >= deadline:
                    break
        finally:
            state.state = "stopped"
            self._capture = self.source.stats()
            self.source.close()
            stats = pipeline.finish()
        return stats

    def report(self) -> dict[str, Any]:
        """Write stats.json now (and a stats document to the clusters)."""
        self._capture = self.source.stats()
        stats = self.pipeline.stats()
        self.pipeline.write_stats(stats)
        self.pipeline.send_stats(stats)
        return stats

    def reload(self) -> None:
        """Rules and baseline again from their files; on any error the running ones stay."""
        state = self.state
        state.reloads += 1
        state.last_reload = iso_time(time.time_ns())
        try:
            engine = load_rules(self.config, self.options.rules, self.options.builtin_rules)
            detector = None
            if self.options.baseline is not None:
                detector = load_detector(self.options.baseline, self.config, self.pipeline)
        except (ValueError, OSError) as exc:
            state.last_reload_error = str(exc)
            log.error("reload failed, the running rules and baseline stay: %s", exc)
            return
        self.pipeline.replace_rules(engine)
        if self.options.baseline is not None:
            self.pipeline.replace_baseline(detector)
        state.last_reload_error = None
        log.warning(
            "reloaded: %d rules%s",
            len(engine.rules) if engine is not None else 0,
            ", baseline" if detector is not None else "",
        )

    # -- stats ----------------------------------------------------------------------------------------
    def _add_live_stats(self, stats: dict[str, Any]) -> None:
        state = self.state
        now = self.clock()
        mark_time, mark_packets, mark_bytes = self._rate_mark
        if now - mark_time >= 1.0:
            span = now - mark_time
            state.rate_packets = (stats["packets"] - mark_packets) / span
            state.rate_bytes = (stats["bytes"] - mark_bytes) / span
            self._rate_mark = (now, stats["packets"], stats["bytes"])
        interfaces = self._capture
        capture = stats["capture"]
        capture["interfaces"] = interfaces
        capture["kernel_drops"] = sum(i.get("dropped", 0) for i in interfaces.values())
        capture["filter"] = self.options.bpf
        if self.options.bpf:
            # what the interface received and the filter kept out (approximate: sysfs counts
            # every frame the interface took, the socket only what passed the filter)
            filtered = 0
            for name, start in self._rx_start.items():
                now_rx = interface_rx(name)
                if start is not None and now_rx is not None:
                    seen = interfaces.get(name, {}).get("received", 0)
                    filtered += max(0, now_rx - start - seen)
            capture["filtered"] = filtered
        stats["sensor"] = {
            "started": iso_time(state.started_wall),
            "updated": iso_time(time.time_ns()),
            "uptime_seconds": round(now - state.started, 3),
            "state": state.state,
            "workers": self.options.workers,
            "worker": self.options.worker,
            "pid": os.getpid(),
            "interfaces": list(self.options.interfaces),
            "stats_interval": self.options.stats_interval,
            "queue_depth": state.last_batch,
            "queue_high_water": state.batch_high_water,
            "packets_per_second": round(state.rate_packets, 1),
            "bytes_per_second": round(state.rate_bytes, 1),
            "reloads": state.reloads,
            "last_reload": state.last_reload,
            "last_reload_error": state.last_reload_error,
        }


def load_detector(directory: Path, config: Config, pipeline: Pipeline) -> Any:
    """The baseline detector for the baselines in ``directory`` (BaselineError if broken)."""
    from otsentry.baseline.detector import Detector
    from otsentry.baseline.store import load_dir

    return Detector(
        load_dir(directory),
        window=config.alerts.aggregation_window,
        on_open=pipeline.evidence_for,
    )


def interface_rx(name: str) -> int | None:
    """The interface's received-packets counter (sysfs), or None where there is none."""
    try:
        return int(Path(f"/sys/class/net/{name}/statistics/rx_packets").read_text())
    except (OSError, ValueError):
        return None
