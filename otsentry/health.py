"""The sensor's health, read from its stats (the content of ``stats.json``).

``render`` builds a compact rich dashboard (the live view and ``otsentry status``);
``summary_lines`` gives the same facts as plain ``section key=value`` lines for logs. Both take
whatever a stats snapshot holds: a replay has no ``sensor`` section and no interfaces, a run without
a baseline has no segments, and a missing section is left out rather than shown as zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["render", "summary_lines"]

SEVERITIES = ("critical", "high", "medium", "low")
_SEVERITY_STYLES = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
_STATE_STYLES = {
    "up": "green",
    "running": "green",
    "draining": "yellow",
    "stopped": "yellow",
    "down": "bold red",
}
#: values longer than this (an error message) fold onto more lines
VALUE_WIDTH = 72
#: how a count that needs attention is marked, besides its colour (logs and NO_COLOR terminals)
MARK = "!"


# --- reading --------------------------------------------------------------------------------


def _get(stats: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """``stats[k1][k2]…``, or ``default`` where a level is missing or not a mapping."""
    value: Any = stats
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _total(counts: Any) -> int:
    return sum(_int(v) for v in counts.values()) if isinstance(counts, Mapping) else 0


def _kernel_drops(stats: Mapping[str, Any]) -> int:
    """The capture's kernel drops: its total, else the interfaces' sum."""
    total = _get(stats, "capture", "kernel_drops")
    if total is not None:
        return _int(total)
    interfaces = _get(stats, "capture", "interfaces", default={})
    return sum(_int(_get(i, "dropped")) for i in interfaces.values())


def _alerts_by_engine(stats: Mapping[str, Any]) -> dict[str, int]:
    """Alerts per engine: the rule engine's emitted windows, the baseline detector's alerts,
    and whatever else raised the total (``other``)."""
    total = _int(stats.get("alerts_total"))
    engines = {"rules": _int(_get(stats, "detection", "emitted"))}
    if _get(stats, "detection", "baseline") is not None:
        engines["baseline"] = _int(_get(stats, "detection", "baseline", "alerts"))
    other = total - sum(engines.values())
    if other > 0:
        engines["other"] = other
    return engines


def _decode_errors(stats: Mapping[str, Any]) -> dict[str, int]:
    """Decode errors per layer protocol (``tcp.truncated`` counts for ``tcp``)."""
    by_protocol: Counter[str] = Counter()
    for kind, count in _get(stats, "parse_errors", "decode", default={}).items():
        by_protocol[str(kind).partition(".")[0]] += _int(count)
    return dict(by_protocol)


def _protocols(stats: Mapping[str, Any]) -> list[str]:
    names: dict[str, None] = {}
    for key in ("pdus", "flows_by_protocol", "events"):
        names.update(dict.fromkeys(_get(stats, key, default={})))
    return list(names)


# --- formatting -----------------------------------------------------------------------------


def _n(value: Any) -> str:
    return f"{_int(value):,}"


def _bytes(value: Any) -> str:
    size = float(_int(value))
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _bits_per_second(bytes_per_second: Any) -> str:
    bits = float(bytes_per_second or 0) * 8
    for unit in ("bit/s", "kbit/s", "Mbit/s", "Gbit/s"):
        if bits < 1000 or unit == "Gbit/s":
            return f"{bits:,.1f} {unit}" if unit != "bit/s" else f"{bits:,.0f} {unit}"
        bits /= 1000
    raise AssertionError("unreachable")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _time(stamp: Any) -> str:
    """An ISO time to the second: ``2026-03-01T08:00:00.123456Z`` → ``2026-03-01T08:00:00Z``."""
    text = str(stamp)
    head, dot, rest = text.partition(".")
    return head + ("Z" if dot and rest.endswith("Z") else "") if len(head) == 19 else text


def _duration(seconds: Any) -> str:
    """``3d 04:05:06``, ``04:05:06``."""
    total = int(float(seconds or 0))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def _attention(count: int, text: str | None = None) -> Text:
    """A count in red with the mark when above zero, plain otherwise."""
    shown = text if text is not None else f"{count:,}"
    return Text(f"{shown} {MARK}", style="bold red") if count > 0 else Text(shown)


def _state(state: Any) -> Text:
    name = str(state or "?")
    return Text(name, style=_STATE_STYLES.get(name, ""))


def _section(title: str) -> Table:
    """A two-column key/value table under a bold title."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        show_header=False,
        padding=(0, 1),
        expand=False,
    )
    table.add_column("what", style="dim", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=VALUE_WIDTH)
    return table


