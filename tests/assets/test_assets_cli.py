"""``otsentry assets`` as a user runs it (a subprocess: real exit codes and streams)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.assets.replay import replay
from tests.conftest import LAB_PCAPS


def otsentry(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otsentry", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250", "PYTHONPATH": ":".join(sys.path)},
    )


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run over the S7 engineering and Modbus attack captures."""
    out = tmp_path_factory.mktemp("run")
    s7 = tmp_path_factory.mktemp("s7")
    replay(LAB_PCAPS / "s7comm_engineering.pcap", s7)
    replay(LAB_PCAPS / "modbus_attacks.pcap", out)
    # one file holding both runs, the second under a segment of its own
    lines = (out / "assets.ndjson").read_text().splitlines()
    for line in (s7 / "assets.ndjson").read_text().splitlines():
        doc = json.loads(line)
        doc["otsentry"]["asset"]["segment"] = "cell-s7"
        lines.append(json.dumps(doc))
    (out / "assets.ndjson").write_text("\n".join(lines) + "\n")
    return out


def test_table_shows_every_host(out: Path) -> None:
    res = otsentry("assets", "--out", out)
    assert res.returncode == 0, res.stderr
    rows = res.stdout
    for text in (
        "10.10.30.5",
        "00-80-F4-0C-30-05",
        "TELEMECANIQUE ELECTRIQUE",
        "modbus-server",
        "Modicon M340",
        "s7-engineering-station",
        "6ES7 315-2EH14-0AB0",
        "cell-s7",  # two segments: the segment column is shown
    ):
        assert text in rows, text
    assert "otsentry assets (7)" in rows


def test_filters_and_json(out: Path) -> None:
    res = otsentry("assets", "--out", out, "--role", "s7-plc", "--json")
    assert res.returncode == 0, res.stderr
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["otsentry"]["asset"]["ip"] for d in docs] == ["10.10.30.6"]
    res = otsentry(
        "assets", "--out", out, "--segment", "cell-s7", "--role", "modbus-client", "--json"
    )
    assert res.returncode == 0 and res.stdout == ""
    res = otsentry("assets", "--out", out, "--segment", "cell-s7")
    assert res.returncode == 0
    assert "10.10.30.20" in res.stdout and "10.10.30.66" not in res.stdout
    assert "segment" not in res.stdout  # one segment: no segment column


def test_missing_file_and_bad_role(tmp_path: Path) -> None:
    res = otsentry("assets", "--out", tmp_path)
    assert res.returncode == 2
    assert res.stdout == ""
    assert f"no assets.ndjson in {tmp_path}" in res.stderr
    (tmp_path / "assets.ndjson").write_text("{not json\n")
    res = otsentry("assets", "--out", tmp_path)
    assert res.returncode == 2 and "assets.ndjson:1: not JSON" in res.stderr
    res = otsentry("assets", "--out", tmp_path, "--role", "plc")
    assert res.returncode == 2 and "unknown role 'plc'" in res.stderr


def test_quiet_on_closed_pipe(out: Path) -> None:
    cmd = [sys.executable, "-m", "otsentry", "assets", "--out", str(out), "--json"]
    proc = subprocess.run(
        " ".join(cmd) + " | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)},
    )
    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 1
    assert proc.stderr == ""
