"""Replaying lab captures against the baseline of the lab's normal captures: the normal ones
raise nothing, the attack captures raise explained anomaly alerts with their techniques."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otsentry.baseline import store
from otsentry.baseline.aspect import KINDS, AnomalyKind, rule_id
from otsentry.baseline.detector import Detector
from otsentry.baseline.run import feed
from otsentry.detect.attack import attack_ics
from tests.baseline.conftest import SEGMENT, by_rule, replay
from tests.conftest import LAB_PCAPS


def techniques(doc: dict[str, Any]) -> set[str]:
    return set(doc["threat"]["technique"]["id"])


@pytest.mark.parametrize(
    "capture", ["modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap"]
)
def test_the_normal_captures_raise_nothing(
    baseline_dir: Path, tmp_path: Path, capture: str
) -> None:
    docs, stats = replay(capture, baseline_dir, tmp_path)
    assert docs == []
    det = stats["detection"]["baseline"]
    assert det["events_checked"] > 50
    assert det["deviations"] == {}
    assert det["events_without_baseline"] == 0


def test_modbus_attacks_new_talker_writer_functions_and_addresses(
    baseline_dir: Path, tmp_path: Path
) -> None:
    docs, _ = replay("modbus_attacks.pcap", baseline_dir, tmp_path)
    [asset] = by_rule(docs, "OTS-ANOM-NEW-ASSET")
    assert asset["otsentry"]["anomaly"]["item"]["ip"] == "10.10.30.66"
    assert "10.10.30.66" in asset["event"]["reason"] and "never seen" in asset["event"]["reason"]

    links = by_rule(docs, "OTS-ANOM-NEW-LINK")
    servers = {d["otsentry"]["anomaly"]["item"]["server"] for d in links}
    assert servers == {"10.10.30.5", "10.10.30.8"}
    assert all(d["event"]["severity"] == 73 for d in links)  # towards an ICS port: high

    [writer] = by_rule(docs, "OTS-ANOM-NEW-WRITER")
    assert techniques(writer) == {"T0855", "T0848"}
    anomaly = writer["otsentry"]["anomaly"]
    assert anomaly["kind"] == "new_writer"
    assert anomaly["baseline"]["id"] == SEGMENT and len(anomaly["baseline"]["version"]) == 12
    assert anomaly["expected"]["writers"] == ["10.10.30.10"]
    assert anomaly["observed"]["writer"] == "10.10.30.66"
    reason = writer["event"]["reason"]
    assert "written by 10.10.30.10 only" in reason and "10.10.30.66, which never wrote" in reason
    tables = {(i["table"], i["range"]) for i in anomaly["items"]}
    assert ("holding_registers", "63") in tables and ("coils", "31") in tables
    assert writer["otsentry"]["alert"]["count"] >= len(anomaly["items"])

    functions = by_rule(docs, "OTS-ANOM-NEW-FUNCTION")
    assert all(techniques(d) == {"T0855"} for d in functions)
    seen = {i["function"] for d in functions for i in d["otsentry"]["anomaly"]["items"]}
    assert {"8/0", "43/14", "17", "5", "6"} <= seen
    # a new write function outranks a new read function
    levels = {d["otsentry"]["anomaly"]["level"] for d in functions}
    assert levels == {"medium", "high"}
    high = next(d for d in functions if d["otsentry"]["anomaly"]["level"] == "high")
    assert "5" in {i["function"] for i in high["otsentry"]["anomaly"]["items"]}

    [reads] = by_rule(docs, "OTS-ANOM-NEW-ADDRESS-RANGE")
    assert techniques(reads) == {"T0861", "T0801"}
    assert reads["event"]["severity"] < writer["event"]["severity"]
    assert "10.10.30.66 never read" in reads["event"]["reason"]


def test_s7_engineering_station_and_writes(baseline_dir: Path, tmp_path: Path) -> None:
    docs, _ = replay("s7comm_engineering.pcap", baseline_dir, tmp_path)
    [station] = by_rule(docs, "OTS-ANOM-NEW-IDENTITY")
    assert techniques(station) == {"T0848", "T0886"}
    assert station["otsentry"]["anomaly"]["item"]["station"] == "10.10.30.20"
    activities = {i["activity"] for i in station["otsentry"]["anomaly"]["items"]}
    assert activities == {"pg_connection", "upload", "download"}
    assert "engineering session with 10.10.30.6" in station["event"]["reason"]

    [writer] = by_rule(docs, "OTS-ANOM-NEW-WRITER")
    assert writer["otsentry"]["anomaly"]["item"]["table"].startswith("data_block DB")
    functions = {
        i["function"]
        for d in by_rule(docs, "OTS-ANOM-NEW-FUNCTION")
        for i in d["otsentry"]["anomaly"]["items"]
    }
    assert {"download-block", "start-upload", "plc-stop", "pi-service"} <= functions


def test_s7_attacks_plc_stop_and_delete_block_from_a_new_host(
    baseline_dir: Path, tmp_path: Path
) -> None:
    docs, _ = replay("s7comm_attacks.pcap", baseline_dir, tmp_path)
    high = [
        d
        for d in by_rule(docs, "OTS-ANOM-NEW-FUNCTION")
        if d["otsentry"]["anomaly"]["level"] == "high"
    ]
    assert len(high) == 1 and high[0]["source"]["ip"] == "10.10.30.66"
    functions = {i["function"] for i in high[0]["otsentry"]["anomaly"]["items"]}
    assert {"plc-stop", "delete-block", "force", "modify-variable"} <= functions
    assert "10.10.30.66 never used s7comm on 10.10.30.6" in high[0]["event"]["reason"]
    assert by_rule(docs, "OTS-ANOM-NEW-IDENTITY")[0]["source"]["ip"] == "10.10.30.66"


def test_opcua_attacks_new_method_call_nodes_and_writer(baseline_dir: Path, tmp_path: Path) -> None:
    docs, _ = replay("opcua_attacks.pcap", baseline_dir, tmp_path)
    [method] = by_rule(docs, "OTS-ANOM-NEW-METHOD")
    assert techniques(method) == {"T0871", "T0855"}
    assert method["otsentry"]["anomaly"]["item"] == {
        "client": "10.10.30.66",
        "server": "10.10.30.7",
        "object": "ns=2;i=1",
        "method": "ns=2;i=5",
    }
    assert "method ns=2;i=5 on object ns=2;i=1" in method["event"]["reason"]
    assert "which 10.10.30.20 called" in method["event"]["reason"]

    reads = [
        d for d in by_rule(docs, "OTS-ANOM-NEW-ADDRESS-RANGE") if d["source"]["ip"] == "10.10.30.66"
    ]
    [browse] = reads
    anomaly = browse["otsentry"]["anomaly"]
    assert anomaly["items_dropped"] > 0 and len(anomaly["items"]) == 50  # bounded per alert
    writers = {d["source"]["ip"] for d in by_rule(docs, "OTS-ANOM-NEW-WRITER")}
    assert writers == {"10.10.30.10", "10.10.30.66"}


def test_opcua_auth_downgrade_identity_and_certificates(baseline_dir: Path, tmp_path: Path) -> None:
    docs, _ = replay("opcua_auth.pcap", baseline_dir, tmp_path)
    downgrade = by_rule(docs, "OTS-ANOM-SECURITY-DOWNGRADE")
    policy = next(d for d in downgrade if d["otsentry"]["anomaly"]["item"]["attribute"] == "policy")
    assert policy["otsentry"]["anomaly"]["item"]["value"] == "Basic128Rsa15"
    assert policy["event"]["severity"] == 73 and "deprecated" in policy["event"]["reason"]
    assert techniques(policy) == {"T0830"}
    identities = {
        i["value"]
        for d in by_rule(docs, "OTS-ANOM-NEW-IDENTITY")
        for i in d["otsentry"]["anomaly"]["items"]
    }
    assert "username" in identities and "operator" in identities
    [cert] = by_rule(docs, "OTS-ANOM-CERTIFICATE-CHANGE")
    assert techniques(cert) == {"T0830", "T0849"}


def test_network_attacks_new_links_on_any_port_and_a_moved_mac(
    baseline_dir: Path, tmp_path: Path
) -> None:
    docs, _ = replay("network_attacks_modbus.pcap", baseline_dir, tmp_path)
    links = by_rule(docs, "OTS-ANOM-NEW-LINK")
    ports = {i["server_port"] for d in links for i in d["otsentry"]["anomaly"]["items"]}
    assert 502 in ports and any(p not in (102, 502, 4840) for p in ports)
    not_ics = [d for d in links if d["otsentry"]["anomaly"]["level"] == "medium"]
    assert not_ics and all(d["event"]["severity"] == 47 for d in not_ics)
    moved = [
        d
        for d in by_rule(docs, "OTS-ANOM-NEW-ASSET")
        if d["otsentry"]["anomaly"]["item"]["ip"] == "10.10.30.5"
    ]
    assert moved and "seen with MAC 00-80-F4-0C-30-05 only" in moved[0]["event"]["reason"]


def test_too_little_data_is_reported(baseline_dir: Path, tmp_path: Path) -> None:
    docs, stats = replay("s7comm_attacks.pcap", baseline_dir, tmp_path)
    assert docs and all(d["otsentry"]["anomaly"]["baseline"]["sufficient"] is False for d in docs)
    assert all("too little data" in d["event"]["reason"] for d in docs)
    segment = stats["detection"]["baseline"]["segments"][SEGMENT]
    assert segment["sufficient"] is False and "less than 300 s" in segment["too_little_data"][0]


def test_each_item_is_reported_once_per_run_and_repeats_fold(baseline_dir: Path) -> None:
    detector = Detector(store.load_dir(baseline_dir), window=0)
    alerts = []

    def hook(event: Any) -> list[Any]:
        found = detector(event)
        alerts.extend(found)
        return found

    capture = LAB_PCAPS / "modbus_attacks.pcap"
    feed([capture, capture], hook)  # the same attack twice
    alerts.extend(detector.flush())
    items = [str(a.anomaly["item"]) for a in alerts if a.anomaly is not None]
    assert len(items) == len(set(items))
    stats = detector.stats()
    assert stats["repeats_suppressed"] > 0
    assert stats["alerts"] == len(alerts)


def test_alerts_of_windows_closed_between_events_are_returned(baseline_dir: Path) -> None:
    detector = Detector(store.load_dir(baseline_dir), window=1.0)
    during: list[Any] = []

    def hook(event: Any) -> list[Any]:
        found = detector(event)
        during.extend(found)
        return found

    feed([LAB_PCAPS / "modbus_attacks.pcap"], hook)
    at_end = detector.flush()
    assert during  # windows closed by the periodic tick while events kept coming
    assert detector.stats()["alerts"] == len(during) + len(at_end)


def test_events_of_a_segment_without_baseline_are_counted(baseline_dir: Path) -> None:
    detector = Detector({})
    feed([LAB_PCAPS / "modbus_attacks.pcap"], detector)
    stats = detector.stats()
    assert stats["events_without_baseline"] == stats["events_checked"] > 0
    assert stats["segments_without_baseline"] == [SEGMENT]
    assert detector.flush() == []


def test_every_kind_has_techniques_known_to_attack_and_a_rule_id() -> None:
    attack = attack_ics()
    for kind, info in KINDS.items():
        assert all(attack.technique(t) is not None for t in info.techniques), kind
        assert rule_id(kind).startswith("OTS-ANOM-")
    assert set(KINDS) == set(AnomalyKind)
    assert rule_id(AnomalyKind.NEW_WRITER) == "OTS-ANOM-NEW-WRITER"