def _grid(tables: Iterable[RenderableType | None]) -> Group:
    """Sections side by side, two per row (each row sized on its own), a blank line between."""
    present = [t for t in tables if t is not None]
    rows: list[RenderableType] = []
    for i in range(0, len(present), 2):
        grid = Table.grid(padding=(0, 4, 0, 0))
        grid.add_column(vertical="top")
        grid.add_column(vertical="top")
        grid.add_row(*present[i : i + 2])
        rows += [Text(), grid]
    return Group(*rows)


# --- the dashboard --------------------------------------------------------------------------


def render(stats: Mapping[str, Any]) -> RenderableType:
    """The health dashboard of one stats snapshot."""
    return Group(
        _header(stats),
        _grid(
            (
                _traffic(stats),
                _capture(stats),
                _flows(stats),
                _alerts(stats),
                _protocol_table(stats),
                _baseline(stats),
                _sensor(stats),
                *_outputs(stats),
            )
        ),
    )


def _header(stats: Mapping[str, Any]) -> Text:
    text = Text(f"otsentry {stats.get('version', '?')}", style="bold")
    sensor = stats.get("sensor")
    if isinstance(sensor, Mapping):
        text.append("  sensor ")
        text.append_text(_state(sensor.get("state")))
        text.append(f"  up {_duration(sensor.get('uptime_seconds'))}")
        if sensor.get("pid") is not None:
            text.append(f"  pid {sensor['pid']}")
        if sensor.get("workers") is not None:
            text.append(f"  {_plural(_int(sensor['workers']), 'worker')}")
        if sensor.get("updated"):
            text.append(f"  updated {_time(sensor['updated'])}")
    elif isinstance(stats.get("capture"), Mapping):
        files = _get(stats, "capture", "files", default=[])
        seconds = float(stats.get("seconds") or 0)
        text.append(f"  replay of {_plural(len(files), 'file')} in {seconds:.2f} s")
        first, last = stats.get("first_packet"), stats.get("last_packet")
        if first and last:
            text.append(f"  packet time {_time(first)} → {_time(last)}")
    return text


def _traffic(stats: Mapping[str, Any]) -> Table:
    table = _section("Traffic")
    sensor = stats.get("sensor")
    live = isinstance(sensor, Mapping)
    pps = _get(stats, "sensor", "packets_per_second") if live else stats.get("packets_per_second")
    table.add_row("packets", _n(stats.get("packets")))
    table.add_row("bytes", _bytes(stats.get("bytes")))
    if pps is not None:
        table.add_row("packets/s", f"{float(pps):,.0f}" + ("" if live else " (processing)"))
    if live and _get(stats, "sensor", "bytes_per_second") is not None:
        table.add_row("rate", _bits_per_second(_get(stats, "sensor", "bytes_per_second")))
    not_ip = _total(stats.get("not_ip_or_transport"))
    if not_ip:
        table.add_row("not IP/TCP/UDP", _n(not_ip))
    if _get(stats, "capture", "filtered") is not None:
        table.add_row("filtered", _n(_get(stats, "capture", "filtered")))
    return table


