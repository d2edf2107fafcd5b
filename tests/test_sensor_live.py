"""``otsentry sensor`` and ``otsentry baseline learn -i`` on a real interface: lab frames sent
through a veth pair into a namespace where the sensor listens (root and namespaces needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otsentry.capture import open_capture
from tests.capture.live_helpers import Netns, link_counters, namespaces_unavailable, raw_sender
from tests.conftest import LAB_PCAPS

pytestmark = pytest.mark.skipif(
    namespaces_unavailable() is not None, reason=str(namespaces_unavailable())
)


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns()
    try:
        ns.link("lvp0", "lvs0")
        yield ns
    finally:
        ns.close()


def in_ns(ns: str, *argv: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "otsentry", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def send(ns: Netns, capture: Path, pace: float = 0.0) -> int:
    """Send a lab capture's frames from the peer side, keeping their order (and, scaled by
    ``pace``, their spacing); returns how many."""
    with open_capture(capture) as reader:
        frames = list(reader)
    sock = raw_sender(ns.peer, "lvp0")
    start = frames[0][0]
    began = time.monotonic()
    try:
        for ts, _, data in frames:
            if pace:
                delay = (ts - start) / 1e9 * pace - (time.monotonic() - began)
                if delay > 0:
                    time.sleep(delay)
            sock.send(data)
    finally:
        sock.close()
    return len(frames)


def wait_ready(path: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def docs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fanout", ["hash", "hostpair"])
def test_sensor_with_two_workers_sees_what_tcpdump_sees(
    netns: Netns, tmp_path: Path, fanout: str
) -> None:
    out, beside = tmp_path / "live", tmp_path / "beside.pcap"
    dump = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns.sensor,
            "tcpdump",
            "-i",
            "lvs0",
            "-w",
            str(beside),
            "-U",
            "--immediate-mode",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sensor = in_ns(
        netns.sensor,
        *("sensor", "-i", "lvs0", "--workers", "2", "--fanout", fanout),
        *("--out", out, "--stats-interval", "0.5", "-q"),
    )
    try:
        wait_ready(out / "stats.json")
        tx_before = link_counters(netns.sensor, "lvs0")["tx"]
        sent = send(netns, LAB_PCAPS / "modbus_attacks.pcap", pace=0.05)
        time.sleep(1.0)
        tx_after = link_counters(netns.sensor, "lvs0")["tx"]
    finally:
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
        dump.send_signal(signal.SIGINT)
        dump.communicate(timeout=30)
    assert sensor.returncode == 0, err
    assert tx_after == tx_before  # the sensor sent nothing
    stats = json.loads((out / "stats.json").read_text())
    assert stats["sensor"]["workers"] == 2 and stats["sensor"]["state"] == "stopped"
    assert stats["packets"] == sent
    assert stats["capture"]["kernel_drops"] == 0
    assert len(list((out / "workers").iterdir())) == 2

    ref = tmp_path / "replay"
    done = subprocess.run(
        [sys.executable, "-m", "otsentry", "replay", beside, "--out", ref, "-q"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr

    def events(d: Path) -> Counter[tuple[str, str, str]]:
        return Counter(
            (e["event"]["action"], e["source"]["ip"], e["destination"]["ip"])
            for e in docs(d / "events.ndjson")
        )

    assert events(out) == events(ref)
    live_assets = {
        a["otsentry"]["asset"]["ip"]: a["otsentry"]["asset"] for a in docs(out / "assets.ndjson")
    }
    ref_assets = {
        a["otsentry"]["asset"]["ip"]: a["otsentry"]["asset"] for a in docs(ref / "assets.ndjson")
    }
    assert set(live_assets) == set(ref_assets)
    for ip, asset in ref_assets.items():
        assert live_assets[ip]["packets"] == asset["packets"], ip
        assert live_assets[ip]["roles"] == asset["roles"], ip
    live_rules = {a["rule"]["id"] for a in docs(out / "alerts.ndjson")}
    ref_rules = {a["rule"]["id"] for a in docs(ref / "alerts.ndjson")}
    assert live_rules == ref_rules


def test_sighup_reloads_and_sigterm_flushes(netns: Netns, tmp_path: Path) -> None:
    out = tmp_path / "live"
    sensor = in_ns(
        netns.sensor, "sensor", "-i", "lvs0", "--out", out, "--stats-interval", "0.3", "-q"
    )
    try:
        wait_ready(out / "stats.json")
        send(netns, LAB_PCAPS / "s7comm_attacks.pcap")
        os.kill(sensor.pid, 0)
        # ip netns exec runs the sensor as a child: signal the sensor process itself
        child = int(json.loads((out / "stats.json").read_text())["sensor"]["pid"])
        os.kill(child, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if json.loads((out / "stats.json").read_text())["sensor"]["reloads"] == 1:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no reload seen in stats.json")
    finally:
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
    assert sensor.returncode == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["sensor"]["state"] == "stopped"
    assert stats["packets"] > 300
    assert all(docs(out / "events.ndjson"))
    assert {a["rule"]["id"] for a in docs(out / "alerts.ndjson")}


def test_learn_a_baseline_live(netns: Netns, tmp_path: Path) -> None:
    out = tmp_path / "baselines"
    learn = in_ns(netns.sensor, "baseline", "learn", "-i", "lvs0", "--duration", "4s", "--out", out)
    time.sleep(1.5)
    send(netns, LAB_PCAPS / "modbus_normal.pcap")
    _, err = learn.communicate(timeout=60)
    assert learn.returncode == 0, err
    (baseline,) = out.glob("*.yaml")
    text = baseline.read_text()
    assert "10.10.30.10" in text and "live:lvs0" in text
    assert "learning on lvs0 for 4 s" in err


def test_missing_interface_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "otsentry", "sensor", "-i", "nosuch0", "--out", tmp_path, "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "nosuch0" in done.stderr
    assert "Traceback" not in done.stderr


def test_capture_filter_keeps_traffic_out_and_counts_it(netns: Netns, tmp_path: Path) -> None:
    out = tmp_path / "live"
    sensor = in_ns(
        netns.sensor,
        *("sensor", "-i", "lvs0", "--out", out, "-q", "--stats-interval", "0.3"),
        *("tcp", "port", "102"),
    )
    try:
        wait_ready(out / "stats.json")
        modbus = send(netns, LAB_PCAPS / "modbus_normal.pcap")
        s7 = send(netns, LAB_PCAPS / "s7comm_normal.pcap")
        time.sleep(1.0)
    finally:
        sensor.send_signal(signal.SIGTERM)
        _, err = sensor.communicate(timeout=60)
    assert sensor.returncode == 0, err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["capture"]["filter"] == "tcp port 102"
    assert {e["network"]["protocol"] for e in docs(out / "events.ndjson")} == {"s7comm"}
    assert 0 < stats["packets"] <= s7
    assert stats["capture"]["filtered"] >= modbus
