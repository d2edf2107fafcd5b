"""The per-event shortcuts decide as the general way does: group keys remembered per flow,
``|exists`` and ``anomalies`` read in place, the threshold as one comparison, evidence found by
flow keys alone."""

from __future__ import annotations

import gc
import socket
from pathlib import Path
from types import MappingProxyType
from typing import Any

from otsentry.capture import open_capture
from otsentry.decode import Decoder, FlowKey
from otsentry.detect.compile import compile_rule
from otsentry.detect.correlation import Correlator
from otsentry.detect.engine import RuleEngine
from otsentry.detect.evidence import EvidenceRecorder
from otsentry.detect.fields import ENVELOPE_FIELDS, FLOW_FIELDS
from otsentry.detect.fixtures import BASE_TS
from otsentry.model import Conn, Direction, Envelope, Event
from tests.conftest import LAB_PCAPS

S = 1_000_000_000


def rule(detection: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "OTS-TEST-FANOUT",
        "rev": 1,
        "title": "t",
        "status": "test",
        "level": "low",
        "logsource": {"protocol": "modbus"},
        "detection": detection,
        **extra,
    }


def sweep(op: str = "gte", threshold: int = 3, group_by: Any = None) -> dict[str, Any]:
    return rule(
        {"selection": {"unit_id|exists": True}, "condition": "selection"},
        correlation={
            "type": "value_count",
            "field": "unit_id",
            "group-by": ["source.ip", "destination.ip"],
            "timespan": "60s",
            "condition": {op: threshold},
        }
        | ({"group-by": group_by} if group_by else {}),
    )


def event(conn: Conn, seconds: float, fields: Any, anomalies: Any = ()) -> Event:
    envelope = Envelope(BASE_TS + round(seconds * S), conn, "modbus", Direction.TRANSACTION)
    return Event(envelope, "modbus-read-holding-registers", fields, anomalies)


def conn(client: str, server: str, port: int = 40000, **more: Any) -> Conn:
    return Conn("1:x=", "tcp", client, port, server, 502, **more)


def test_flow_fields_are_the_envelope_fields_a_conn_holds() -> None:
    assert set(ENVELOPE_FIELDS) > FLOW_FIELDS
    c = conn("10.0.0.1", "10.0.0.2", client_mac="00-00-00-00-00-01", vlan=7, segment="s")
    e, other = event(c, 0, {}), event(c, 5, {"unit_id": 1}, ("x",))
    for name in FLOW_FIELDS:  # the same for any two events of a flow
        assert ENVELOPE_FIELDS[name](e) == ENVELOPE_FIELDS[name](other)


def test_group_keys_per_flow_follow_the_hosts_not_the_conn_objects() -> None:
    engine = RuleEngine([compile_rule(sweep())])
    counts = []
    # three connections (three Conn objects) from one client to one server: one group
    for i, unit in enumerate((1, 2, 3)):
        hits = engine.match(event(conn("10.0.0.1", "10.0.0.2", 40000 + i), i, {"unit_id": unit}))
        counts.append(hits[0].count if hits else None)
    assert counts == [None, None, 3]
    assert not engine.match(event(conn("10.0.0.1", "10.0.0.3"), 4, {"unit_id": 9}))
    (corr,) = engine.correlators.values()
    assert list(corr.groups) == [("10.0.0.1", "10.0.0.3")]


def test_group_keys_per_flow_survive_recycled_conn_addresses() -> None:
    spec = compile_rule(sweep(threshold=1000)).correlation
    assert spec is not None
    corr = Correlator(spec)
    for i in range(100):  # Conn objects made and dropped: their ids come back
        c = conn(f"10.0.{i % 7}.1", f"10.1.{i % 5}.2")
        corr.observe(event(c, i / 100, {"unit_id": i}))
        assert corr.group_of(event(c, 0, {})) == (c.client_ip, c.server_ip)
        del c
        if i % 10 == 0:
            gc.collect()
    assert set(corr.groups) == {(f"10.0.{a}.1", f"10.1.{b}.2") for a in range(7) for b in range(5)}


