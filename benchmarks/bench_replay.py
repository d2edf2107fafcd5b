"""otsentry against tshark, scapy, dpkt (and pyshark) on one large capture, in one run.

    python benchmarks/bench_replay.py [--file FILE | --packets N --source FILE ...]
                                      [--json OUT] [--with-pyshark] [--skip TOOL ...]

Without ``--file`` the capture is built first by ``make_capture.py`` (from ``pcaps/*.pcap`` unless
``--source`` names others). Every tool runs as its own child process; see README.md for the
columns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import make_capture
from runner import Measurement, RunError, measure, pin_prefix, worker

from otsentry.capture import CaptureError

TSHARK_FIELDS = ("frame.number", "mbtcp.trans_id", "s7comm.header.rosctr", "opcua.transport.type")
TOOLS = (
    "tshark",
    "replay",
    "replay-baseline",
    "replay-workers",
    "replay-workers-baseline",
    "replay-no-events",
    "dissect-only",
    "dissect-workers",
    "flows",
    "decode",
    "read",
    "dpkt",
    "scapy",
    "pyshark",
)
PROBE_PACKETS = 20_000


@dataclass(slots=True)
class Row:
    """One tool's figures, for the whole capture (extrapolated when ``measured`` is smaller)."""

    tool: str
    packets: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    measured: int
    loop_pps: float | None = None
    pinned: bool = False
    command: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pps(self) -> float:
        """Packets per second of wall time, process start to exit."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def extrapolated(self) -> bool:
        return self.measured < self.packets


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python and tool versions."""
    model = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if found:
            model = found.group(1).strip()
    except OSError:
        pass
    tshark = "not installed"
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=False)
        tshark = out.stdout.splitlines()[0].rstrip(".") if out.stdout else "unknown"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "tshark": tshark,
        "otsentry": _version("otsentry"),
        "scapy": _version("scapy"),
        "dpkt": _version("dpkt"),
        "pyshark": _version("pyshark"),
        "platform": platform.platform(),
    }


def _otsentry_argv() -> list[str]:
    script = Path(sys.executable).with_name("otsentry")
    if script.exists():
        return [str(script)]
    found = shutil.which("otsentry")
    return [found] if found else [sys.executable, "-m", "otsentry"]


def _row(tool: str, run: Measurement, packets: int, pinned: bool) -> Row:
    return Row(
        tool=tool,
        packets=packets,
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        peak_rss_mb=run.peak_rss_mb,
        measured=packets,
        pinned=pinned,
        command=run.argv,
    )


def best_of(repeat: int, bench: Callable[[], Row]) -> Row:
    """The fastest of ``repeat`` runs (the others were slowed by something else)."""
    return min((bench() for _ in range(max(repeat, 1))), key=lambda row: row.seconds)


def bench_tshark(file: Path, total: int) -> Row:
    argv = ["tshark", "-r", str(file), "-T", "fields"]
    for name in TSHARK_FIELDS:
        argv += ["-e", name]
    return _row("tshark -T fields", measure(argv, stdout=Path(os.devnull)), total, False)


#: config of the rows that leave parts of the pipeline out
_NO_EVENTS = "outputs:\n  events: false\n"
_DISSECT_ONLY = (
    "outputs:\n  events: false\n  alerts: false\n  assets: false\n"
    "detection:\n  builtin_rules: false\nalerts:\n  evidence:\n    enabled: false\n"
)


