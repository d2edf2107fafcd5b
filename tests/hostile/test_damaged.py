"""Damaged captures: byte-flipped copies of the lab captures and truncated ones."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from otsentry.capture import CaptureError
from tests.conftest import lab_pcaps
from tests.hostile.captures import flip_bytes, record_offsets, replay
from tests.hostile.conftest import run_pipeline

LAB = {p.name: p for p in lab_pcaps()}
TRUNCATED = LAB["modbus_attacks.pcap"]  # 1893 records, with alerts


def lines(path: Path) -> int:
    return path.read_text().count("\n")


@pytest.mark.parametrize("name", sorted(LAB))
def test_byte_flipped_copies_replay_without_exceptions(name: str, tmp_path: Path) -> None:
    """Three copies, 1 % of the packet bytes flipped: the run ends and writes its outputs."""
    data = LAB[name].read_bytes()
    for seed in range(3):
        flipped = tmp_path / f"{seed}.pcap"
        flipped.write_bytes(flip_bytes(data, len(data) // 100, random.Random(f"{name}{seed}")))
        out = tmp_path / f"out{seed}"
        assert run_pipeline(flipped, out) is None  # record headers intact: no capture error
        stats = json.loads((out / "stats.json").read_text())
        assert stats["packets"] == len(record_offsets(data))
        assert stats["tcp"]["bytes_buffered"] == 0  # everything released at the end


def _observed(out: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(timestamp, action) of every event and (timestamp, rule id) of every alert."""
    events = [
        (e["@timestamp"], e["event"]["action"])
        for e in map(json.loads, (out / "events.ndjson").read_text().splitlines())
    ]
    alerts = [
        (a["@timestamp"], a["rule"]["id"])
        for a in map(json.loads, (out / "alerts.ndjson").read_text().splitlines())
    ]
    return events, alerts


def test_a_cut_inside_a_record_keeps_what_a_cut_at_its_start_keeps(tmp_path: Path) -> None:
    """Every 50th record: the file cut at the record's start is a shorter valid capture; cut
    3 bytes into its header or into its data it is damaged there, and the output is the same."""
    data = TRUNCATED.read_bytes()
    offsets = record_offsets(data)
    previous = -1
    for i in range(50, len(offsets), 50):
        start = offsets[i]
        boundary = tmp_path / f"b{i}.pcap"
        boundary.write_bytes(data[:start])
        assert run_pipeline(boundary, tmp_path / f"ob{i}") is None
        kept = _observed(tmp_path / f"ob{i}")
        assert len(kept[0]) >= previous  # more of the file, never fewer records
        previous = len(kept[0])
        for cut in (start + 3, start + 16 + 5):
            broken = tmp_path / f"m{i}_{cut}.pcap"
            broken.write_bytes(data[:cut])
            err = run_pipeline(broken, tmp_path / f"om{cut}")
            assert isinstance(err, CaptureError)
            assert (err.path, err.offset) == (str(broken), start)
            assert _observed(tmp_path / f"om{cut}") == kept
    assert previous > 0


def test_replay_of_a_cut_capture_exits_1_naming_file_and_offset(tmp_path: Path) -> None:
    data = TRUNCATED.read_bytes()
    offsets = record_offsets(data)
    start = offsets[-40]
    broken = tmp_path / "cut.pcap"
    broken.write_bytes(data[: start + 20])
    run = replay(broken, tmp_path / "o")
    assert run.rc == 1
    assert "Traceback" not in run.stderr
    assert str(broken) in run.stderr and f"offset {start}" in run.stderr
    assert run.stats["packets"] == len(offsets) - 40
    assert lines(tmp_path / "o" / "alerts.ndjson") > 0  # the attacks before the damage
    whole = offsets[-39] - start
    assert run.stats["capture"]["errors"] == [
        f"{broken}: offset {start}: truncated record: 20 of {whole} bytes"
    ]