def test_group_keys_of_other_fields_are_read_per_event() -> None:
    spec = compile_rule(sweep(group_by=["source.ip", "function_code"])).correlation
    assert spec is not None
    corr = Correlator(spec)
    c = conn("10.0.0.1", "10.0.0.2")
    assert corr.group_of(event(c, 0, {"function_code": 3})) == ("10.0.0.1", 3)
    assert corr.group_of(event(c, 0, {"function_code": 4})) == ("10.0.0.1", 4)
    assert corr.group_of(event(c, 0, {})) == ("10.0.0.1", None)


def test_threshold_gt_and_gte() -> None:
    for op, fires in (("gte", [None, None, 3]), ("gt", [None, None, None, 4])):
        engine = RuleEngine([compile_rule(sweep(op=op))])
        c = conn("10.0.0.1", "10.0.0.2")
        got = []
        for unit in range(len(fires)):
            hits = engine.match(event(c, unit, {"unit_id": unit}))
            got.append(hits[0].count if hits else None)
        assert got == fires


def test_exists_on_a_record_key_treats_null_as_absent() -> None:
    present = RuleEngine([compile_rule(rule({"s": {"unit_id|exists": True}, "condition": "s"}))])
    absent = RuleEngine([compile_rule(rule({"s": {"unit_id|exists": False}, "condition": "s"}))])
    c = conn("10.0.0.1", "10.0.0.2")
    cases = [
        ({"unit_id": 0}, True),
        ({"unit_id": False}, True),
        ({"unit_id": None}, False),
        ({}, False),
        (MappingProxyType({"unit_id": 1}), True),
    ]
    for fields, exists in cases:
        assert bool(present.match(event(c, 0, fields))) is exists, fields
        assert bool(absent.match(event(c, 0, fields))) is not exists, fields


def test_anomalies_pins_read_in_place() -> None:
    engine = RuleEngine(
        [compile_rule(rule({"s": {"anomalies": ["modbus.a", "modbus.b"]}, "condition": "s"}))]
    )
    c = conn("10.0.0.1", "10.0.0.2")
    for anomalies, hits in (
        ((), 0),
        (("modbus.c",), 0),
        (("modbus.c", "modbus.b"), 1),
        (["modbus.a"], 1),
        (("modbus.a", "modbus.b"), 1),  # one match, however many values hit
    ):
        assert len(engine.match(event(c, 0, {"unit_id": 1}, anomalies))) == hits, anomalies
        assert engine.tested_rules(event(c, 0, {}, anomalies)) == (
            ["OTS-TEST-FANOUT"] if hits else []
        )


def test_evidence_found_by_flow_keys_is_the_evidence_found_by_decoding(tmp_path: Path) -> None:
    """The pipeline's ring of flow keys (the fast scan back) and a ring of frames only (each
    decoded here) pick the same frames for every flow and trigger point."""
    with open_capture(LAB_PCAPS / "modbus_attacks.pcap") as reader:
        source = list(reader)
    decoder = Decoder()
    keyed = EvidenceRecorder(tmp_path / "keyed", packets_after=0, packets_before=5)
    plain = EvidenceRecorder(tmp_path / "plain", packets_after=0, packets_before=5)
    conns: dict[FlowKey, Conn] = {}
    for frame in source:
        pkt = decoder.decode(frame[1], frame[2], frame[0])
        keyed.ring.append(frame)
        keyed.keys.append(pkt[0] if pkt is not None else None)
        plain.ring.append(frame)
        if pkt is not None and pkt[0][5] == 6 and len(conns) < 40:
            client, cport, server, sport, _, _ = pkt[0]
            text = (
                socket.inet_ntop(socket.AF_INET, client),
                socket.inet_ntop(socket.AF_INET, server),
            )
            conns.setdefault(pkt[0], Conn("1:t", "tcp", text[0], cport, text[1], sport))
    assert len(conns) >= 10
    n = len(source)
    for i, c in enumerate(conns.values()):
        for at in (n, n * 2 // 3, n // 3 + i):
            assert keyed.start(c, f"R{i}", at) == plain.start(c, f"R{i}", at)
    names = sorted(p.name for p in (tmp_path / "plain" / "evidence").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "keyed" / "evidence").iterdir())
    for name in names:
        assert (tmp_path / "keyed" / "evidence" / name).read_bytes() == (
            tmp_path / "plain" / "evidence" / name
        ).read_bytes()
