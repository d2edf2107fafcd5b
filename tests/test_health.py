"""The health dashboard and ``otsentry status``, from the stats.json a real replay writes.

The replay (a lab attack capture, the example baseline, an in-memory OpenSearch-compatible
cluster) gives every section a replay has; the live-only sections (interfaces, kernel drops,
the sensor's own state) are added by hand as the contract in ``otsentry/health.py`` describes.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType
from rich.style import Style

from otsentry.health import render, summary_lines
from tests.conftest import LAB_PCAPS, ROOT

CAPTURE = LAB_PCAPS / "modbus_attacks.pcap"
BASELINE = ROOT / "baselines"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, osmem_server: Any) -> dict[str, Any]:
    """The stats.json of ``otsentry replay`` with a baseline and a cluster output."""
    out = tmp_path_factory.mktemp("replay")
    clone = osmem_server.clone()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "otsentry", "replay", str(CAPTURE), "--quiet"]
            + ["--baseline", str(BASELINE), "--opensearch", clone.url, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        clone.close()
    assert proc.returncode == 0, proc.stderr
    stats: dict[str, Any] = json.loads((out / "stats.json").read_text())
    # what the tests below rely on holds in this capture
    assert stats["alerts_total"] > 0 and stats["detection"]["baseline"]["alerts"] > 0
    assert stats["outputs"]["opensearch"]["sent"] > 0
    return stats


def live(stats: dict[str, Any], drops: int = 12, state: str = "running") -> dict[str, Any]:
    """``stats`` with the sections only a live sensor writes."""
    s = copy.deepcopy(stats)
    s["capture"] = {
        "files": [],
        "errors": [],
        "interfaces": {
            "eth1": {"received": 120_000, "dropped": drops, "freeze_queue": 3 if drops else 0},
            "eth2": {"received": 3_456, "dropped": 0, "freeze_queue": 0},
        },
        "kernel_drops": drops,
        "filter": "tcp port 502 or vlan",
    }
    s["sensor"] = {
        "started": "2026-03-01T08:00:00Z",
        "updated": "2026-03-02T09:00:00Z",
        "uptime_seconds": 90_000.4,
        "state": state,
        "workers": 2,
        "pid": 4242,
        "stats_interval": 10,
        "queue_depth": 17,
        "queue_high_water": 2_048,
        "packets_per_second": 1_234.4,
        "bytes_per_second": 1_500_000,
        "reloads": 1,
        "last_reload": "2026-03-01T12:00:00.250000Z",
        "last_reload_error": None,
    }
    return s


def text_of(renderable: RenderableType, width: int = 160) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def segments(renderable: RenderableType) -> list[tuple[Style, str]]:
    """The rendered pieces of text with their styles."""
    console = Console(width=160, file=io.StringIO(), force_terminal=True, color_system="standard")
    return [(seg.style or Style(), seg.text) for seg in console.render(renderable) if seg.text]


def styles_of(renderable: RenderableType, needle: str) -> list[Style]:
    """The styles of the rendered pieces whose text contains ``needle``."""
    return [style for style, text in segments(renderable) if needle in text]


def is_red(style: Style) -> bool:
    return style.color is not None and style.color.name == "red"


def row(text: str, label: str) -> str:
    """The value after ``label`` on its dashboard line (up to the next wide gap)."""
    match = re.search(rf"(?m)(?:^ ?|\s{{2,}}){re.escape(label)}\s+(.+?)(?:\s{{3,}}|$)", text)
    assert match, f"no {label!r} row in:\n{text}"
    return match.group(1).rstrip()


# --- the dashboard ----------------------------------------------------------------------------


def test_replay_stats_render_every_section_they_hold(replayed: dict[str, Any]) -> None:
    text = text_of(render(replayed))
    assert "replay of 1 file" in text
    assert row(text, "packets") == f"{replayed['packets']:,}"
    assert row(text, "tracked") == f"{replayed['flows_active']:,} (peak {replayed['flows_peak']:,})"
    assert row(text, "reassembly gaps") == f"{replayed['tcp']['gaps']:,}"
    # one line per protocol: flows, PDUs, events
    modbus = re.search(r"(?m)^\s*modbus\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", text)
    assert modbus is not None
    assert modbus.groups() == (
        f"{replayed['flows_by_protocol']['modbus']:,}",
        f"{replayed['pdus']['modbus']:,}",
        f"{replayed['events']['modbus']:,}",
    )
    assert re.search(r"(?m)^\s*s7comm\s+0\s+0\s+0\b", text)
    assert "parse errors: none" in text
    # alerts: total, by severity, by engine (rules' emitted windows + the baseline's alerts)
    assert row(text, "total") == f"{replayed['alerts_total']:,}"
    sev = replayed["alerts"]
    assert row(text, "by severity") == (
        f"critical {sev['critical']}, high {sev['high']}, medium {sev['medium']}, low {sev['low']}"
    )
    detection = replayed["detection"]
    assert row(text, "by engine") == (
        f"rules {detection['emitted']}, baseline {detection['baseline']['alerts']}"
    )
    assert detection["emitted"] + detection["baseline"]["alerts"] == replayed["alerts_total"]
    # the baseline's segment and what it checked
    [(segment, info)] = detection["baseline"]["segments"].items()
    assert row(text, segment) == f"{info['version']} detecting"
    assert row(text, "events checked") == f"{detection['baseline']['events_checked']:,}"
    # the cluster output
    out = replayed["outputs"]["opensearch"]
    assert "Output opensearch" in text
    assert row(text, "state") == "up"
    assert row(text, "sent") == f"{out['sent']:,}"
    refused = row(text, "refused")
    assert refused == (f"{out['rejected']:,} !" if out["rejected"] else "0")
    # a replay has no sensor section and no interfaces
    assert "Sensor" not in text and "kernel drops" not in text and "queue" not in text


def test_live_sections_render(replayed: dict[str, Any]) -> None:
    text = text_of(render(live(replayed)))
    header = text.splitlines()[0]
    assert "sensor running" in header and "up 1d 01:00:00" in header
    assert "pid 4242" in header and "2 workers" in header
    assert row(text, "packets/s") == "1,234"
    assert row(text, "rate") == "12.0 Mbit/s"
    assert row(text, "eth1 received") == "120,000"
    assert row(text, "eth1 dropped") == "12 !"
    assert row(text, "eth1 ring full") == "3 times !"
    assert row(text, "eth2 dropped") == "0"
    assert "eth2 ring full" not in text
    assert row(text, "kernel drops") == "12 !"
    assert row(text, "filter") == "tcp port 502 or vlan"
    assert row(text, "queue") == "17 (high water 2,048)"
    assert row(text, "reloads") == "1 (last 2026-03-01T12:00:00Z)"
    assert "reload error" not in text
    assert "replay of" not in text


def test_kernel_drops_red_and_marked_only_above_zero(replayed: dict[str, Any]) -> None:
    dropping = render(live(replayed, drops=12))
    assert styles_of(dropping, "12 !") and all(map(is_red, styles_of(dropping, "12 !")))
    clean = live(replayed, drops=0)
    text = text_of(render(clean))
    assert row(text, "kernel drops") == "0"
    assert row(text, "eth1 dropped") == "0"
    zeros = [s for s, t in segments(render(clean)) if t.strip() == "0"]
    assert zeros and not any(map(is_red, zeros))


def test_a_failed_reload_is_shown_in_red(replayed: dict[str, Any]) -> None:
    stats = live(replayed)
    stats["sensor"]["last_reload_error"] = "rules/local.yaml: line 3: unknown field 'fc'"
    text = text_of(render(stats))
    assert row(text, "reload error") == "rules/local.yaml: line 3: unknown field 'fc' !"
    assert all(map(is_red, styles_of(render(stats), "unknown field")))


def test_an_output_that_is_down_shows_what_waits(replayed: dict[str, Any]) -> None:
    stats = live(replayed)
    out = stats["outputs"]["opensearch"]
    out.update(state="down", last_error="connection refused", spooled=763, resent=5)
    out["spool"].update(documents=763, bytes=1_024_677, dropped=2)
    text = text_of(render(stats))
    assert row(text, "state") == "down"
    assert row(text, "waiting") == "763 (1.0 MB) !"
    assert row(text, "dropped") == "2 !"
    assert row(text, "resent") == "5"
    assert row(text, "spooled") == "763"
    assert row(text, "last error") == "connection refused"
    rendered = render(stats)
    assert all(map(is_red, styles_of(rendered, "down")))
    assert all(map(is_red, styles_of(rendered, "763 (1.0 MB)")))


def test_baseline_states(replayed: dict[str, Any]) -> None:
    stats = copy.deepcopy(replayed)
    baseline = stats["detection"]["baseline"]
    baseline["segments"]["cell-4"] = {
        "version": "0123456789ab",
        "sufficient": False,
        "too_little_data": ["timing", "values"],
    }
    baseline["segments_without_baseline"] = ["10.0.1.0/24", "10.0.2.0/24"]
    text = text_of(render(stats))
    assert row(text, "cell-4") == "0123456789ab detecting; too little data: timing, values"
    assert row(text, "no baseline") == "2: 10.0.1.0/24, 10.0.2.0/24"
    stats["detection"]["baseline"] = None
    text = text_of(render(stats))
    assert row(text, "state") == "none loaded (no anomaly detection)"
    assert row(text, "by engine") == f"rules {stats['detection']['emitted']}, other " + str(
        stats["alerts_total"] - stats["detection"]["emitted"]
    )


def test_parse_errors_by_protocol(replayed: dict[str, Any]) -> None:
    stats = copy.deepcopy(replayed)
    stats["parse_errors"] = {
        "decode": {"tcp.truncated": 3, "tcp.bad_data_offset": 1, "ipv4.truncated": 2},
        "dissector_exceptions": 1,
        "dissector_no_progress": 0,
    }
    text = text_of(render(stats))
    assert "parse errors !: decode ipv4 2, tcp 4; dissector exceptions 1, no progress 0" in text


def test_any_section_may_be_missing(replayed: dict[str, Any]) -> None:
    full = live(replayed)
    for key in full:
        partial = {k: v for k, v in full.items() if k != key}
        text_of(render(partial))
        summary_lines(partial)
    for stats in ({}, {"packets": 5}, {"sensor": {}, "capture": {"interfaces": {"eth0": {}}}}):
        text = text_of(render(stats))
        assert "otsentry" in text
        assert summary_lines(stats)
    assert row(text_of(render({"packets": 5})), "packets") == "5"


# --- plain lines ------------------------------------------------------------------------------


def fields(lines: list[str], section: str) -> dict[str, str]:
    """The key=value pairs of the line for ``section``."""
    words = len(section.split())
    for line in lines:
        parts = shlex.split(line)
        if " ".join(parts[:words]) == section and "=" not in parts[words - 1]:
            return dict(p.split("=", 1) for p in parts[words:])
    raise AssertionError(f"no {section!r} line in {lines}")


def test_summary_lines_for_logs(replayed: dict[str, Any]) -> None:
    stats = live(replayed)
    out = stats["outputs"]["opensearch"]
    out.update(state="down", last_error='refused: "x" = 1')
    lines = summary_lines(stats)
    assert all("\n" not in line for line in lines)
    assert fields(lines, "sensor") == {
        "state": "running",
        "uptime_seconds": "90000",
        "workers": "2",
        "queue": "17",
        "queue_high_water": "2048",
        "reloads": "1",
    }
    traffic = fields(lines, "traffic")
    assert traffic["packets"] == str(replayed["packets"])
    assert traffic["pps"] == "1234" and traffic["bps"] == "12000000"
    assert traffic["kernel_drops"] == "12"
    assert fields(lines, "interface eth1") == {
        "received": "120000",
        "dropped": "12",
        "freeze_queue": "3",
    }
    assert fields(lines, "protocols")["modbus_pdus"] == str(replayed["pdus"]["modbus"])
    alerts = fields(lines, "alerts")
    assert alerts["total"] == str(replayed["alerts_total"])
    assert alerts["rules"] == str(replayed["detection"]["emitted"])
    assert alerts["baseline"] == str(replayed["detection"]["baseline"]["alerts"])
    assert alerts["high"] == str(replayed["alerts"]["high"])
    [segment] = replayed["detection"]["baseline"]["segments"]
    assert fields(lines, f"baseline {segment}")["sufficient"] == "yes"
    output = fields(lines, "output opensearch")
    assert output["state"] == "down"
    assert output["sent"] == str(out["sent"])
    assert output["last_error"] == 'refused: "x" = 1'  # quoted, and shlex reads it back


def test_summary_lines_of_a_replay_have_no_sensor_line(replayed: dict[str, Any]) -> None:
    lines = summary_lines(replayed)
    assert not any(line.startswith(("sensor ", "interface ")) for line in lines)
    assert "pps" not in fields(lines, "traffic")
    assert fields(lines, "traffic")["kernel_drops"] == "0"


# --- otsentry status --------------------------------------------------------------------------


def _status_registered() -> bool:
    from otsentry.cli.app import app

    return any(c.name == "status" for c in app.registered_commands)


#: ``otsentry status`` (a typer app around the same function until the command is registered)
STATUS = (
    [sys.executable, "-m", "otsentry", "status"]
    if _status_registered()
    else [
        sys.executable,
        "-c",
        "import typer; from otsentry.cli.status import status; typer.run(status)",
    ]
)
ENV = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}


def status(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STATUS, *map(str, args)], capture_output=True, text=True, timeout=60, env=ENV
    )


def write_stats(out: Path, stats: dict[str, Any], age: float = 0.0) -> Path:
    path = out / "stats.json"
    tmp = out / ".stats.json.tmp"
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def test_status_of_a_fresh_live_sensor(replayed: dict[str, Any], tmp_path: Path) -> None:
    write_stats(tmp_path, live(replayed), age=2)
    proc = status("--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert re.fullmatch(
        rf"{re.escape(str(tmp_path))}/stats\.json: written [23] s ago \(every 10 s\)", first
    )
    assert "may be down" not in proc.stdout + proc.stderr
    assert row(proc.stdout, "kernel drops") == "12 !"
    assert row(proc.stdout, "sent") == f"{replayed['outputs']['opensearch']['sent']:,}"


def test_status_warns_when_the_file_is_older_than_three_intervals(
    replayed: dict[str, Any], tmp_path: Path
) -> None:
    write_stats(tmp_path, live(replayed), age=31)
    proc = status("--out", tmp_path)
    assert proc.returncode == 0
    assert re.search(  # 31 s, or a second more when the machine is slow to start the command
        r"warning: stats\.json is 3[12] s old, more than 3 stats intervals of 10 s: "
        r"the sensor may be down",
        proc.stdout,
    )
    # a sensor that stopped cleanly wrote its last stats: old, but no warning
    write_stats(tmp_path, live(replayed, state="stopped"), age=3 * 3600)
    proc = status("--out", tmp_path)
    assert proc.returncode == 0
    assert "written 3 h ago (the sensor has stopped)" in proc.stdout
    assert "may be down" not in proc.stdout


def test_status_of_a_replay(replayed: dict[str, Any], tmp_path: Path) -> None:
    write_stats(tmp_path, replayed, age=86400 * 3)
    proc = status("--out", tmp_path)
    assert proc.returncode == 0
    assert "written 3 days ago by a replay" in proc.stdout
    assert "replay of 1 file" in proc.stdout
    assert "may be down" not in proc.stdout


def test_status_json(replayed: dict[str, Any], tmp_path: Path) -> None:
    stats = live(replayed)
    path = write_stats(tmp_path, stats, age=45)
    proc = status("--out", tmp_path, "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["path"] == str(path) and doc["stale"] is True and doc["stats"] == stats
    assert 44 <= doc["age_seconds"] <= 50
    assert "the sensor may be down" in proc.stderr
    write_stats(tmp_path, stats)
    doc = json.loads(status("--out", tmp_path, "--json").stdout)
    assert doc["stale"] is False and doc["age_seconds"] < 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "stats.json: no such file (no sensor or replay has written to"),
        ('{"packets": 1', "stats.json: cannot read it: "),
        ("[1, 2]", "stats.json: not a stats object (a JSON list)"),
    ],
)
def test_status_without_readable_stats_exits_1(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "stats.json").write_text(content)
    proc = status("--out", tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"error: {tmp_path}/") and message in line


def test_status_needs_the_directory() -> None:
    proc = status()
    assert proc.returncode == 2 and "--out" in proc.stderr


def lines_until(proc: subprocess.Popen[str], wanted: Any, deadline: float) -> Iterator[str]:
    """Lines of ``proc``'s stdout until one satisfies ``wanted`` (or the deadline passes)."""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        yield line
        if wanted(line):
            return
    raise AssertionError("the wanted line never came")


