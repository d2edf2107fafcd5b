"""The live sensor on the plant's mirror port: the mirror sees both directions, and
``otsentry sensor`` writes what a replay of tcpdump's capture beside it writes, reports its
kernel drop counters, transmits nothing and stops cleanly on SIGTERM.

Needs root, network namespaces, tc (clsact, mirred), tcpdump, pymodbus and python-snap7;
skips without them. The sensor tests skip until ``otsentry sensor`` exists.
"""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otsentry.capture import LINKTYPE_ETHERNET, open_capture
from tests.live.conftest import LivePlant
from tests.live.plant import (
    HMI_IP,
    NS_PREFIX,
    PLC_IP,
    PORTS,
    Plant,
    PlantError,
    Sensor,
    Tcpdump,
    run,
    unavailable,
)

pytestmark = pytest.mark.lab

TRAFFIC_SECONDS = 3.0
#: --duration of the sensor run compared with the replay: start-up, traffic and a margin
SENSOR_DURATION = 10.0
ETH_IPV4, ETH_ARP = 0x0800, 0x0806
SYN, ACK = 0x02, 0x10
NAMES = ("events", "alerts", "assets")

#: paths dropped from every document before the comparison, and why they differ by design
VOLATILE = {
    ("@timestamp",): "nanosecond kernel time live, microseconds in tcpdump's file",
    ("event", "id"): "derived from the time",
    ("event", "created"): "when the document was written",
    ("event", "ingested"): "when the document was written",
    ("event", "start"): "time",
    ("event", "end"): "time",
    ("event", "duration"): "difference of two times, at the capture's precision",
    ("observer",): "the live sensor names its interface, a replay its file",
    ("otsentry", "evidence"): "file names made of the time",
}
#: keys dropped wherever they occur below otsentry: times and frame numbers of one reader
VOLATILE_KEYS = {"first_seen", "last_seen", "request_frame", "response_frame"}
#: lists that are sets: compared without their order
ORDERLESS = {("otsentry", "asset", "services"), ("otsentry", "asset", "role_evidence")}


