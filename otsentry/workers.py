"""``otsentry sensor --workers N``: several capture processes sharing the traffic by flow.

The supervisor opens N capture sockets in one PACKET_FANOUT group (the kernel's symmetric flow
hash sends both directions of a flow to the same socket), drops privileges, and forks one worker
per socket. Each worker runs the whole pipeline — decode, reassembly, dissectors, rules, baseline —
on its share and sends its documents, as NDJSON lines, through a pipe to the supervisor. One set
of outputs: ``alerts.ndjson`` / ``assets.ndjson`` written by the supervisor, ``events.ndjson``
appended to by the workers themselves in whole-line batches (``EventsFileSink``; through the
supervisor when a cluster takes the events too), one spool and one connection per cluster, and one
``stats.json`` summing the workers' counters. Assets seen by several workers are merged into one
document per host at the end. Evidence pcaps stay in ``workers/<n>/evidence/`` (the alerts name
that path); the run's cap on them is shared between the workers.

Baseline detection still works per segment: every worker checks its flows against the same
baselines. Signals go to the supervisor, which passes SIGTERM/SIGINT and SIGHUP on.

``otsentry replay --workers N`` uses the same pipes and supervisor (``ReplaySupervisor``): its
workers read the captures themselves and keep their share of the host pairs
(``otsentry.capture.split``); a worker's read errors come through the pipe so that the
supervisor reports each one once.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import math
import os
import selectors
import signal
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from otsentry.assets.identity import device_fields
from otsentry.assets.inventory import MAX_LISTED_PEERS
from otsentry.config import Config
from otsentry.ecs import DocumentIds, iso_time, observer_doc, stats_doc
from otsentry.pipeline import ndjson_streams, write_stats_file
from otsentry.sinks.interface import Sink, Stream
from otsentry.sinks.ndjson import NdjsonSink, ndjson_line

log = logging.getLogger("otsentry.workers")

_HEADER = struct.Struct("<BI")
_KIND = {Stream.EVENTS: 1, Stream.ALERTS: 2, Stream.ASSETS: 3, Stream.STATS: 4}
_STREAM = {v: k for k, v in _KIND.items()}
_ERROR = 5  # not a document: a worker's error message, for the supervisor to report once
_FLUSH_BYTES = 1 << 18
_FILE_FLUSH_BYTES = 1 << 20  # a worker's events batch appended in one write
_PIPE_BYTES = 1 << 20  # the pipe's buffer where the system allows (pipe-max-size: 1 MiB)
_MAX_LISTED = 64  # values of a list-valued identity fact, as the inventory keeps them


class PipeSink:
    """A worker's only sink: documents as NDJSON lines, framed per stream, to the supervisor."""

    def __init__(self, fd: int, streams: Iterable[Stream]) -> None:
        self.fd = fd
        self._streams = frozenset(streams) | {Stream.STATS}
        self._buffers: dict[Stream, list[bytes]] = {s: [] for s in self._streams}
        self._size = 0

    def wants(self, stream: Stream) -> bool:
        """The streams the supervisor writes somewhere."""
        return stream in self._streams

    def write(self, stream: Stream, doc: Mapping[str, Any]) -> None:
        """Queue one document; a full buffer goes down the pipe."""
        line = ndjson_line(doc)
        self._buffers[stream].append(line)
        self._size += len(line)
        if self._size >= _FLUSH_BYTES or stream is not Stream.EVENTS:
            self.flush()

    def write_lines(self, stream: Stream, lines: bytes, count: int = 0) -> None:
        """Queue documents already serialised as NDJSON lines (each ending in a newline)."""
        if not lines or stream not in self._streams:
            return
        self._buffers[stream].append(lines)
        self._size += len(lines)
        if self._size >= _FLUSH_BYTES or stream is not Stream.EVENTS:
            self.flush()

    def error(self, message: object) -> None:
        """Send an error message now (the supervisor reports each distinct one once)."""
        self.flush()
        payload = str(message).encode("utf-8", "replace")
        _write_all(self.fd, _HEADER.pack(_ERROR, len(payload)) + payload)

    def flush(self) -> None:
        """Send every buffered line (blocks while the supervisor is behind)."""
        for stream, lines in self._buffers.items():
            if lines:
                payload = b"".join(lines)
                lines.clear()
                _write_all(self.fd, _HEADER.pack(_KIND[stream], len(payload)) + payload)
        self._size = 0

    def close(self) -> None:
        """Flush and close the pipe (the supervisor sees the end); again: nothing."""
        if self.fd < 0:
            return
        self.flush()
        os.close(self.fd)
        self.fd = -1


