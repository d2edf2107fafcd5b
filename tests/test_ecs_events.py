"""The NDJSON text path for events writes exactly the documents ``event_doc`` builds."""

from __future__ import annotations

import json
from typing import Any

from otsentry.ecs import DocumentIds, EventJson, event_doc, observer_doc
from otsentry.model import Conn, Direction, Envelope, Event

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


def without_created(doc: dict[str, Any]) -> dict[str, Any]:
    doc["event"].pop("created")
    return doc


def test_text_equals_event_doc() -> None:
    observer = observer_doc("plant1", "eth1")
    events = [
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
    ]
    text = EventJson(observer, DocumentIds("plant1"))
    ids = DocumentIds("plant1")
    for ev in events * 2:  # the second round comes from the per-flow cache
        line = text.line(ev)
        assert "\n" not in line
        expected = json.loads(json.dumps(event_doc(ev, observer, ids), default=str))
        assert without_created(json.loads(line)) == without_created(expected)
