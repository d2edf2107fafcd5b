"""Event documents: the per-flow cache of their common part, and their NDJSON lines."""

from __future__ import annotations

import json
from typing import Any

import pytest

import otsentry.ecs
from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.ecs import DocumentIds, _common, alert_doc, event_doc, event_line, observer_doc
from otsentry.model import Alert, AlertKind, Conn, Direction, Envelope, Event, Technique
from otsentry.sinks.ndjson import ndjson_line

CONN = Conn(
    "1:abc=",
    "tcp",
    "10.0.0.5",
    50212,
    "10.0.0.9",
    502,
    client_mac="00-1D-9C-AA-BB-01",
    server_mac=None,
    vlan=30,
    inner_vlan=7,
    segment="cell-3",
)
V6 = Conn("1:v6=", "tcp", "fe80::1", 40000, "fe80::2", 502, segment="")
OBSERVER = observer_doc("plant1", "eth1")


def events() -> list[Event]:
    return [
        Event(
            Envelope(1_700_000_000_123_456_789, CONN, "modbus", Direction.TRANSACTION),
            "modbus-read-holding-registers",
            {"unit_id": 1, "values": [1, 2], "objects": {"vendor_name": 'Schnëider "SE"'}},
            ("modbus.value_mismatch",),
            "success",
            1500,
        ),
        Event(Envelope(5, V6, "modbus", Direction.REQUEST), "modbus-diagnostics", {}, (), None),
        Event(Envelope(6, CONN, "s7comm", Direction.RESPONSE), "s7comm-x", {"b": b"\x00"}),
        # what the line writer takes the general way, or must escape
        Event(Envelope(7, CONN, "modbus", Direction.REQUEST), "modbus-x", {"direction": "up"}),
        Event(Envelope(8, CONN, "modbus"), 'a"ction\u00e9', {"anomalies": 1}, ("x.y",), "failure"),
        Event(Envelope(9, CONN, "opcua"), "opcua-x", {}, ("opcua.bad",), None, 0),
        Event(Envelope(10, CONN, "opcua"), "opcua-x", {"k": {1, 2}}, (), "unknown", 7),
    ]


def test_common_part_is_the_flows_own_whatever_the_cache_holds() -> None:
    for _ in range(2):  # the second round comes from the cache
        for ev in events():
            env = ev.envelope
            doc = event_doc(ev, OBSERVER, DocumentIds("plant1"))
            common = _common(env.conn, env.protocol, OBSERVER)
            assert {k: doc[k] for k in common} == common
    # a new Conn object never gets another's cached part, even at a recycled address
    for port in range(1000, 1200):
        conn = Conn("1:x", "tcp", "10.0.0.1", port, "10.0.0.2", 502)
        ev = Event(Envelope(1, conn, "modbus"), "modbus-x")
        assert event_doc(ev, OBSERVER, DocumentIds("p"))["source"]["port"] == port


def test_ndjson_line_is_the_document_as_json() -> None:
    ids = DocumentIds("plant1")
    for ev in events():
        doc = event_doc(ev, OBSERVER, ids)
        line = ndjson_line(doc)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        if "objects" in ev.fields:
            assert 'Schnëider \\"SE\\"'.encode() in line  # UTF-8 as is, quotes escaped
        expected: dict[str, Any] = json.loads(json.dumps(doc, default=str))
        assert json.loads(line) == expected


# -- alert documents ---------------------------------------------------------------------------


def _lab_events(tmp_path: Any) -> list[Event]:
    from pathlib import Path

    from otsentry.pipeline import Pipeline

    got: list[Event] = []
    root = Path(__file__).parent.parent / "pcaps"
    for path in sorted(root.glob("*.pcap")):
        pipeline = Pipeline(Config(), tmp_path / path.stem)
        pipeline.table.on_event = got.append
        with open_capture(path) as reader:
            pipeline.run(reader)
        pipeline.finish()
    return got


def test_event_line_is_the_event_document_byte_for_byte(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otsentry.ecs, "now_iso", lambda: "2026-01-01T00:00:00.000000Z")
    lab = _lab_events(tmp_path)
    assert {e.envelope.protocol for e in lab} == {"modbus", "s7comm", "opcua"}
    for batch in (events(), lab):
        doc_ids, line_ids = DocumentIds("plant1"), DocumentIds("plant1")
        for ev in batch:
            # the same conn object twice in a row: the second line comes from the cache
            for _ in range(2):
                assert event_line(ev, OBSERVER, line_ids) == ndjson_line(
                    event_doc(ev, OBSERVER, doc_ids)
                )