class EventsFileSink:
    """A worker's protocol events, appended to the shared ``events.ndjson`` by the worker itself
    (no relay through the supervisor: a parallel replay writes ~1.3 kB per event).

    The file is opened with ``O_APPEND`` and written only in whole lines, each ``write`` of a
    batch landing at the end of the file as one piece: the workers' lines never mix within a
    line, only their batches interleave."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._lines: list[bytes] = []
        self._size = 0

    def wants(self, stream: Stream) -> bool:
        """Protocol events only."""
        return stream is Stream.EVENTS

    def write(self, stream: Stream, doc: Mapping[str, Any]) -> None:
        """Queue one event document."""
        if stream is Stream.EVENTS:
            self.write_lines(stream, ndjson_line(doc))

    def write_lines(self, stream: Stream, lines: bytes, count: int = 0) -> None:
        """Queue event lines (each ending in a newline); a full buffer is appended."""
        if stream is not Stream.EVENTS or not lines:
            return
        self._lines.append(lines)
        self._size += len(lines)
        if self._size >= _FILE_FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Append the queued lines."""
        if self._lines:
            data = b"".join(self._lines)
            self._lines.clear()
            self._size = 0
            _write_all(self.fd, data)

    def close(self) -> None:
        """Append what is queued and close the file; again: nothing."""
        if self.fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self.fd)
            self.fd = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def run_workers(
    config: Config,
    out_dir: Path,
    options: Any,
    *,
    es: str | None,
    opensearch: str | None,
    user: str | None,
) -> int:
    """Run ``options.workers`` sensors in one PACKET_FANOUT group; return the exit code."""
    from otsentry.capture.live import LiveCapture, LiveCaptureError, LiveOptions, drop_privileges
    from otsentry.cli.ui import error
    from otsentry.sinks.factory import wanted_clusters

    try:
        clusters = wanted_clusters(config, es, opensearch)  # unusable settings: before any fork
    except ValueError as exc:
        error(exc)
        return 2
    group = os.getpid() & 0xFFFF
    captures: list[Any] = []
    try:
        for _ in range(options.workers):
            captures.append(
                LiveCapture(
                    LiveOptions(
                        interfaces=options.interfaces,
                        bpf=options.bpf,
                        fanout_group=group,
                        fanout_mode=options.fanout,
                    )
                )
            )
        if user:
            drop_privileges(user)
        out_dir.mkdir(parents=True, exist_ok=True)
    except (LiveCaptureError, OSError) as exc:
        for capture in captures:
            capture.close()
        error(exc)
        return 2
    supervisor = Supervisor(config, out_dir, options, clusters)

    def work(number: int, fd: int) -> int:
        capture = captures[number]
        for other in captures:
            if other is not capture:
                other.close()
        return _worker(config, out_dir, options, number, capture, fd, supervisor)

    children = fork_workers(len(captures), work)
    for capture in captures:
        capture.close()  # the workers hold their own references
    return supervisor.run(children, es=es, opensearch=opensearch)


def fork_workers(count: int, work: Callable[[int, int], int]) -> list[tuple[int, int]]:
    """Fork ``count`` workers, each running ``work(number, pipe_fd)`` and exiting with its
    result (1 if it raised); return their (pid, read end of their pipe), in worker order."""
    children: list[tuple[int, int]] = []
    for number in range(count):
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # Linux: fewer, larger pipe writes
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            for _, fd in children:
                os.close(fd)
            code = 1
            try:
                code = work(number, write_fd)
            finally:
                os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))
    return children


