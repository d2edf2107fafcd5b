"""Evidence pcaps: the trigger's flow around it, read back with tshark and otsentry's reader."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otsentry.capture import open_capture
from otsentry.capture.base import Frame
from otsentry.config import parse_config
from otsentry.detect.evidence import EvidenceRecorder, write_pcap
from otsentry.model import Alert, AlertKind, Conn, Event
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS

MODBUS_ATTACKS = LAB_PCAPS / "modbus_attacks.pcap"
#: the attacker's scanning connection to plc1 (tshark's tcp.stream 2)
ATTACK_FLOW = Conn("1:test", "tcp", "10.10.30.66", 33200, "10.10.30.5", 502)
#: FC 8 sub-function 4 (force listen-only mode): request frame 924, response frame 925
DIAG_REQUEST, DIAG_RESPONSE = 924, 925


def frames(path: Path) -> list[Frame]:
    with open_capture(path) as reader:
        return list(reader)


def tshark_fields(tshark: str, path: Path, *fields: str, filter: str = "") -> list[list[str]]:
    args = [tshark, "-r", str(path), "-T", "fields", *(x for f in fields for x in ("-e", f))]
    if filter:
        args += ["-Y", filter]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def flow_frame_numbers(tshark: str, stream: int) -> list[int]:
    rows = tshark_fields(tshark, MODBUS_ATTACKS, "frame.number", filter=f"tcp.stream=={stream}")
    return [int(r[0]) for r in rows]


def feed(
    rec: EvidenceRecorder, source: list[Frame], starts: dict[int, Conn], every: int = 64
) -> dict[int, str | None]:
    """Append the frames to the ring as the pipeline does, start evidence at the given packet
    numbers, tick every ``every`` packets, finish; return the paths."""
    paths: dict[int, str | None] = {}
    for number, frame in enumerate(source, 1):
        rec.ring.append(frame)
        if number in starts:
            paths[number] = rec.start(starts[number], "OTS-TEST-DIAG", number)
        if number % every == 0:
            rec.advance(number, frame[0])
    rec.finish(len(source))
    return paths


def test_evidence_holds_the_flow_around_the_trigger(tshark: str, tmp_path: Path) -> None:
    source = frames(MODBUS_ATTACKS)
    rec = EvidenceRecorder(tmp_path, packets_before=20, packets_after=10)
    path = feed(rec, source, {DIAG_RESPONSE: ATTACK_FLOW})[DIAG_RESPONSE]
    assert path is not None and path.startswith("evidence/") and path.endswith(".pcap")
    flow = flow_frame_numbers(tshark, 2)
    at = flow.index(DIAG_RESPONSE)
    expected = flow[at - 20 : at + 11]
    assert len(expected) == 31
    written = frames(tmp_path / path)
    assert written == [source[n - 1] for n in expected]  # same time, link type and bytes
    assert rec.stats.as_dict() == {
        "files_written": 1,
        "skipped_max_files": 0,
        "skipped_no_packets": 0,
        "written_early": 0,
        "frames_written": 31,
    }
    # tshark reads it and sees the request and the response of FC 8 sub-function 4
    rows = tshark_fields(
        tshark,
        tmp_path / path,
        "ip.src",
        "tcp.srcport",
        "modbus.func_code",
        "modbus.diagnostic_code",
    )
    assert len(rows) == 31
    assert {(r[0], r[1]) for r in rows} == {("10.10.30.66", "33200"), ("10.10.30.5", "502")}
    assert ["10.10.30.66", "33200", "8", "4"] in rows
    assert ["10.10.30.5", "502", "8", "4"] in rows


def test_a_small_ring_limits_the_packets_before(tmp_path: Path, tshark: str) -> None:
    source = frames(MODBUS_ATTACKS)
    rec = EvidenceRecorder(tmp_path, packets_before=20, packets_after=3, ring_packets=12)
    path = feed(rec, source, {DIAG_RESPONSE: ATTACK_FLOW}, every=6)[DIAG_RESPONSE]
    assert path is not None
    flow = flow_frame_numbers(tshark, 2)
    at = flow.index(DIAG_RESPONSE)
    before = [n for n in flow[: at + 1] if n > DIAG_RESPONSE - 12]
    assert frames(tmp_path / path) == [source[n - 1] for n in [*before, *flow[at + 1 : at + 4]]]


def test_no_packets_after_wanted_writes_at_once(tmp_path: Path) -> None:
    source = frames(MODBUS_ATTACKS)[:DIAG_RESPONSE]
    rec = EvidenceRecorder(tmp_path, packets_before=1, packets_after=0)
    rec.ring.extend(source)
    path = rec.start(ATTACK_FLOW, "OTS-TEST-DIAG", DIAG_RESPONSE)
    assert path is not None
    assert frames(tmp_path / path) == [source[DIAG_REQUEST - 1], source[DIAG_RESPONSE - 1]]


def test_files_are_capped_and_absent_flows_skipped(tmp_path: Path) -> None:
    source = frames(MODBUS_ATTACKS)
    rec = EvidenceRecorder(tmp_path, max_files=2, packets_after=0)
    rec.ring.extend(source)
    n = len(source)
    paths = [rec.start(ATTACK_FLOW, "OTS-TEST-DIAG", n) for _ in range(3)]
    assert paths[2] is None and len(set(paths[:2])) == 2  # the same trigger twice: two names
    nobody = Conn("1:x", "tcp", "10.10.30.99", 1, "10.10.30.5", 502)
    assert EvidenceRecorder(tmp_path).start(nobody, "OTS-TEST-DIAG", 1) is None
    assert rec.stats.skipped_max_files == 1
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == sorted(
        Path(p).name for p in paths[:2] if p
    )


def test_nanosecond_timestamps_round_trip(tmp_path: Path) -> None:
    source = frames(MODBUS_ATTACKS)[:5]
    nano = [(ts + 123, lt, data) for ts, lt, data in source]
    write_pcap(tmp_path / "us.pcap", 1, source)
    write_pcap(tmp_path / "ns.pcap", 1, nano)
    assert frames(tmp_path / "us.pcap") == source
    assert frames(tmp_path / "ns.pcap") == nano
    assert (tmp_path / "us.pcap").read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    assert (tmp_path / "ns.pcap").read_bytes()[:4] == bytes.fromhex("4d3cb2a1")


# -- through the pipeline: an alert from a detection hook (as the baseline detector's) --------


def diagnostics_alerts(event: Event) -> Iterator[Alert]:
    if event.action == "modbus-diagnostics":
        yield Alert(
            ts=event.envelope.ts,
            kind=AlertKind.ANOMALY,
            rule_id="OTS-ANOM-TEST",
            rule_name="diagnostics",
            rule_version="1",
            severity=47,
            risk_score=47.0,
            message="diagnostics",
            events=(event,),
        )


def replay_with_hook(out: Path) -> list[dict[str, Any]]:
    config = parse_config("detection: {builtin_rules: false}\n")
    pipeline = Pipeline(config, out)
    pipeline.event_hooks.append(diagnostics_alerts)
    with open_capture(MODBUS_ATTACKS) as reader:
        pipeline.run(reader)
    stats = pipeline.finish()
    assert stats["evidence"]["files_written"] == 4
    lines = (out / "alerts.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_hook_alerts_get_evidence_of_their_trigger(tmp_path: Path, tshark: str) -> None:
    docs = replay_with_hook(tmp_path)
    source = frames(MODBUS_ATTACKS)
    assert len(docs) == 4
    for doc in docs:
        record = doc["otsentry"]["modbus"]
        path = tmp_path / doc["otsentry"]["evidence"]["pcap"]
        got = frames(path)
        request, response = (
            source[record["request_frame"] - 1],
            source[record["response_frame"] - 1],
        )
        # the trigger is the response: 20 packets of the flow up to the request, 10 after
        assert got.index(response) == got.index(request) + 1 == 20
        assert len(got) == 31
        client = (doc["source"]["ip"], str(doc["source"]["port"]))
        server = (doc["destination"]["ip"], str(doc["destination"]["port"]))
        rows = tshark_fields(tshark, path, "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport")
        assert {(r[0], r[1]) for r in rows} == {client, server}
        assert {(r[2], r[3]) for r in rows} == {client, server}
        ids = {r[0] for r in tshark_fields(tshark, path, "mbtcp.trans_id")}
        assert str(record["transaction_id"]) in ids


def test_same_replay_same_evidence(tmp_path: Path) -> None:
    first = replay_with_hook(tmp_path / "a")
    second = replay_with_hook(tmp_path / "b")
    names = [d["otsentry"]["evidence"]["pcap"] for d in first]
    assert names == [d["otsentry"]["evidence"]["pcap"] for d in second]
    assert [d["event"]["id"] for d in first] == [d["event"]["id"] for d in second]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize(
    "config_text",
    [
        "detection: {builtin_rules: false}\nalerts: {evidence: {enabled: false}}\n",
        "detection: {builtin_rules: false}\noutputs: {alerts: false}\n",
    ],
)
def test_evidence_disabled(tmp_path: Path, config_text: str) -> None:
    pipeline = Pipeline(parse_config(config_text), tmp_path)
    pipeline.event_hooks.append(diagnostics_alerts)
    with open_capture(MODBUS_ATTACKS) as reader:
        pipeline.run(reader)
    stats = pipeline.finish()
    assert stats["evidence"] == {"enabled": False}
    assert stats["alerts_total"] == 4
    assert not (tmp_path / "evidence").exists()
    if (tmp_path / "alerts.ndjson").exists():
        docs = [json.loads(x) for x in (tmp_path / "alerts.ndjson").read_text().splitlines()]
        assert len(docs) == 4 and all("evidence" not in d["otsentry"] for d in docs)


@pytest.mark.parametrize("ring", [3, 40, 20_000])
def test_ticks_keep_up_with_the_ring(tmp_path: Path, ring: int, tshark: str) -> None:
    """Whatever the ring size, the packets after the trigger are never lost between ticks."""
    config = parse_config(
        "detection: {builtin_rules: false}\n"
        f"alerts: {{evidence: {{ring_packets: {ring}, packets_before: 0, packets_after: 1}}}}\n"
    )
    pipeline = Pipeline(config, tmp_path)
    pipeline.event_hooks.append(diagnostics_alerts)
    with open_capture(MODBUS_ATTACKS) as reader:
        pipeline.run(reader)
    pipeline.finish()
    docs = [json.loads(x) for x in (tmp_path / "alerts.ndjson").read_text().splitlines()]
    flow = flow_frame_numbers(tshark, 2)
    source = frames(MODBUS_ATTACKS)
    triggers = [d["otsentry"]["modbus"]["response_frame"] for d in docs]
    for doc, trigger in zip(docs, triggers, strict=True):
        nxt = flow[flow.index(trigger) + 1]
        got = frames(tmp_path / doc["otsentry"]["evidence"]["pcap"])
        assert got == [source[trigger - 1], source[nxt - 1]]


# -- through the pipeline: rule alerts on the three lab attack captures -----------------------

ALERT_RULES = Path(__file__).parent / "alert_rules"


def replay_with_rules(name: str, out: Path, config_text: str = "") -> list[dict[str, Any]]:
    pipeline = Pipeline(parse_config(config_text), out, rules=[ALERT_RULES], builtin_rules=False)
    with open_capture(LAB_PCAPS / name) as reader:
        pipeline.run(reader)
    pipeline.finish()
    return [json.loads(x) for x in (out / "alerts.ndjson").read_text().splitlines()]


@pytest.mark.parametrize(
    ("name", "alerts"),
    [("modbus_attacks.pcap", 4), ("s7comm_engineering.pcap", 1), ("opcua_attacks.pcap", 2)],
)
def test_rule_alert_evidence_holds_the_trigger_exchange_and_only_its_flow(
    name: str, alerts: int, tmp_path: Path, tshark: str
) -> None:
    docs = replay_with_rules(name, tmp_path)
    source = frames(LAB_PCAPS / name)
    assert len(docs) == alerts
    for doc in docs:
        protocol = doc["network"]["protocol"]
        record = doc["otsentry"][protocol]
        path = tmp_path / doc["otsentry"]["evidence"]["pcap"]
        got = frames(path)
        client = (doc["source"]["ip"], str(doc["source"]["port"]))
        server = (doc["destination"]["ip"], str(doc["destination"]["port"]))
        # the flow's frames in the original capture, as tshark sees them
        flow_filter = (
            f"ip.addr=={client[0]} && tcp.port=={client[1]} && "
            f"ip.addr=={server[0]} && tcp.port=={server[1]}"
        )
        flow = [
            int(r[0])
            for r in tshark_fields(tshark, LAB_PCAPS / name, "frame.number", filter=flow_filter)
        ]
        # the trigger is the response: 20 packets of the flow before it, 10 after
        at = flow.index(record["response_frame"])
        assert got == [source[n - 1] for n in flow[max(0, at - 20) : at + 11]]
        assert source[record["request_frame"] - 1] in got
        rows = tshark_fields(tshark, path, "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport")
        assert {((r[0], r[1]), (r[2], r[3])) for r in rows} == {(client, server), (server, client)}


def test_opcua_write_evidence_is_a_write_exchange(tmp_path: Path, tshark: str) -> None:
    docs = replay_with_rules("opcua_attacks.pcap", tmp_path)
    for doc in docs:
        path = tmp_path / doc["otsentry"]["evidence"]["pcap"]
        services = [r[0] for r in tshark_fields(tshark, path, "opcua.servicenodeid.numeric")]
        assert "673" in services and "676" in services  # WriteRequest, WriteResponse


def test_s7_stop_evidence_holds_the_stop_job_and_its_ack(tmp_path: Path, tshark: str) -> None:
    (doc,) = replay_with_rules("s7comm_engineering.pcap", tmp_path)
    path = tmp_path / doc["otsentry"]["evidence"]["pcap"]
    rows = tshark_fields(tshark, path, "s7comm.header.rosctr", "s7comm.param.func")
    assert ["1", "0x29"] in rows and ["3", "0x29"] in rows  # job and ack_data


def test_max_files_caps_rule_evidence(tmp_path: Path) -> None:
    docs = replay_with_rules("modbus_attacks.pcap", tmp_path, "alerts: {evidence: {max_files: 1}}")
    with_file = [d for d in docs if "evidence" in d["otsentry"]]
    assert len(docs) == 4 and len(with_file) == 1
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["evidence"]["files_written"] == 1
    assert stats["evidence"]["skipped_max_files"] == 3
    assert len(list((tmp_path / "evidence").iterdir())) == 1


def test_arp_alerts_get_the_arp_packets_naming_the_address(tmp_path: Path, tshark: str) -> None:
    """An ARP spoofing alert has no IP flow: its evidence is the ARP traffic about the
    address whose binding moved, the attacker's replies and the real host's among them."""
    capture = LAB_PCAPS / "network_attacks_modbus.pcap"
    if not capture.exists():
        pytest.skip("lab capture missing")
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "otsentry", "replay", str(capture), "--out", str(out), "--quiet"],
        check=True,
    )
    alerts = [json.loads(line) for line in (out / "alerts.ndjson").open()]
    arp = [
        a for a in alerts if a["rule"]["id"] in ("OTS-NET-ARP-SPOOFING", "OTS-NET-IP-MAC-CHANGE")
    ]
    assert len(arp) == 2
    for alert in arp:
        path = out / alert["otsentry"]["evidence"]["pcap"]
        rows = tshark_fields(
            tshark,
            path,
            "frame.protocols",
            "arp.src.proto_ipv4",
            "arp.dst.proto_ipv4",
            "arp.src.hw_mac",
        )
        assert rows and len(rows) <= 31
        assert all(r[0] == "eth:ethertype:arp" for r in rows)
        spoofed = alert["source"]["ip"]
        assert all(spoofed in (r[1], r[2]) for r in rows)
        # the attacker's claim is there: the spoofed address with a MAC that is not its own
        assert len({r[3] for r in rows if r[1] == spoofed}) == 2
