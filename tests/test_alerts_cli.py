"""``otsentry alerts``: the table and JSON lines of a replay's alerts, filters, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAB_PCAPS
from tests.conftest import run_otsentry as otsentry

ALERT_RULES = Path(__file__).parent / "detect" / "alert_rules"
CAPTURES = ("modbus_attacks.pcap", "s7comm_engineering.pcap", "opcua_attacks.pcap")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One replay of the three attack captures with the test rules."""
    out = tmp_path_factory.mktemp("alerts") / "out"
    res = otsentry(
        "replay",
        *(LAB_PCAPS / c for c in CAPTURES),
        "--out",
        out,
        "-q",
        "--no-builtin-rules",
        "--rules",
        ALERT_RULES,
    )
    assert res.returncode == 0, res.stderr
    return out


def docs(out: Path) -> list[dict[str, Any]]:
    lines = (out / "alerts.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines]


def json_lines(*args: str | Path) -> list[dict[str, Any]]:
    res = otsentry("alerts", "--json", *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def test_table_lists_every_alert_oldest_first(out: Path) -> None:
    res = otsentry("alerts", "--out", out)
    assert res.returncode == 0, res.stderr
    alerts = sorted(docs(out), key=lambda d: str(d["@timestamp"]))
    assert len(alerts) == 7
    text = res.stdout
    assert "otsentry alerts (7)" in text
    positions = [text.index(a["@timestamp"].replace("T", " ")[:23]) for a in alerts]
    assert positions == sorted(positions)
    for alert in alerts:
        row = next(
            line for line in text.splitlines() if alert["@timestamp"].replace("T", " ")[:23] in line
        )
        assert alert["rule"]["id"] in row
        assert f"{alert['source']['ip']}:{alert['source']['port']} →" in row
        assert f" {alert['otsentry']['alert']['count']} │" in row
        assert Path(alert["otsentry"]["evidence"]["pcap"]).name[:30] in row
    assert "T0858, T0816" in text  # the S7 stop's techniques
    assert "critical" in text and "high" in text and "medium" in text and "low" in text


def test_json_lines_are_the_documents_sorted_by_time(out: Path) -> None:
    got = json_lines("--out", out)
    assert got == sorted(docs(out), key=lambda d: (d["@timestamp"], d["event"]["id"]))
    assert [d["@timestamp"] for d in got] == sorted(d["@timestamp"] for d in got)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("low", 7),
        ("medium", 6),
        ("high", 2),
        ("critical", 1),
    ],
)
def test_min_severity(out: Path, severity: str, expected: int) -> None:
    floor = {"low": 21, "medium": 47, "high": 73, "critical": 99}[severity]
    got = json_lines("--out", out, "--min-severity", severity)
    assert len(got) == expected
    assert got == [d for d in json_lines("--out", out) if d["event"]["severity"] >= floor]


def test_rule_filter(out: Path) -> None:
    got = json_lines("--out", out, "--rule", "OTS-TEST-S7-STOP", "--rule", "OTS-TEST-OPCUA-WRITE")
    assert sorted(d["rule"]["id"] for d in got) == [
        "OTS-TEST-OPCUA-WRITE",
        "OTS-TEST-OPCUA-WRITE",
        "OTS-TEST-S7-STOP",
    ]
    both = json_lines("--out", out, "--rule", "OTS-TEST-OPCUA-WRITE", "--min-severity", "high")
    assert both == []
    res = otsentry("alerts", "--out", out, "--rule", "OTS-NOPE")
    assert res.returncode == 0 and "otsentry alerts (0)" in res.stdout


def test_default_directory_and_config(out: Path, tmp_path: Path) -> None:
    shutil.copytree(out, tmp_path / "otsentry-out")
    res = otsentry("alerts", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 7
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text(f"outputs: {{dir: {out}}}\n")
    assert len(json_lines("--config", cfg)) == 7


def test_missing_file_exits_2(tmp_path: Path) -> None:
    res = otsentry("alerts", "--out", tmp_path)
    assert res.returncode == 2
    assert f"{tmp_path}/alerts.ndjson: no such file" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_usage_errors_exit_2(out: Path, tmp_path: Path) -> None:
    res = otsentry("alerts", "--out", out, "--min-severity", "severe")
    assert res.returncode == 2
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("outputs: {dri: x}\n")
    res = otsentry("alerts", "--config", cfg)
    assert res.returncode == 2 and "bad.yaml:1: outputs: unknown key 'dri'" in res.stderr


def test_broken_line_exits_1_and_a_cut_last_line_is_left_out(out: Path, tmp_path: Path) -> None:
    lines = (out / "alerts.ndjson").read_text().splitlines(keepends=True)
    (tmp_path / "alerts.ndjson").write_text("".join(lines) + lines[0][:40])  # a writer mid-line
    assert len(json_lines("--out", tmp_path)) == 7
    (tmp_path / "alerts.ndjson").write_text(lines[0] + "{oops\n" + lines[1])
    res = otsentry("alerts", "--out", tmp_path)
    assert res.returncode == 1
    assert f"{tmp_path}/alerts.ndjson:2: not a JSON document" in res.stderr


@pytest.mark.parametrize("mode", [[], ["--json"]])
def test_quiet_on_a_closed_pipe(out: Path, mode: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "otsentry", "alerts", "--out", str(out), *mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == ""