def _capture(stats: Mapping[str, Any]) -> Table | None:
    capture = stats.get("capture")
    if not isinstance(capture, Mapping):
        return None
    table = _section("Capture")
    interfaces = capture.get("interfaces") or {}
    for name, counters in interfaces.items():
        label = escape(str(name))
        table.add_row(f"{label} received", _n(_get(counters, "received")))
        table.add_row(f"{label} dropped", _attention(_int(_get(counters, "dropped"))))
        freeze = _int(_get(counters, "freeze_queue"))  # times the kernel ring filled up
        if freeze:
            table.add_row(f"{label} ring full", _attention(freeze, f"{freeze:,} times"))
    if interfaces or "kernel_drops" in capture:
        table.add_row("kernel drops", _attention(_kernel_drops(stats)))
    if "filter" in capture:
        table.add_row("filter", escape(str(capture["filter"] or "none (all traffic)")))
    files = capture.get("files") or []
    if files and not interfaces:
        table.add_row("files", _n(len(files)))
    errors = capture.get("errors") or []
    if errors:
        table.add_row("errors", _attention(len(errors)))
        table.add_row("", escape(str(errors[-1])))
    return table


def _flows(stats: Mapping[str, Any]) -> Table:
    table = _section("Flows")
    tcp = stats.get("tcp") if isinstance(stats.get("tcp"), Mapping) else {}
    table.add_row(
        "tracked", f"{_n(stats.get('flows_active'))} (peak {_n(stats.get('flows_peak'))})"
    )
    table.add_row("seen", _n(stats.get("flows")))
    if tcp:
        gaps = _int(tcp.get("gaps"))
        gap_text = f"{gaps:,}" + (f" ({_bytes(tcp.get('gap_bytes'))})" if gaps else "")
        table.add_row("reassembly gaps", _attention(gaps, gap_text))
        table.add_row("midstream pickups", _n(tcp.get("midstream_pickups")))
        overflows = _int(tcp.get("overflows"))
        if overflows:
            table.add_row("buffer overflows", _attention(overflows))
    evicted = _int(_get(stats, "flows_ended", "evicted"))
    if evicted:
        table.add_row("evicted", _attention(evicted))
    return table


