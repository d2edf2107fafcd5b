"""``otsentry replay`` end to end, as a user runs it (a subprocess: real exit codes and streams)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests.conftest import SHARED_PCAPS


def otsentry(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otsentry", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def conversation(n: int = 40, base: int = 1_700_000_000) -> list:  # type: ignore[type-arg]
    """A Modbus-like TCP conversation between an HMI and a PLC."""
    pkts = []
    c, s = "10.10.30.10", "10.10.30.5"
    pkts.append(
        Ether(src="00:1b:21:00:00:10", dst="00:1b:1b:00:00:05")
        / IP(src=c, dst=s)
        / TCP(sport=40000, dport=502, flags="S", seq=99)
    )
    pkts.append(
        Ether(src="00:1b:1b:00:00:05", dst="00:1b:21:00:00:10")
        / IP(src=s, dst=c)
        / TCP(sport=502, dport=40000, flags="SA", seq=499, ack=100)
    )
    for i in range(n):
        req = b"\x00" + bytes([i % 256]) + b"\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01"
        pkts.append(
            Ether(src="00:1b:21:00:00:10", dst="00:1b:1b:00:00:05")
            / IP(src=c, dst=s)
            / TCP(sport=40000, dport=502, flags="PA", seq=100 + 12 * i)
            / req
        )
    for i, p in enumerate(pkts):
        p.time = base + i * 0.1
    return pkts


@pytest.fixture()
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "plant.pcap"
    wrpcap(str(path), conversation())
    return path


def read_ndjson(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_writes_outputs_and_stats(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = otsentry("replay", capture, "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # UI goes to stderr
    for name in ("events.ndjson", "alerts.ndjson", "assets.ndjson", "stats.json"):
        assert (out / name).is_file()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["packets"] == 42
    assert stats["flows"] == 1
    assert stats["bytes"] == capture.stat().st_size - 24 - 16 * 42
    assert stats["alerts"] == {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert set(stats) >= {"pdus", "parse_errors", "seconds", "packets_per_second"}
    assets = {a["otsentry"]["asset"]["ip"]: a for a in read_ndjson(out / "assets.ndjson")}
    plc = assets["10.10.30.5"]["otsentry"]["asset"]
    assert plc["mac"] == "00-1B-1B-00-00-05"
    assert plc["services"] == [{"transport": "tcp", "port": 502, "protocol": "modbus"}]
    # 40 Modbus requests the server never answered: one event each, flushed at the end
    assert stats["pdus"]["modbus"] == 40
    events = read_ndjson(out / "events.ndjson")
    assert len(events) == 40
    assert {e["otsentry"]["modbus"]["direction"] for e in events} == {"request"}
    assert {e["event"]["outcome"] for e in events} == {"unknown"}
    assert [e["otsentry"]["modbus"]["request_frame"] for e in events] == list(range(3, 43))
    assert plc["segment"] == "10.10.30.0/24"
    assert assets["10.10.30.5"]["@timestamp"].startswith("2023-11-14T22:13:")


def test_json_stats_on_stdout(capture: Path, tmp_path: Path) -> None:
    res = otsentry("replay", capture, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["packets"] == 42


def test_format_from_magic_not_name(capture: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "capture.pcapng"  # really classic pcap, and gzip-compressed
    disguised.write_bytes(gzip.compress(capture.read_bytes()))
    res = otsentry("replay", disguised, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["packets"] == 42


def test_truncated_capture_stops_with_offset_and_keeps_output(
    capture: Path, tmp_path: Path
) -> None:
    data = capture.read_bytes()
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(data[: len(data) - 30])  # cut inside the last record
    out = tmp_path / "o"
    res = otsentry("replay", broken, "--out", out, "--quiet")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert str(broken) in errors[0] and "offset" in errors[0]
    assert "Traceback" not in res.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["packets"] == 41  # everything before the damage
    assert len(stats["capture"]["errors"]) == 1
    assert (out / "assets.ndjson").read_text().count("\n") == 2


def test_keep_going_moves_on_to_the_next_file(capture: Path, tmp_path: Path) -> None:
    broken = tmp_path / "a-broken.pcap"
    broken.write_bytes(capture.read_bytes()[:200])
    other = tmp_path / "b-good.pcap"
    wrpcap(str(other), conversation(10, base=1_700_000_100))
    out = tmp_path / "o"
    stop = otsentry("replay", broken, other, "--out", out, "--quiet", "--json")
    assert stop.returncode == 1
    go = otsentry("replay", broken, other, "--out", out, "--quiet", "--json", "--keep-going")
    assert go.returncode == 1  # a file could not be read; the others were replayed
    assert (
        json.loads(go.stdout)["packets"]
        > json.loads((out / "stats.json").read_text())["packets"] - 1
    )
    assert json.loads(go.stdout)["packets"] >= 12


def test_directory_replays_in_timestamp_order(capture: Path, tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    wrpcap(str(folder / "z-early.pcap"), conversation(5, base=1_600_000_000))
    wrpcap(str(folder / "a-late.pcap"), conversation(5, base=1_700_000_000))
    (folder / "notes.txt").write_text("not a capture")
    res = otsentry("replay", folder, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["packets"] == 14
    assert stats["first_packet"].startswith("2020-09-13")
    assert len(stats["capture"]["files"]) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--decode-as", "5020=nonsense"], "nonsense"),
        (["--decode-as", "garbage"], "garbage"),
    ],
)
def test_usage_errors_exit_2(capture: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    res = otsentry("replay", capture, "--out", tmp_path / "o", *args)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_config_names_key_and_line(capture: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text("limits:\n  max_flows: 10\n  max_flws: 3\n")
    res = otsentry("replay", capture, "--config", cfg, "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "otsentry.yaml:3" in res.stderr and "max_flws" in res.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    res = otsentry("replay", tmp_path / "nope.pcap", "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "nope.pcap" in res.stderr


def test_config_segments_and_outputs(capture: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text(
        "sensor: {name: plant1-cell3}\n"
        "segments:\n  cell-3: {cidrs: [10.10.30.0/24]}\n"
        f"outputs: {{dir: {tmp_path / 'cfg-out'}}}\n"
    )
    res = otsentry("replay", capture, "--config", cfg, "--quiet")
    assert res.returncode == 0, res.stderr
    asset = read_ndjson(tmp_path / "cfg-out" / "assets.ndjson")[0]
    assert asset["labels"]["segment"] == "cell-3"
    assert asset["observer"]["name"] == "plant1-cell3"


def test_version() -> None:
    res = otsentry("version")
    assert res.returncode == 0
    assert res.stdout.startswith("otsentry ")


def test_every_public_capture_replays_without_a_traceback(tmp_path: Path) -> None:
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/pcaps is absent")
    res = otsentry(
        "replay", SHARED_PCAPS, "--out", tmp_path / "o", "--quiet", "--json", "--keep-going"
    )
    assert "Traceback" not in res.stderr
    stats = json.loads(res.stdout)
    assert res.returncode == (1 if stats["capture"]["errors"] else 0)
    manifest = (SHARED_PCAPS / "MANIFEST.tsv").read_text().splitlines()[1:]
    expected = sum(int(line.split("\t")[6]) for line in manifest)
    assert stats["packets"] == expected