def rule_alert(**changes: Any) -> Alert:
    t0814 = Technique("T0814", "Denial of Service", ("TA0107",), ("Inhibit Response Function",))
    t0855 = Technique(
        "T1692.001", "Unauthorized Command Message", ("TA0106",), ("Impair Process Control",)
    )
    values: dict[str, Any] = {
        "ts": 1_700_000_000_123_456_789,
        "kind": AlertKind.RULE,
        "rule_id": "OTS-MODBUS-FORCE-LISTEN-ONLY",
        "rule_name": "Modbus force listen-only mode",
        "rule_version": "2",
        "severity": 73,
        "risk_score": 73.0,
        "message": "Modbus force listen-only mode from 10.0.0.5 to 10.0.0.9 unit 1",
        "events": (events()[0],),
        "techniques": (t0814, t0855),
        "attack_version": "18.0",
        "reason": "FC 8 sub-function 4 silences the server",
        "count": 3,
        "evidence_pcap": "evidence/x.pcap",
        "rule_reference": "https://attack.mitre.org/techniques/T0814/",
        "rule_category": "Inhibit Response Function",
        "last_ts": 1_700_000_042_000_000_000,
        "tags": ("attack.t0814", "ics"),
        "group": (("source.ip", "10.0.0.5"), ("destination.ip", "10.0.0.9")),
    }
    values.update(changes)
    return Alert(**values)


def test_alert_document_follows_the_ecs_contract() -> None:
    doc = alert_doc(rule_alert(), OBSERVER, DocumentIds("plant1"))
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123456Z"
    assert doc["message"] == "Modbus force listen-only mode from 10.0.0.5 to 10.0.0.9 unit 1"
    event = doc["event"]
    assert (event["kind"], event["category"], event["type"]) == (
        "alert",
        ["network", "intrusion_detection"],
        ["info"],
    )
    assert (event["start"], event["end"]) == (doc["@timestamp"], "2023-11-14T22:14:02.000000Z")
    assert event["action"] == "modbus-read-holding-registers"
    assert (event["severity"], event["risk_score"]) == (73, 73.0)
    assert event["reason"] == "FC 8 sub-function 4 silences the server"
    assert doc["rule"] == {
        "id": "OTS-MODBUS-FORCE-LISTEN-ONLY",
        "name": "Modbus force listen-only mode",
        "version": "2",
        "ruleset": "otsentry-ics",
        "reference": "https://attack.mitre.org/techniques/T0814/",
        "category": "Inhibit Response Function",
    }
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK for ICS",
        "tactic": {
            "id": ["TA0107", "TA0106"],
            "name": ["Inhibit Response Function", "Impair Process Control"],
        },
        "technique": {
            "id": ["T0814", "T1692.001"],
            "name": ["Denial of Service", "Unauthorized Command Message"],
            "reference": [
                "https://attack.mitre.org/techniques/T0814/",
                "https://attack.mitre.org/techniques/T1692/001/",
            ],
        },
    }
    # the trigger's flow and protocol record, as in its event document
    common = _common(CONN, "modbus", OBSERVER)
    assert {k: doc[k] for k in common if k != "tags"} == {
        k: v for k, v in common.items() if k != "tags"
    }
    assert doc["tags"] == ["ics", "modbus", "otsentry", "attack.t0814"]
    assert doc["otsentry"]["modbus"] == {
        "unit_id": 1,
        "values": [1, 2],
        "objects": {"vendor_name": 'Schnëider "SE"'},
        "direction": "transaction",
        "anomalies": ["modbus.value_mismatch"],
    }
    assert doc["otsentry"]["alert"] == {
        "kind": "rule",
        "count": 3,
        "attack_version": "18.0",
        "group": {"source.ip": "10.0.0.5", "destination.ip": "10.0.0.9"},
    }
    assert doc["otsentry"]["evidence"] == {"pcap": "evidence/x.pcap"}
    json.loads(ndjson_line(doc))  # serialisable as it is


def test_alert_document_without_extras() -> None:
    alert = rule_alert(
        kind=AlertKind.ANOMALY,
        techniques=(),
        reason=None,
        evidence_pcap=None,
        rule_reference=None,
        rule_category=None,
        last_ts=None,
        tags=(),
        group=(),
        count=1,
    )
    doc = alert_doc(alert, OBSERVER, DocumentIds("plant1"))
    assert doc["rule"]["ruleset"] == "otsentry-anomaly"
    assert "threat" not in doc and "reason" not in doc["event"]
    assert doc["event"]["end"] == doc["event"]["start"] == doc["@timestamp"]
    assert doc["otsentry"]["alert"] == {"kind": "anomaly", "count": 1, "attack_version": "18.0"}
    assert "evidence" not in doc["otsentry"]
    assert doc["tags"] == ["ics", "modbus", "otsentry"]
    # the event documents' shared tags list is not touched by an alert's
    assert _common(CONN, "modbus", OBSERVER)["tags"] == ["ics", "modbus", "otsentry"]


def test_alert_ids_are_deterministic() -> None:
    first = [alert_doc(rule_alert(ts=t), OBSERVER, DocumentIds("p"))["event"]["id"] for t in (1, 2)]
    again = [alert_doc(rule_alert(ts=t), OBSERVER, DocumentIds("p"))["event"]["id"] for t in (1, 2)]
    assert first == again and len(set(first)) == 2
