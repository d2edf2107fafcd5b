"""The learning hook: per-segment routing, counts, the too-little-data verdict, bounds."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from otsentry.baseline import store
from otsentry.baseline.learner import Learner
from otsentry.baseline.run import feed
from otsentry.baseline.segment import Sufficiency
from otsentry.config import Config, SegmentConfig
from tests.baseline.conftest import NORMAL, SEGMENT, learn
from tests.conftest import LAB_PCAPS


def test_what_the_normal_captures_teach() -> None:
    [baseline] = learn()
    assert baseline.segment == SEGMENT
    data = store.to_data(baseline)
    learning = data["learning"]
    assert learning["sources"] == ["modbus_normal.pcap", "opcua_normal.pcap", "s7comm_normal.pcap"]
    assert set(learning["events_by_protocol"]) == {"modbus", "s7comm", "opcua", "network"}
    assert learning["events"] == sum(learning["events_by_protocol"].values())
    assert learning["packets"] > 1_000 and learning["bytes"] > learning["packets"] * 50
    aspects = data["aspects"]
    hosts = {h["ip"]: h for h in aspects["assets"]["hosts"]}
    assert set(hosts) == {
        "10.10.30.5",
        "10.10.30.6",
        "10.10.30.7",
        "10.10.30.8",
        "10.10.30.10",
        "10.10.30.20",
    }
    assert hosts["10.10.30.10"]["roles"] == ["modbus-client", "s7comm-client"]
    links = {
        (x["client"], x["server"], x["server_port"]): x["protocols"]
        for x in aspects["links"]["links"]
    }
    assert links == {
        ("10.10.30.10", "10.10.30.5", 502): ["modbus"],
        ("10.10.30.10", "10.10.30.8", 502): ["modbus"],
        ("10.10.30.10", "10.10.30.6", 102): ["s7comm"],
        ("10.10.30.20", "10.10.30.7", 4840): ["opcua"],
    }
    functions = {(f["server"], f["function"]) for f in aspects["functions"]["functions"]}
    assert {
        ("10.10.30.5", "3"),
        ("10.10.30.5", "16"),
        ("10.10.30.6", "read-var"),
        ("10.10.30.7", "Call"),
    } <= functions
    writes = {
        (r["unit"], r["table"], tuple(r["ranges"]))
        for r in aspects["addresses"]["ranges"]
        if r["server"] == "10.10.30.5" and r["op"] == "write"
    }
    assert writes == {
        (1, "coils", (4, "8-15")),
        (1, "holding_registers", (0, "10-13")),
        (2, "holding_registers", (0,)),
    }
    assert aspects["addresses"]["methods"][0]["method"] == "ns=2;i=5"
    facts = {(f["attribute"], f["value"]) for f in aspects["security"]["opcua_endpoints"]}
    assert facts == {("policy", "None"), ("mode", "None"), ("token", "anonymous")}
    assert aspects["security"]["s7_engineering_stations"] == []  # the HMI connects as "op"


def test_links_come_from_all_traffic_not_only_ics() -> None:
    [baseline] = learn((LAB_PCAPS / "network_attacks_modbus.pcap",))
    ports = {x["server_port"] for x in store.to_data(baseline)["aspects"]["links"]["links"]}
    assert {502, 102} <= ports and len(ports - {102, 502, 4840}) > 5


def test_too_little_data_verdict_is_stored_and_can_be_met() -> None:
    [short] = learn()
    assert not short.info.sufficient
    assert short.info.too_little_data == ["60.606 s of traffic, less than 300 s"]
    [enough] = learn(sufficiency=Sufficiency(min_events=100, min_seconds=60))
    assert enough.info.sufficient and store.to_data(enough)["learning"]["too_little_data"] == []
    [few] = learn((NORMAL[2],), Sufficiency(min_events=1_000, min_seconds=1))
    assert few.info.too_little_data == [f"{few.info.events} events, fewer than 1000"]


def test_events_are_routed_to_their_segment(tmp_path: Path) -> None:
    config = Config(
        segments=(SegmentConfig(name="opcua cell", cidrs=(ip_network("10.10.30.7/32"),)),)
    )
    learner = Learner()
    feed(list(NORMAL), learner, config)
    baselines = {b.segment: b for b in learner.finish()}
    assert set(baselines) == {"opcua cell", SEGMENT}
    opcua = baselines["opcua cell"].info.events_by_protocol
    assert set(opcua) == {"opcua", "network"}
    assert "opcua" not in baselines[SEGMENT].info.events_by_protocol
    written = store.save_all(baselines.values(), tmp_path)
    assert [p.name for p in written] == ["10.10.30.0_24.yaml", "opcua_cell.yaml"]
    assert set(store.load_dir(tmp_path)) == {"opcua cell", SEGMENT}


def test_segments_beyond_the_cap_are_counted_not_kept() -> None:
    config = Config(
        segments=(SegmentConfig(name="opcua cell", cidrs=(ip_network("10.10.30.7/32"),)),)
    )
    learner = Learner(max_segments=1)
    feed(list(NORMAL), learner, config)
    assert len(learner.segments) == 1
    assert learner.stats()["dropped_events"] > 0
    assert learner.stats()["events"] + learner.dropped_events > 700
