"""``otsentry dissect`` end to end on the lab captures (a subprocess: real exit codes and streams).

The per-frame agreement with tshark is tests/dissectors/modbus/test_conformance.py; this checks
the command's contract: formats, filters, decode-as, several files, broken files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import LAB_PCAPS
from tests.test_replay_cli import otsentry

NORMAL = LAB_PCAPS / "modbus_normal.pcap"
PORT5020 = LAB_PCAPS / "modbus_port5020.pcap"
S7 = LAB_PCAPS / "s7comm_normal.pcap"

pytestmark = pytest.mark.skipif(not NORMAL.exists(), reason="lab captures missing")


def json_lines(text: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_follow_the_contract() -> None:
    res = otsentry("dissect", NORMAL, "--format", "json")
    assert res.returncode == 0, res.stderr
    recs = json_lines(res.stdout)
    assert len(recs) == 934  # tshark: 934 mbtcp PDUs in this capture
    first, second = recs[:2]
    assert set(first) == {"frame", "ts", "protocol", "direction", "src", "dst", "modbus"}
    assert (first["frame"], first["direction"], second["direction"]) == (11, "request", "response")
    assert first["src"] == "10.10.30.10:39508" and first["dst"] == "10.10.30.5:502"
    assert second["src"] == first["dst"] and second["dst"] == first["src"]
    body = second["modbus"]
    assert (body["transaction_id"], body["unit_id"], body["function_code"]) == (1, 1, 3)
    assert body["exception_code"] is None and body["anomalies"] == []
    assert (body["address"], body["quantity"]) == (0, 10) and len(body["values"]) == 10
    frames = [r["frame"] for r in recs]
    assert frames == sorted(frames)
    exceptions = [r for r in recs if r["modbus"]["exception_code"] is not None]
    assert exceptions and all(r["modbus"]["function_code"] < 0x80 for r in exceptions)


def test_tsv_has_a_header_and_one_line_per_pdu() -> None:
    res = otsentry("dissect", NORMAL)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = lines[0].split("\t")
    assert header[:7] == ["#fields", "frame", "ts", "protocol", "direction", "src", "dst"]
    assert "modbus.transaction_id" in header and header[-1] == "modbus.anomalies"
    assert len(lines) == 1 + 934
    row = lines[2].split("\t")
    assert len(row) == len(header) - 1
    assert row[0] == "13" and row[2] == "modbus" and row[3] == "response"


def test_protocol_filter_and_several_files() -> None:
    res = otsentry("dissect", NORMAL, S7, "--protocol", "modbus", "--format", "json")
    assert res.returncode == 0, res.stderr
    recs = json_lines(res.stdout)
    assert {r["protocol"] for r in recs} == {"modbus"}
    assert {r["file"] for r in recs} == {str(NORMAL)}  # s7comm has no Modbus


def test_non_standard_port_by_probe_and_by_decode_as() -> None:
    probed = json_lines(otsentry("dissect", PORT5020, "-T", "json").stdout)
    forced = json_lines(otsentry("dissect", PORT5020, "-T", "json", "-d", "5020=modbus").stdout)
    assert len(probed) == len(forced) == 934
    assert probed[0]["dst"].endswith(":5020")


def test_unknown_protocol_is_a_usage_error() -> None:
    res = otsentry("dissect", NORMAL, "--protocol", "profinet")
    assert res.returncode == 2
    assert "unknown protocol 'profinet'" in res.stderr and "Traceback" not in res.stderr


def test_broken_capture_keeps_lines_before_the_damage(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pcap"
    data = NORMAL.read_bytes()
    broken.write_bytes(data[: len(data) // 2 + 7])
    res = otsentry("dissect", broken, "-T", "json")
    assert res.returncode == 1
    assert str(broken) in res.stderr and "offset" in res.stderr
    recs = json_lines(res.stdout)
    assert 300 < len(recs) < 934


def test_output_closed_early_is_not_an_error() -> None:
    if shutil.which("sh") is None:
        pytest.skip("no shell")
    import subprocess
    import sys

    res = subprocess.run(
        f"{sys.executable} -m otsentry dissect {NORMAL} | head -3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.stdout.count("\n") == 3
    assert "Traceback" not in res.stderr and "error" not in res.stderr
