"""The benign runs a baseline learns from and is measured on: pcaps/*_normal_run2.pcap and
pcaps/learning/. Same plant, roles and polling as the normal captures; other process seeds."""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_make_lab import ENG, HMI, OPCSRV, PCAPS, PLC1, PLC2, RTU1, fields

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
MAX_SIZE = 5_000_000
PERIOD = 0.2

#: benign capture (relative to pcaps/) -> frames in the file, seconds of polling
RUNS: dict[str, tuple[int, float]] = {
    "modbus_normal_run2.pcap": (1192, 20.0),
    "s7comm_normal_run2.pcap": (518, 20.0),
    "opcua_normal_run2.pcap": (205, 15.0),
    "learning/modbus_learn.pcap": (17432, 300.0),
    "learning/s7comm_learn.pcap": (7378, 300.0),
    "learning/opcua_learn.pcap": (7059, 300.0),
    "learning/modbus_learn_run2.pcap": (10472, 180.0),
    "learning/s7comm_learn_run2.pcap": (4438, 180.0),
    "learning/opcua_learn_run2.pcap": (4253, 180.0),
}
#: protocol -> (tshark filter, (client, server) pairs)
PROTOCOLS = {
    "modbus": ("mbtcp", [(HMI, PLC1), (HMI, RTU1)]),
    "s7comm": ("s7comm", [(HMI, PLC2)]),
    "opcua": ("opcua", [(ENG, OPCSRV)]),
}


def protocol(name: str) -> str:
    return Path(name).name.split("_")[0]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_benign_run_is_a_classic_pcap_under_5_mb(name: str) -> None:
    pcap = PCAPS / name
    assert pcap.is_file(), f"{pcap} missing: run sudo python pcaps/make_lab.py --only ..."
    head = pcap.read_bytes()[:24]
    assert head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    assert 24 < pcap.stat().st_size < MAX_SIZE


@needs_tshark
@pytest.mark.parametrize("name", sorted(RUNS))
def test_benign_run_frames_talkers_and_length(name: str) -> None:
    pcap = PCAPS / name
    frames, seconds = RUNS[name]
    names = ("frame.time_relative", "eth.src", "ip.src", "ip.dst", "_ws.malformed")
    rows = fields(pcap, "", *names, "frame.protocols")
    assert len(rows) == frames
    assert seconds - 1 < float(rows[-1][0]) < seconds + 3
    assert not [r for r in rows if r[4]], "malformed frames"
    proto, pairs = PROTOCOLS[protocol(name)]
    if "opcua_learn" in name:
        pairs = [*pairs, (HMI, OPCSRV)]
    stations = {(ip, mac) for pair in pairs for ip, mac in pair}
    assert {(r[2], r[1]) for r in rows if r[2]} == stations
    talking = {(r[2], r[3]) for r in rows if proto in r[5].split(":")}
    assert talking == {(c[0], s[0]) for c, s in pairs} | {(s[0], c[0]) for c, s in pairs}


def _modbus_requests(pcap: Path) -> Counter[int]:
    rows = fields(pcap, "mbtcp && tcp.dstport == 502", "modbus.func_code")
    return Counter(int(r[0]) for r in rows)


@needs_tshark
@pytest.mark.parametrize(
    "name", [n for n in sorted(RUNS) if protocol(n) == "modbus"] + ["modbus_normal.pcap"]
)
def test_modbus_runs_poll_as_modbus_normal(name: str) -> None:
    """Every cycle FC1-FC4 to plc1 unit 1, unit 2 every tenth cycle, rtu1 every fifth, and the
    operator's seven actions once each: the counts follow from the number of cycles."""
    seconds = RUNS.get(name, (0, 20.0))[1]
    cycles = round(seconds / PERIOD)
    unit2, rtu = cycles // 10, cycles // 5
    assert _modbus_requests(PCAPS / name) == {
        1: cycles,
        2: cycles + rtu,
        3: cycles + unit2 + 1,  # the read answered with exception 02
        4: cycles + unit2 + rtu,
        5: 2,
        6: 2,
        15: 1,
        16: 1,
    }