def bench_replay(
    file: Path,
    pin: bool,
    *,
    name: str = "otsentry replay",
    config: str | None = None,
    baseline: Path | None = None,
    workers: int = 1,
) -> Row:
    """``otsentry replay`` as users run it (every protocol event written to ``events.ndjson``),
    or with ``config`` leaving parts out, a ``baseline`` loaded, or ``workers`` processes (those
    rows use every core: never pinned)."""
    pin = pin and workers == 1
    with tempfile.TemporaryDirectory(prefix="otsentry-bench-") as out:
        argv = [*pin_prefix(pin), *_otsentry_argv(), "replay", str(file), "--out", out, "--quiet"]
        if config is not None:
            path = Path(out, "otsentry.yaml")
            path.write_text(config)
            argv += ["--config", str(path)]
        if baseline is not None:
            argv += ["--baseline", str(baseline)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        run = measure(argv, stdout=Path(os.devnull), tree=workers > 1)
        stats = json.loads(Path(out, "stats.json").read_text())
    row = _row(name, run, stats["packets"], bool(pin_prefix(pin)))
    row.loop_pps = stats.get("packets_per_second")
    row.extra = {
        "flows": stats["flows"],
        "flows_peak": stats["flows_peak"],
        "assets": stats["assets"],
        "pdus": sum(stats["pdus"].values()),
        "events": sum(stats["events"].values()),
        "alerts": sum(stats.get("alerts", {}).values()),
    }
    if workers > 1:  # the processes' memory together (PSS, sampled), not the largest one's peak
        row.peak_rss_mb = run.tree_rss_mb
        row.extra["largest_process_peak_rss_mb"] = run.peak_rss_mb
    return row


def learned_baseline(file: Path) -> Path:
    """The baseline learned from ``file`` itself (``otsentry baseline learn``), built once into
    ``benchmarks/data/<name>.baseline``: the replay then checks the capture against its own
    plant's baseline."""
    out = make_capture.DATA_DIR / (file.stem + ".baseline")
    if not out.is_dir() or file.stat().st_mtime > out.stat().st_mtime:
        print(f"learning {out} ...", file=sys.stderr, flush=True)
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [*_otsentry_argv(), "baseline", "learn", str(file), "--out", str(out)]
            + ["--min-events", "1", "--min-seconds", "0"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


_WORKER_NAMES = {
    "flows": "otsentry read+decode+flows+reassembly",
    "decode": "otsentry read+decode",
    "read": "otsentry read",
    "dpkt": "dpkt Reader+Ethernet",
    "scapy": "scapy PcapReader (Ether)",
    "pyshark": "pyshark FileCapture",
}


def bench_worker(mode: str, file: Path, total: int, *, pin: bool, limit: int | None = None) -> Row:
    """A ``workers.py`` mode over the file, or its first ``limit`` packets, extrapolated."""
    run, report = worker(mode, file, limit=limit, pin=pin)
    measured = report["packets"]
    loop = report["seconds"]
    rate = measured / loop if loop > 0 else 0.0
    row = _row(_WORKER_NAMES[mode], run, total, bool(pin_prefix(pin)))
    row.measured = measured
    row.loop_pps = rate
    row.extra = {k: v for k, v in report.items() if k not in ("packets", "seconds")}
    if measured < total and rate > 0:
        startup = max(run.seconds - loop, 0.0)
        row.seconds = startup + total / rate
        row.cpu_seconds = run.cpu_seconds * row.seconds / run.seconds
    return row


def bench_slow(mode: str, file: Path, total: int, budget: float, repeat: int = 1) -> Row:
    """Probe the tool's rate; run it on the whole file (``repeat`` times) if that fits ``budget``
    seconds, else once on a prefix that takes about half of it, extrapolated to the file."""
    probe = bench_worker(mode, file, total, pin=False, limit=min(PROBE_PACKETS, total))
    rate = probe.loop_pps or 1.0
    if probe.measured >= total:
        return probe
    if total / rate <= budget:
        return best_of(repeat, lambda: bench_worker(mode, file, total, pin=False))
    limit = max(PROBE_PACKETS, int(rate * budget / 2) // 10_000 * 10_000)
    return bench_worker(mode, file, total, pin=False, limit=limit)


def bench_pyshark(file: Path, total: int, packets: int) -> Row:
    with tempfile.TemporaryDirectory(prefix="otsentry-bench-") as tmp:
        piece = Path(tmp, "slice.pcap")
        make_capture.slice_capture(file, piece, packets)
        return bench_worker("pyshark", piece, total, pin=False)


def _fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render(rows: Sequence[Row], machine: dict[str, Any], capture: dict[str, Any]) -> str:
    """The report: machine, capture and the table."""
    lines = [
        f"machine : {machine['cpu']}, {machine['cores']} cores, {machine['python']}",
        f"tools   : {machine['tshark']}; otsentry {machine['otsentry']}, "
        f"scapy {machine['scapy']}, dpkt {machine['dpkt']}, pyshark {machine['pyshark']}",
        f"capture : {capture['file']} ({capture['packets']:,} packets, "
        f"{capture['bytes'] / 1e6:,.1f} MB)",
    ]
    if capture.get("sources"):
        lines.append("sources : " + ", ".join(capture["sources"]))
    base = next((r for r in rows if r.tool.startswith("tshark")), None)
    header = (
        "tool",
        "packets",
        "seconds",
        "packets/s",
        "loop pkt/s",
        "CPU s",
        "peak RSS MB",
        "vs tshark",
    )
    table = []
    notes = []
    for row in rows:
        mark = ""
        if row.extrapolated:
            notes.append(f"{row.tool}: {row.measured:,} packets measured, extrapolated")
            mark = "*"
        table.append(
            (
                row.tool + (" [core 0]" if row.pinned else "") + mark,
                f"{row.packets:,}",
                f"{row.seconds:,.2f}",
                f"{row.pps:,.0f}",
                _fmt_rate(row.loop_pps),
                f"{row.cpu_seconds:,.2f}",
                f"{row.peak_rss_mb:,.1f}",
                f"{row.pps / base.pps:.2f}x" if base and base.pps else "-",
            )
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=True)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines += ["", fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in table]
    if notes:
        lines += [""] + [f"* {note}" for note in notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, help="benchmark this capture (classic pcap)")
    parser.add_argument(
        "--packets", type=int, default=make_capture.DEFAULT_PACKETS, help="packets to build"
    )
    parser.add_argument(
        "--source", type=Path, nargs="+", metavar="FILE", help="source captures [pcaps/*.pcap]"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also save the results here")
    parser.add_argument("--with-pyshark", action="store_true", help="also run pyshark (slow)")
    parser.add_argument(
        "--pyshark-packets", type=int, default=10_000, help="pyshark's slice [10000]"
    )
    parser.add_argument(
        "--budget", type=float, default=120.0, help="seconds before scapy/dpkt go on a subset"
    )
    parser.add_argument("--skip", nargs="+", choices=TOOLS, default=[], metavar="TOOL")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per tool, the fastest kept (not scapy/pyshark)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin otsentry to core 0")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="processes of the --workers rows"
    )
    args = parser.parse_args(argv)

    sources: list[str] = []
    if args.file is None:
        paths = args.source or make_capture.default_sources()
        if not paths:
            parser.error("no pcaps/*.pcap yet: name source captures with --source, or --file")
        try:
            summary = make_capture.build(
                paths, args.packets, make_capture.default_out(args.packets)
            )
        except (CaptureError, ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"built {summary.path} in {summary.seconds:.1f} s", file=sys.stderr)
        file, sources = summary.path, [str(p) for p in paths]
    else:
        file = args.file
    total = make_capture.count_packets(file)
    pin = not args.no_pin
    skip = set(args.skip)
    if not args.with_pyshark:
        skip.add("pyshark")
    if shutil.which("tshark") is None:
        skip.add("tshark")

    rows: list[Row] = []
    rep = args.repeat
    steps: dict[str, Callable[[], Row]] = {
        "tshark": lambda: best_of(rep, lambda: bench_tshark(file, total)),
        "replay": lambda: best_of(rep, lambda: bench_replay(file, pin)),
        "replay-baseline": lambda: best_of(
            rep,
            lambda: bench_replay(
                file, pin, name="otsentry replay --baseline", baseline=learned_baseline(file)
            ),
        ),
        "replay-workers": lambda: best_of(
            rep,
            lambda: bench_replay(
                file, pin, name=f"otsentry replay --workers {args.workers}", workers=args.workers
            ),
        ),
        "replay-workers-baseline": lambda: best_of(
            rep,
            lambda: bench_replay(
                file,
                pin,
                name=f"otsentry replay --workers {args.workers} --baseline",
                workers=args.workers,
                baseline=learned_baseline(file),
            ),
        ),
        "replay-no-events": lambda: best_of(
            rep,
            lambda: bench_replay(
                file, pin, name="otsentry replay (events not written)", config=_NO_EVENTS
            ),
        ),
        "dissect-only": lambda: best_of(
            rep,
            lambda: bench_replay(
                file,
                pin,
                name="otsentry replay (dissection only: no rules, no outputs)",
                config=_DISSECT_ONLY,
            ),
        ),
        "dissect-workers": lambda: best_of(
            rep,
            lambda: bench_replay(
                file,
                pin,
                name=f"otsentry replay --workers {args.workers} (dissection only)",
                config=_DISSECT_ONLY,
                workers=args.workers,
            ),
        ),
        "flows": lambda: best_of(rep, lambda: bench_worker("flows", file, total, pin=pin)),
        "decode": lambda: best_of(rep, lambda: bench_worker("decode", file, total, pin=pin)),
        "read": lambda: best_of(rep, lambda: bench_worker("read", file, total, pin=pin)),
        "dpkt": lambda: bench_slow("dpkt", file, total, args.budget, rep),
        "scapy": lambda: bench_slow("scapy", file, total, args.budget),
        "pyshark": lambda: bench_pyshark(file, total, args.pyshark_packets),
    }
    try:
        for tool in TOOLS:
            if tool not in skip:
                print(f"running {tool} ...", file=sys.stderr, flush=True)
                rows.append(steps[tool]())
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    machine = machine_info()
    capture = {
        "file": str(file),
        "packets": total,
        "bytes": file.stat().st_size,
        "sources": sources,
    }
    print(render(rows, machine, capture))
    if args.json is not None:
        results = [
            {**asdict(r), "packets_per_second": r.pps, "extrapolated": r.extrapolated} for r in rows
        ]
        doc = {"machine": machine, "capture": capture, "results": results}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