def _protocol_table(stats: Mapping[str, Any]) -> Group | None:
    """PDUs, flows and events per protocol, and the parse errors below."""
    if not _protocols(stats) and not isinstance(stats.get("parse_errors"), Mapping):
        return None
    table = Table(
        title="Protocols",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    for name in ("protocol", "flows", "PDUs", "events"):
        table.add_column(name, justify="left" if name == "protocol" else "right", no_wrap=True)
    for proto in _protocols(stats):
        table.add_row(
            escape(proto),
            _n(_get(stats, "flows_by_protocol", proto)),
            _n(_get(stats, "pdus", proto)),
            _n(_get(stats, "events", proto)),
        )
    decode = _decode_errors(stats)
    exceptions = _int(_get(stats, "parse_errors", "dissector_exceptions"))
    stalled = _int(_get(stats, "parse_errors", "dissector_no_progress"))
    total = sum(decode.values()) + exceptions + stalled
    if not total:
        return Group(table, Text("parse errors: none", style="dim"))
    errors = _attention(total, "parse errors")
    parts = ", ".join(f"{proto} {count:,}" for proto, count in sorted(decode.items()))
    errors.append(f": decode {parts or 0}; dissector exceptions {exceptions:,}")
    errors.append(f", no progress {stalled:,}")
    return Group(table, errors)


def _alerts(stats: Mapping[str, Any]) -> Table:
    table = _section("Alerts")
    table.add_row("total", _n(stats.get("alerts_total")))
    severities = Text()
    for i, sev in enumerate(SEVERITIES):
        count = _int(_get(stats, "alerts", sev))
        if i:
            severities.append(", ")
        severities.append(f"{sev} {count:,}", style=_SEVERITY_STYLES[sev] if count else "dim")
    table.add_row("by severity", severities)
    engines = _alerts_by_engine(stats)
    table.add_row("by engine", ", ".join(f"{name} {count:,}" for name, count in engines.items()))
    rules = _get(stats, "detection", "rules_loaded")
    if rules is not None:
        table.add_row("rules loaded", _n(rules))
    return table


def _baseline(stats: Mapping[str, Any]) -> Table | None:
    if not isinstance(stats.get("detection"), Mapping):
        return None
    table = _section("Baseline")
    baseline = _get(stats, "detection", "baseline")
    if not isinstance(baseline, Mapping):
        table.add_row("state", Text("none loaded (no anomaly detection)", style="dim"))
        return table
    for name, seg in (baseline.get("segments") or {}).items():
        version = escape(str(_get(seg, "version", default="?")))
        thin = _get(seg, "too_little_data", default=[])
        if _get(seg, "sufficient", default=False) and not thin:
            state = Text(f"{version} detecting", style="green")
        else:
            state = Text(f"{version} detecting; too little data: ", style="yellow")
            state.append(escape(", ".join(str(t) for t in thin) or "all"))
        table.add_row(escape(str(name)), state)
    missing = baseline.get("segments_without_baseline") or []
    if missing:
        shown = ", ".join(str(s) for s in missing[:4]) + (" …" if len(missing) > 4 else "")
        table.add_row("no baseline", Text(f"{len(missing)}: {escape(shown)}", style="yellow"))
    table.add_row("events checked", _n(baseline.get("events_checked")))
    table.add_row("deviations", _n(_total(baseline.get("deviations"))))
    return table


def _sensor(stats: Mapping[str, Any]) -> Table | None:
    sensor = stats.get("sensor")
    if not isinstance(sensor, Mapping):
        return None
    table = _section("Sensor")
    if "queue_depth" in sensor:
        table.add_row(
            "queue",
            f"{_n(sensor['queue_depth'])} (high water {_n(sensor.get('queue_high_water'))})",
        )
    if sensor.get("started"):
        table.add_row("started", escape(_time(sensor["started"])))
    if sensor.get("stats_interval") is not None:
        table.add_row("stats every", f"{float(sensor['stats_interval']):g} s")
    if "reloads" in sensor:
        last = sensor.get("last_reload")
        table.add_row(
            "reloads", f"{_n(sensor['reloads'])}" + (f" (last {_time(last)})" if last else "")
        )
    if sensor.get("last_reload_error"):
        table.add_row(
            "reload error", Text(f"{sensor['last_reload_error']} {MARK}", style="bold red")
        )
    return table


def _outputs(stats: Mapping[str, Any]) -> list[Table]:
    """One section per cluster output."""
    outputs = stats.get("outputs")
    if not isinstance(outputs, Mapping):
        return []
    tables = []
    for name, out in outputs.items():
        table = _section(f"Output {escape(str(name))}")
        if _get(out, "url"):
            table.add_row("url", escape(str(out["url"])))
        table.add_row("state", _state(_get(out, "state")))
        duplicates = _int(_get(out, "duplicates"))
        table.add_row(
            "sent",
            _n(_get(out, "sent")) + (f" (+{duplicates:,} already there)" if duplicates else ""),
        )
        table.add_row("refused", _attention(_int(_get(out, "rejected"))))
        table.add_row("resent", _n(_get(out, "resent")))
        table.add_row("spooled", _n(_get(out, "spooled")))
        waiting = _int(_get(out, "spool", "documents"))
        table.add_row(
            "waiting",
            _attention(waiting, f"{waiting:,} ({_bytes(_get(out, 'spool', 'bytes'))})")
            if waiting
            else Text("0"),
        )
        table.add_row("dropped", _attention(_int(_get(out, "spool", "dropped"))))
        if _get(out, "last_error"):
            table.add_row("last error", Text(str(out["last_error"]), style="red"))
        tables.append(table)
    return tables


# --- plain lines ----------------------------------------------------------------------------


def summary_lines(stats: Mapping[str, Any]) -> list[str]:
    """The dashboard's facts as ``section key=value …`` lines, for logs (journald, files)."""
    lines = []
    sensor = stats.get("sensor")
    if isinstance(sensor, Mapping):
        lines.append(
            _kv(
                "sensor",
                state=sensor.get("state"),
                uptime_seconds=round(float(sensor.get("uptime_seconds") or 0)),
                workers=sensor.get("workers"),
                queue=sensor.get("queue_depth"),
                queue_high_water=sensor.get("queue_high_water"),
                reloads=sensor.get("reloads"),
                reload_error=sensor.get("last_reload_error"),
            )
        )
    rate = _get(stats, "sensor", "packets_per_second")
    lines.append(
        _kv(
            "traffic",
            packets=_int(stats.get("packets")),
            bytes=_int(stats.get("bytes")),
            pps=round(float(rate)) if rate is not None else None,
            bps=(
                round(float(_get(stats, "sensor", "bytes_per_second")) * 8)
                if _get(stats, "sensor", "bytes_per_second") is not None
                else None
            ),
            kernel_drops=_kernel_drops(stats),
            filtered=_get(stats, "capture", "filtered"),
        )
    )
    for name, counters in (_get(stats, "capture", "interfaces", default={})).items():
        lines.append(
            _kv(
                f"interface {name}",
                received=_int(_get(counters, "received")),
                dropped=_int(_get(counters, "dropped")),
                freeze_queue=_get(counters, "freeze_queue"),
            )
        )
    tcp = _get(stats, "tcp", default={})
    lines.append(
        _kv(
            "flows",
            tracked=_int(stats.get("flows_active")),
            peak=_int(stats.get("flows_peak")),
            seen=_int(stats.get("flows")),
            gaps=_int(_get(tcp, "gaps")),
            midstream=_int(_get(tcp, "midstream_pickups")),
        )
    )
    pdus = {f"{p}_pdus": _int(_get(stats, "pdus", p)) for p in _get(stats, "pdus", default={})}
    decode = _decode_errors(stats)
    lines.append(
        _kv(
            "protocols",
            **pdus,
            decode_errors=sum(decode.values()),
            dissector_exceptions=_int(_get(stats, "parse_errors", "dissector_exceptions")),
            dissector_no_progress=_int(_get(stats, "parse_errors", "dissector_no_progress")),
        )
    )
    lines.append(
        _kv(
            "alerts",
            total=_int(stats.get("alerts_total")),
            **{sev: _int(_get(stats, "alerts", sev)) for sev in SEVERITIES},
            **_alerts_by_engine(stats),
        )
    )
    baseline = _get(stats, "detection", "baseline")
    if isinstance(baseline, Mapping):
        for name, seg in (baseline.get("segments") or {}).items():
            thin = _get(seg, "too_little_data", default=[])
            lines.append(
                _kv(
                    f"baseline {name}",
                    version=_get(seg, "version"),
                    sufficient=bool(_get(seg, "sufficient")) and not thin,
                    too_little_data=",".join(str(t) for t in thin) or None,
                )
            )
        lines.append(
            _kv(
                "baseline",
                events_checked=_int(baseline.get("events_checked")),
                deviations=_total(baseline.get("deviations")),
                segments_without_baseline=len(baseline.get("segments_without_baseline") or []),
            )
        )
    for name, out in (_get(stats, "outputs", default={})).items():
        lines.append(
            _kv(
                f"output {name}",
                state=_get(out, "state"),
                sent=_int(_get(out, "sent")),
                duplicates=_int(_get(out, "duplicates")),
                rejected=_int(_get(out, "rejected")),
                resent=_int(_get(out, "resent")),
                spooled=_int(_get(out, "spooled")),
                waiting=_int(_get(out, "spool", "documents")),
                dropped=_int(_get(out, "spool", "dropped")),
                last_error=_get(out, "last_error"),
            )
        )
    return lines


def _kv(section: str, **values: Any) -> str:
    """``section k=v …``; values that are None are left out, text with spaces is quoted."""
    parts = [section]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, float):
            text = f"{value:g}"
        else:
            text = str(value)
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
