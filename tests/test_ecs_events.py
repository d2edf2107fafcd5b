"""Event documents: the per-flow cache of their common part, and their NDJSON lines."""

from __future__ import annotations

import json
from typing import Any

from otsentry.ecs import DocumentIds, _common, event_doc, observer_doc
from otsentry.model import Conn, Direction, Envelope, Event
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