@needs_tshark
@pytest.mark.parametrize("name", ["learning/modbus_learn.pcap", "learning/modbus_learn_run2.pcap"])
def test_modbus_polling_period(name: str) -> None:
    times = [
        float(r[0])
        for r in fields(
            PCAPS / name, "modbus.func_code == 1 && tcp.dstport == 502", "frame.time_relative"
        )
    ]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(gaps) == pytest.approx(PERIOD, abs=0.005)
    assert max(gaps) < 2 * PERIOD


@needs_tshark
@pytest.mark.parametrize("name", [n for n in sorted(RUNS) if protocol(n) == "s7comm"])
def test_s7_runs_poll_as_s7comm_normal(name: str) -> None:
    cycles = round(RUNS[name][1] / PERIOD)
    jobs = fields(
        PCAPS / name,
        f"s7comm.header.rosctr == 1 && ip.src == {HMI[0]}",
        "s7comm.param.func",
    )
    funcs = Counter(int(r[0], 16) for r in jobs)
    # DB1 every cycle, PE/PA/MK every fifth, DB2 and the three-item read every tenth
    assert funcs == {0xF0: 1, 0x04: cycles + 3 * (cycles // 5) + 2 * (cycles // 10), 0x05: 3}


@needs_tshark
@pytest.mark.parametrize("name", [n for n in sorted(RUNS) if "opcua_learn" in n])
def test_opcua_learning_runs_hold_the_hmi_and_the_engineering_sessions(name: str) -> None:
    seconds = RUNS[name][1]
    pcap = PCAPS / name

    def services(src: str) -> Counter[int]:
        rows = fields(pcap, f"opcua && ip.src == {src}", "opcua.servicenodeid.numeric")
        return Counter(int(v) for r in rows for v in r[0].split(",") if v)

    hmi, eng = services(HMI[0]), services(ENG[0])
    assert hmi[826] >= seconds  # Publish, at least one a second
    # a Read every second, the TrendBuffer every 10 s, asyncua's keep-alive every 5 s
    assert hmi[631] == pytest.approx(seconds + seconds / 10 + seconds / 5, abs=5)
    assert hmi[673] == pytest.approx(seconds / 6, abs=2)  # a Setpoint write every 6 s
    assert eng[712] == 1 and eng[673] == 1 and eng[428] == 1  # Call, Write, GetEndpoints
    trend = fields(
        pcap,
        f"opcua.servicenodeid.numeric == 634 && opcua.fragment.count && ip.dst == {HMI[0]}",
        "opcua.fragment.count",
    )
    assert len(trend) == pytest.approx(seconds / 10, abs=2)


def replay_events(pcap: Path, out: Path) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "otsentry", "replay", "-q", str(pcap), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in (out / "events.ndjson").read_text().splitlines()]


def test_second_modbus_run_reads_other_values_and_writes_the_same(tmp_path: Path) -> None:
    """Other process seeds: the input registers differ; the operator writes the same values."""

    def summary(name: str) -> tuple[list[list[int]], list[tuple[int, int, Any]]]:
        events = [e["otsentry"]["modbus"] for e in replay_events(PCAPS / name, tmp_path / name)]
        reads = [
            e["values"]
            for e in events
            if e.get("function_code") == 4 and e.get("unit_id") == 1 and "values" in e
        ]
        writes = [
            (e["unit_id"], e["function_code"], e.get("values", e.get("value")))
            for e in events
            if e.get("function_code") in (5, 6, 15, 16)
        ]
        return reads, writes

    first_reads, first_writes = summary("modbus_normal.pcap")
    second_reads, second_writes = summary("modbus_normal_run2.pcap")
    assert first_writes == second_writes and len(first_writes) == 6
    assert len(first_reads) == len(second_reads) > 100
    # level, flow and pressure carry seeded noise: the runs agree on no sample
    assert all(a[:3] != b[:3] for a, b in zip(first_reads, second_reads, strict=True))
    # the scan counter (IR 7) counts the same way in both
    assert [r[7] for r in first_reads][:50] == [r[7] for r in second_reads][:50]