def test_status_watch_json_follows_the_file(replayed: dict[str, Any], tmp_path: Path) -> None:
    stats = live(replayed)
    write_stats(tmp_path, stats)
    proc = subprocess.Popen(
        [*STATUS, "--out", str(tmp_path), "--json", "--watch", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        first = next(lines_until(proc, lambda line: True, deadline))
        assert json.loads(first)["stats"]["packets"] == stats["packets"]
        stats["packets"] += 1000
        write_stats(tmp_path, stats)
        list(
            lines_until(
                proc,
                lambda line: json.loads(line).get("stats", {}).get("packets") == stats["packets"],
                deadline,
            )
        )
        (tmp_path / "stats.json").unlink()
        *_, gone = lines_until(proc, lambda line: "error" in json.loads(line), deadline)
        assert "no such file" in json.loads(gone)["error"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_status_watch_redraws_until_interrupted(replayed: dict[str, Any], tmp_path: Path) -> None:
    write_stats(tmp_path, live(replayed))
    proc = subprocess.Popen(
        [*STATUS, "--out", str(tmp_path), "--watch", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 20
        headers = 0

        def header(line: str) -> bool:
            nonlocal headers
            headers += line.startswith("otsentry ")
            return headers == 2

        list(lines_until(proc, header, deadline))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