def ndjson(path: Path) -> list[dict[str, Any]]:
    """Every line of an NDJSON file, parsed (fails on a line that does not parse)."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def normalise(doc: Any, path: tuple[str, ...] = ()) -> Any:
    """A document without its VOLATILE parts, as a hashable, order-independent string."""
    if isinstance(doc, dict):
        kept = {}
        for key, value in doc.items():
            sub = (*path, key)
            if sub in VOLATILE or (path[:1] == ("otsentry",) and key in VOLATILE_KEYS):
                continue
            kept[key] = normalise(value, sub)
        return kept if path else json.dumps(kept, sort_keys=True)
    if isinstance(doc, list):
        items = [normalise(item, path) for item in doc]
        return sorted(items, key=json.dumps) if path in ORDERLESS else items
    return doc


def documents(out: Path, name: str) -> Counter[str]:
    """The multiset of normalised documents of out/<name>.ndjson."""
    return Counter(normalise(doc) for doc in ndjson(out / f"{name}.ndjson"))


def tcp_segments(pcap: Path) -> Iterator[tuple[str, int, str, int, int]]:
    """(source ip, port, destination ip, port, TCP flags) of every IPv4/TCP frame; fails on a
    frame that is neither IPv4 between the PLC and the HMI nor ARP."""
    with open_capture(pcap) as reader:
        for _, link, frame in reader:
            assert link == LINKTYPE_ETHERNET
            (ethertype,) = struct.unpack_from("!H", frame, 12)
            if ethertype == ETH_ARP:
                continue
            assert ethertype == ETH_IPV4, f"unexpected ethertype {ethertype:#06x} on the mirror"
            ip = frame[14:]
            src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
            assert {src, dst} == {PLC_IP, HMI_IP}, f"{src} -> {dst} is not plant traffic"
            if ip[9] == 6:
                tcp = ip[(ip[0] & 0x0F) * 4 :]
                sport, dport = struct.unpack_from("!HH", tcp)
                yield src, sport, dst, dport, tcp[13]


def replay(pcap: Path, out: Path) -> None:
    """otsentry replay PCAP --out OUT."""
    argv = [sys.executable, "-m", "otsentry", "replay", str(pcap), "--out", str(out), "--quiet"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_plant_namespaces_are_removed_even_when_the_body_fails() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    plant = Plant(sender=True)
    with pytest.raises(RuntimeError, match="inside the plant"), plant:
        spaces = run(["ip", "netns", "list"]).stdout
        assert all(ns in spaces for ns in (plant.plc, plant.hmi, plant.sensor, plant.send))
        raise RuntimeError("inside the plant")
    left = run(["ip", "netns", "list"]).stdout.splitlines()
    assert plant.prefix.startswith(NS_PREFIX)
    assert not [line for line in left if line.startswith(plant.prefix)]


def test_mirror_sees_both_directions_and_nothing_else(
    live_plant: LivePlant, tmp_path: Path
) -> None:
    plant = live_plant.plant
    span_before = plant.span_counters()
    dump = Tcpdump(plant, tmp_path / "beside.pcap")
    dump.start()
    try:
        live_plant.traffic(1.5)
    except BaseException:
        dump.kill()
        raise
    time.sleep(0.3)
    captured, dropped = dump.stop()
    span_after = plant.span_counters()

    assert dropped == 0
    assert captured == span_after["rx_packets"] - span_before["rx_packets"] > 0
    assert span_after["tx_packets"] == span_before["tx_packets"]
    segments = list(tcp_segments(tmp_path / "beside.pcap"))
    ports = [PORTS["modbus"], PORTS["s7comm"]] + ([PORTS["opcua"]] if live_plant.opcua else [])
    for port in ports:
        syn = [s for s in segments if s[2:4] == (PLC_IP, port) and s[4] & (SYN | ACK) == SYN]
        assert syn, f"no SYN from the HMI to port {port} on the mirror"
        for src, sport, _, _, _ in syn:
            assert src == HMI_IP
            back = (PLC_IP, port, HMI_IP, sport)
            assert any(s[:4] == back and s[4] & (SYN | ACK) == SYN | ACK for s in segments), (
                f"no SYN-ACK from port {port} to the HMI's port {sport} on the mirror"
            )


# --- the sensor ---------------------------------------------------------------------------------


@dataclass
class SensorRun:
    """One sensor run beside tcpdump, and the replay of tcpdump's file."""

    workers: int
    live: Path
    replayed: Path
    stats: dict[str, Any]
    replay_stats: dict[str, Any]
    tcpdump: tuple[int, int]
    span: tuple[dict[str, int], dict[str, int]]
    mirror: tuple[dict[str, int], dict[str, int]]