def _worker(
    config: Config,
    out_dir: Path,
    options: Any,
    number: int,
    capture: Any,
    fd: int,
    supervisor: Supervisor,
) -> int:
    from otsentry.sensor import Sensor

    _, sinks = supervisor.worker_sinks(fd)
    try:
        sensor = Sensor(
            worker_config(config, options.workers),
            out_dir / "workers" / str(number),
            dataclasses.replace(
                options, worker=number, stats_interval=min(options.stats_interval, 1.0)
            ),
            capture,
            sinks=sinks,
        )
        signal.signal(signal.SIGTERM, sensor.stop)
        signal.signal(signal.SIGINT, sensor.stop)
        signal.signal(signal.SIGHUP, sensor.request_reload)
        sensor.run()
    finally:
        for sink in sinks:
            sink.close()
    return 0


def worker_config(config: Config, workers: int = 1) -> Config:
    """A worker's configuration: no output of its own (the supervisor writes the documents,
    the workers' events file aside), and its part of the run's evidence files (the cap is per
    run: ``workers`` processes share it)."""
    evidence = config.alerts.evidence
    return dataclasses.replace(
        config,
        outputs=dataclasses.replace(
            config.outputs,
            events=False,
            alerts=False,
            assets=False,
            elasticsearch=None,
            opensearch=None,
        ),
        alerts=dataclasses.replace(
            config.alerts,
            evidence=dataclasses.replace(
                evidence, max_files=-(-evidence.max_files // max(workers, 1))
            ),
        ),
    )


class Supervisor:
    """Reads the workers' pipes, writes the merged outputs, relays signals."""

    def __init__(
        self, config: Config, out_dir: Path, options: Any, clusters: Iterable[Any] = ()
    ) -> None:
        """``clusters``: the ClusterSettings the run sends to (their ``events`` option decides
        whether workers send protocol events when the local file is off)."""
        self.config = config
        self.out_dir = out_dir
        self.options = options
        #: the workers append protocol events to events.ndjson themselves (no cluster wants
        #: them: nothing else to do with them than write them down)
        self.events_file = config.outputs.events and not any(c.options.events for c in clusters)
        #: what the workers send through their pipes
        self.streams = {Stream.ALERTS, Stream.ASSETS}
        if any(c.options.events for c in clusters):
            self.streams.add(Stream.EVENTS)
        self.worker_stats: dict[int, dict[str, Any]] = {}
        self.assets: dict[str, dict[str, Any]] = {}
        #: reports a worker's error message, each distinct one once (default: logged)
        self.on_error: Callable[[str], None] = log.error
        self._errors: set[str] = set()
        #: the merged stats written at the end
        self.final_stats: dict[str, Any] | None = None
        self._pids: list[int] = []
        self._stop = False
        self.started = time.monotonic()
        self.started_wall = time.time_ns()

    def worker_sinks(self, fd: int) -> tuple[PipeSink, list[Sink]]:
        """In a worker: its pipe to the supervisor, and the sinks its pipeline writes to (the
        pipe, and the events file when the workers write it themselves)."""
        pipe = PipeSink(fd, self.streams)
        if not self.events_file:
            return pipe, [pipe]
        return pipe, [EventsFileSink(self.out_dir / f"{Stream.EVENTS.value}.ndjson"), pipe]

    def run(
        self,
        children: list[tuple[int, int]],
        *,
        es: str | None,
        opensearch: str | None,
        clusters: list[Any] | None = None,
        append: bool = True,
    ) -> int:
        """Until every worker closed its pipe: dispatch their documents; then merge and finish.

        ``clusters``: cluster sinks opened before the fork (else they are opened here from
        ``es``/``opensearch`` and the config); ``append``: add to existing NDJSON files (the
        sensor) rather than start them empty (a replay)."""
        from otsentry.cli.replay import cluster_sinks

        self._pids = [pid for pid, _ in children]
        streams = ndjson_streams(self.config)
        if self.events_file:  # the workers' own file (each opens it to append, creating it)
            streams.remove(Stream.EVENTS)
        self.ndjson = NdjsonSink(self.out_dir, streams, append=append)
        if clusters is not None:
            self.clusters = clusters
        else:
            try:
                self.clusters = cluster_sinks(self.config, self.out_dir, es, opensearch)
            except BaseException:
                self._signal(signal.SIGTERM)
                raise
        self.sinks: list[Sink] = [self.ndjson, *self.clusters]
        interfaces = getattr(self.options, "interfaces", None)
        self.observer = observer_doc(self.config.sensor.name, interfaces[0] if interfaces else None)
        self.ids = DocumentIds(self.config.sensor.name)
        old = {
            sig: signal.signal(sig, self._relay)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        selector = selectors.DefaultSelector()
        buffers: dict[int, bytearray] = {}
        for pid, fd in children:
            selector.register(fd, selectors.EVENT_READ, pid)
            buffers[fd] = bytearray()
        workers = {fd: n for n, (_, fd) in enumerate(children)}
        next_stats = time.monotonic() + self.options.stats_interval
        next_flush = time.monotonic() + 1.0
        try:
            while selector.get_map():
                for key, _ in selector.select(timeout=0.5):
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        selector.unregister(fd)
                        os.close(fd)
                        continue
                    buffers[fd] += chunk
                    self._dispatch(workers[fd], buffers[fd])
                now = time.monotonic()
                if now >= next_flush:
                    for sink in self.sinks:
                        sink.flush()
                    next_flush = now + 1.0
                if now >= next_stats:
                    self._write_stats("running")
                    next_stats = now + self.options.stats_interval
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            codes = [_exit_code(pid) for pid in self._pids]
            for number, code in enumerate(codes):
                if code < 0:  # its documents and counts so far are in; the rest is lost
                    self._error(f"worker {number} was killed by signal {-code}")
            self._finish()
        return 0 if all(code == 0 for code in codes) else 1

    def _relay(self, signum: int, _: Any) -> None:
        self._signal(signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _dispatch(self, worker: int, buffer: bytearray) -> None:
        while len(buffer) >= _HEADER.size:
            kind, size = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            payload = bytes(buffer[_HEADER.size : end])
            del buffer[:end]
            if kind == _ERROR:
                self._error(payload.decode("utf-8", "replace"))
            else:
                self._handle(worker, _STREAM[kind], payload)

    def _error(self, message: str) -> None:
        if message not in self._errors:
            self._errors.add(message)
            self.on_error(message)

    def _handle(self, worker: int, stream: Stream, payload: bytes) -> None:
        if stream is Stream.EVENTS:
            # the bulk: the lines go to the file as they came; parsed only for the clusters
            self.ndjson.write_lines(stream, payload)
            clusters = [c for c in self.clusters if c.wants(stream)]
            if clusters:
                for line in payload.splitlines():
                    doc = orjson.loads(line)
                    for cluster in clusters:
                        cluster.write(stream, doc)
            return
        lines = payload.splitlines()
        if stream is Stream.STATS:
            for line in lines:
                self.worker_stats[worker] = orjson.loads(line)["otsentry"]["stats"]
            return
        if stream is Stream.ASSETS:
            for line in lines:
                merge_asset(self.assets, orjson.loads(line))
            return
        for line in lines:
            doc = orjson.loads(line)
            evidence = doc.get("otsentry", {}).get("evidence")
            if isinstance(evidence, dict) and evidence.get("pcap"):
                evidence["pcap"] = f"workers/{worker}/{evidence['pcap']}"
            for sink in self.sinks:
                sink.write(stream, doc)

    def _finish(self) -> None:
        for doc in self.assets.values():
            for sink in self.sinks:
                sink.write(Stream.ASSETS, doc)
        stats = self.stats("stopped")
        for sink in self.clusters:
            sink.write(
                Stream.STATS, stats_doc(stats, self.observer, self.ids, self.stats_time(stats))
            )
        for sink in self.sinks:
            sink.close()
        stats["outputs"] = {sink.name: sink.as_dict() for sink in self.clusters}
        write_stats_file(self.out_dir / "stats.json", stats)
        self.final_stats = stats

    def _write_stats(self, state: str) -> None:
        stats = self.stats(state)
        write_stats_file(self.out_dir / "stats.json", stats)
        for sink in self.clusters:
            sink.write(
                Stream.STATS, stats_doc(stats, self.observer, self.ids, self.stats_time(stats))
            )

    def stats_time(self, stats: Mapping[str, Any]) -> int:
        """The ``@timestamp`` of a stats document: now (a live sensor's counters)."""
        return time.time_ns()

    def merged_stats(self) -> dict[str, Any]:
        """The workers' latest counters summed, with the supervisor's assets and outputs."""
        merged = merge_stats([self.worker_stats[n] for n in sorted(self.worker_stats)])
        merged["assets"] = len(self.assets) or merged.get("assets", 0)
        merged["outputs"] = {sink.name: sink.as_dict() for sink in getattr(self, "clusters", [])}
        return merged

    def stats(self, state: str) -> dict[str, Any]:
        """The workers' latest counters summed, and the supervisor's own state."""
        merged = self.merged_stats()
        sensor = merged.setdefault("sensor", {})
        sensor.update(
            {
                "started": iso_time(self.started_wall),
                "updated": iso_time(time.time_ns()),
                "uptime_seconds": round(time.monotonic() - self.started, 3),
                "state": state,
                "workers": self.options.workers,
                "worker": None,
                "pid": os.getpid(),
                "worker_pids": list(self._pids),
            }
        )
        return merged


@dataclasses.dataclass(frozen=True, slots=True)
class _ReplayOptions:
    workers: int
    stats_interval: float = math.inf  # stats.json once, at the end, as a single replay


class ReplaySupervisor(Supervisor):
    """The supervisor of ``otsentry replay --workers N``: writes the outputs once, at the end,
    as a single-process replay does (stats.json with a ``workers`` section and no ``sensor``)."""

    def __init__(
        self, config: Config, out_dir: Path, workers: int, clusters: Iterable[Sink] = ()
    ) -> None:
        """``clusters``: the cluster sinks the replay sends to (opened before the fork)."""
        super().__init__(config, out_dir, _ReplayOptions(workers))
        if any(sink.wants(Stream.EVENTS) for sink in clusters):
            self.streams.add(Stream.EVENTS)
            self.events_file = False
        #: whether a SIGINT/SIGTERM reached the supervisor (passed on to the workers)
        self.interrupted = False

    def _relay(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGHUP:
            self.interrupted = True
        super()._relay(signum, frame)

    def stats_time(self, stats: Mapping[str, Any]) -> int:
        """The last packet's time, as a single-process replay stamps its stats document."""
        last = stats.get("last_packet")
        if not isinstance(last, str):
            return time.time_ns()
        moment = datetime.fromisoformat(last.replace("Z", "+00:00"))
        return (calendar.timegm(moment.timetuple()) * 1_000_000 + moment.microsecond) * 1000

    def stats(self, state: str) -> dict[str, Any]:
        """The workers' counters summed; seconds and rate of the whole run."""
        merged = self.merged_stats()
        seconds = time.monotonic() - self.started
        merged["seconds"] = round(seconds, 3)
        merged["packets_per_second"] = round(merged.get("packets", 0) / seconds) if seconds else 0
        workers = self.options.workers
        merged["workers"] = {
            "count": workers,
            # each worker counts the frames it kept: these add up to the capture's frames
            "packets": [self.worker_stats.get(n, {}).get("packets", 0) for n in range(workers)],
            "state": state,
        }
        return merged


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


#: stats fields that are a moment's value or a maximum, not a count to add up
_MAX_FIELDS = frozenset(
    {
        "seconds",
        "uptime_seconds",
        "last_packet",
        "updated",
        "reloads",
        "stats_interval",
        "last_reload",
        "rules_loaded",  # every worker loads the same rules
        "rules",
    }
)
_MIN_FIELDS = frozenset({"first_packet", "started"})


def merge_stats(parts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Several workers' stats.json as one: counts added, times and maxima kept as such."""
    merged: dict[str, Any] = {}
    for part in parts:
        _merge_into(merged, part)
    return merged


def _merge_into(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        have = into.get(key)
        if key not in into:
            into[key] = _copy(value)
        elif isinstance(value, Mapping) and isinstance(have, dict):
            _merge_into(have, value)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float) and isinstance(have, int | float):
            if key in _MAX_FIELDS:
                into[key] = max(have, value)
            elif key in _MIN_FIELDS:
                into[key] = min(have, value)
            else:
                into[key] = have + value
        elif isinstance(value, str) and isinstance(have, str):
            if key in _MAX_FIELDS:
                into[key] = max(have, value)
            elif key in _MIN_FIELDS:
                into[key] = min(have, value)
        elif isinstance(value, list) and isinstance(have, list):
            into[key] = have + [v for v in value if v not in have]


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    return value


def _ip_order(ip: str) -> tuple[int, bytes, str]:
    """IPv4 before IPv6, numerically (the inventory's order of peers)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (9, b"", ip)
    return (address.version, address.packed, ip)


def merge_asset(assets: dict[str, dict[str, Any]], doc: dict[str, Any]) -> None:
    """Fold one worker's asset document into the one per host (IP)."""
    asset = doc["otsentry"]["asset"]
    key = asset["ip"]
    have = assets.get(key)
    if have is None:
        assets[key] = doc
        return
    a = have["otsentry"]["asset"]
    a["packets"] += asset["packets"]
    a["bytes"] += asset["bytes"]
    a["first_seen"] = min(a["first_seen"], asset["first_seen"])
    later = asset["last_seen"] > a["last_seen"]
    if later:
        a["last_seen"] = asset["last_seen"]
        have["@timestamp"] = doc["@timestamp"]
    for field in ("roles", "protocols", "client_protocols"):
        a[field] = sorted(set(a[field]) | set(asset[field]))
    # the earliest evidence per role, in role order (as one process writes it)
    earliest: dict[str, dict[str, Any]] = {}
    for item in [*a["role_evidence"], *asset["role_evidence"]]:
        have_item = earliest.get(item["role"])
        if have_item is None or item.get("first_seen", "") < have_item.get("first_seen", ""):
            earliest[item["role"]] = item
    a["role_evidence"] = [earliest[role] for role in sorted(earliest)]
    services = {(s["transport"], s["port"], s["protocol"] or ""): s for s in a["services"]}
    for item in asset["services"]:
        services.setdefault((item["transport"], item["port"], item["protocol"] or ""), item)
    a["services"] = [services[key] for key in sorted(services)]
    peers = sorted(set(a["peers"]["ip"]) | set(asset["peers"]["ip"]), key=_ip_order)
    a["peers"] = {
        "count": max(len(peers), a["peers"]["count"], asset["peers"]["count"]),
        "ip": peers[:MAX_LISTED_PEERS],
    }
    for protocol, facts in asset.get("identity", {}).items():
        have_facts = a.setdefault("identity", {}).setdefault(protocol, {})
        for name, value in facts.items():
            old = have_facts.get(name)
            if isinstance(value, list) and isinstance(old, list):
                # what accumulates (security modes used, …): every value either worker saw
                more = [v for v in value if v not in old]
                have_facts[name] = old + more[: max(0, _MAX_LISTED - len(old))]
            elif old is None or later:
                # a fact told twice: the host's more recent traffic has the last word
                have_facts[name] = value
    for field in ("mac", "vendor", "vlan"):
        if a.get(field) is None and asset.get(field) is not None:
            a[field] = asset[field]
    device = device_fields(a.get("identity", {}), a.get("vendor"))
    if device:
        have["device"] = device
    else:
        have.pop("device", None)