@pytest.fixture(scope="module", params=[1, 2], ids=["workers1", "workers2"])
def sensor_run(
    live_plant: LivePlant,
    sensor_command: None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> SensorRun:
    """tcpdump and ``otsentry sensor --workers W --duration`` on span0 started before the
    traffic and stopped after it; then ``otsentry replay`` of tcpdump's file."""
    workers: int = request.param
    plant, work = live_plant.plant, tmp_path_factory.mktemp(f"sensor-run-{workers}")
    dump = Tcpdump(plant, work / "beside.pcap")
    args = ("--workers", str(workers), "--duration", str(SENSOR_DURATION), "--quiet")
    sensor = Sensor(plant, work / "live", *args)
    dump.start()
    span_before, mirror_before = plant.span_counters(), plant.mirror_counters()
    started = time.monotonic()
    try:
        sensor.start(sockets=workers)
        live_plant.traffic(TRAFFIC_SECONDS)
        traffic_end = time.monotonic() - started
        rc = sensor.wait(timeout=SENSOR_DURATION + 30)
    except BaseException:
        sensor.kill()
        dump.kill()
        raise
    counts = dump.stop()
    assert traffic_end < SENSOR_DURATION - 0.5, (
        f"traffic outlasted --duration ({traffic_end:.1f} s)"
    )
    assert rc == 0, sensor.output()
    span_after, mirror_after = plant.span_counters(), plant.mirror_counters()
    replay(work / "beside.pcap", work / "replayed")
    return SensorRun(
        workers=workers,
        live=work / "live",
        replayed=work / "replayed",
        stats=sensor.stats(),
        replay_stats=json.loads((work / "replayed" / "stats.json").read_text()),
        tcpdump=counts,
        span=(span_before, span_after),
        mirror=(mirror_before, mirror_after),
    )


def test_sensor_sees_every_frame_tcpdump_saw(sensor_run: SensorRun) -> None:
    captured, dropped = sensor_run.tcpdump
    assert dropped == 0
    assert captured == sensor_run.span[1]["rx_packets"] - sensor_run.span[0]["rx_packets"]
    assert sensor_run.stats["packets"] == sensor_run.replay_stats["packets"] == captured


@pytest.mark.parametrize("name", NAMES)
def test_sensor_writes_what_a_replay_of_the_capture_beside_it_writes(
    sensor_run: SensorRun, name: str
) -> None:
    # with several workers, assets seen by more than one are merged per host by the supervisor
    live = documents(sensor_run.live, name)
    replayed = documents(sensor_run.replayed, name)
    assert sum(replayed.values()) > 0
    missing, extra = replayed - live, live - replayed
    assert not missing and not extra, (
        f"{name}: {sum(missing.values())} only in the replay, {sum(extra.values())} only live; "
        f"first only in the replay: {next(iter(missing), None)}; "
        f"first only live: {next(iter(extra), None)}"
    )


def test_sensor_run_raised_the_rule_alerts_of_the_plant_traffic(sensor_run: SensorRun) -> None:
    rules = Counter(doc["rule"]["id"] for doc in ndjson(sensor_run.live / "alerts.ndjson"))
    for rule in (
        "OTS-MODBUS-FORCE-LISTEN-ONLY",
        "OTS-MODBUS-RESTART-COMMUNICATIONS",
        "OTS-MODBUS-DEVICE-IDENTIFICATION",
        "OTS-S7-SZL-IDENTITY-READ",
    ):
        assert rules[rule] >= 1, f"{rule} missing from {dict(rules)}"
    roles = {
        doc["otsentry"]["asset"]["ip"]: set(doc["otsentry"]["asset"]["roles"])
        for doc in ndjson(sensor_run.live / "assets.ndjson")
    }
    assert {"modbus-server", "s7-plc"} <= roles[PLC_IP]
    assert {"modbus-client", "s7-hmi"} <= roles[HMI_IP]


def test_sensor_reports_kernel_drop_counters(sensor_run: SensorRun) -> None:
    span0 = sensor_run.stats["capture"]["interfaces"]["span0"]
    assert span0["dropped"] == 0
    assert span0["received"] == sensor_run.tcpdump[0]


def test_sensor_transmits_nothing(sensor_run: SensorRun) -> None:
    (span_before, span_after), (mirror_before, mirror_after) = sensor_run.span, sensor_run.mirror
    assert span_after["rx_packets"] > span_before["rx_packets"]
    for counter in ("tx_packets", "tx_bytes", "tx_dropped", "tx_errors"):
        assert span_after[counter] == span_before[counter], f"span0 {counter} moved"
    for counter in ("rx_packets", "rx_bytes"):
        assert mirror_after[counter] == mirror_before[counter], f"mirror0 {counter} moved"


def test_sigterm_mid_run_exits_zero_with_complete_output(
    live_plant: LivePlant, sensor_command: None, tmp_path: Path
) -> None:
    sensor = Sensor(live_plant.plant, tmp_path / "live", "--stats-interval", "0.5", "--quiet")
    errors: list[BaseException] = []

    def traffic() -> None:
        try:
            live_plant.traffic(TRAFFIC_SECONDS)
        except (PlantError, OSError) as exc:
            errors.append(exc)

    sensor.start()
    client = threading.Thread(target=traffic)
    try:
        client.start()
        time.sleep(TRAFFIC_SECONDS / 2)
        assert sensor.running()
        sensor.signal(signal.SIGTERM)
        rc = sensor.wait(timeout=30)
    finally:
        sensor.kill()
        client.join(timeout=60)
    assert not errors
    assert rc == 0, sensor.output()
    stats = sensor.stats()
    assert stats["sensor"]["state"] == "stopped"
    assert stats["capture"]["interfaces"]["span0"]["received"] > 0
    out = tmp_path / "live"
    events, alerts, assets = (ndjson(out / f"{name}.ndjson") for name in NAMES)
    assert events and all(doc["event"]["action"] for doc in events)
    assert len(events) == sum(stats["events"].values())
    assert len(alerts) == stats["alerts_total"]
    assert len(assets) == stats["assets"] > 0
