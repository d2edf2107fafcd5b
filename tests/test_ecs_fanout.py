"""Event lines and document ids built piecewise give what the plain way gives, byte for byte."""

from __future__ import annotations

import itertools
import uuid
from types import MappingProxyType
from typing import Any

import pytest

import otsentry.ecs
from otsentry.ecs import DocumentIds, event_doc, event_line, observer_doc
from otsentry.model import Conn, Direction, Envelope, Event
from otsentry.sinks.ndjson import ndjson_line

NAMESPACE = uuid.UUID("6a0b7c53-52f4-4b8f-9f38-5d6c4f0e7a11")
CONN = Conn("1:abc=", "tcp", "10.0.0.5", 50212, "10.0.0.9", 502, segment="cell-3")
OTHER = Conn("1:def=", "udp", "10.0.0.6", 40000, "10.0.0.9", 4840)
OBSERVER = observer_doc("plant1", "eth1")


def test_ids_are_the_uuid5_of_the_documents_name() -> None:
    for sensor in ("plant1", "Zürich-Nord", ""):
        ids = DocumentIds(sensor)
        for n, (kind, ts, flow) in enumerate(
            itertools.product(
                ("event", "alert", "asset"), (0, 1_700_000_000_123_456_789), ("", "1:x=")
            ),
            start=1,
        ):
            got = ids.next(kind, ts, flow) if n % 2 else ids.next_bytes(kind, ts, flow).decode()
            assert got == str(uuid.uuid5(NAMESPACE, f"{sensor}|{kind}|{flow}|{ts}|{n}"))


def _events() -> list[Event]:
    ts = 1_700_000_000_000_000_000
    out = []
    # around millisecond and second boundaries, before the epoch too
    for t in (ts, ts + 999, ts + 1_000, ts + 999_999, ts + 1_000_000, ts + 999_999_999, 0, -1):
        out.append(Event(Envelope(t, CONN, "modbus", Direction.REQUEST), "modbus-x", {"a": 1}))
    out += [
        # not a dict, a plain string direction, a direction no Direction equals
        Event(Envelope(ts, CONN, "modbus"), "modbus-x", MappingProxyType({"a": 1})),
        Event(Envelope(ts, CONN, "modbus", "request"), "modbus-x", {"a": 1}),  # type: ignore[arg-type]
        Event(Envelope(ts, CONN, "modbus", "sideways"), "modbus-x", {"a": 1}),  # type: ignore[arg-type]
        # outcomes and durations of every shape
        Event(Envelope(ts, OTHER, "opcua"), "opcua-x", {}, ("a.b", "c.d"), "", 0),
        Event(Envelope(ts, OTHER, "opcua"), "opcua-x", {}, (), 3, 1.5),  # type: ignore[arg-type]
        Event(Envelope(ts, OTHER, "opcua"), "opcua-x", {"k": 1}, (), "success", True),
        Event(Envelope(ts, OTHER, "opcua"), "opcua-y", {"k": [1, {"n": None}]}, ("x",), "failure"),
        # the same flow under another protocol: another cached part
        Event(Envelope(ts, OTHER, "s7comm"), "opcua-x", {"k": 1}, (), "success", 2),
    ]
    return out


def test_event_lines_are_the_documents_whatever_the_caches_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = ["2026-01-01T00:00:00.000000Z"]
    monkeypatch.setattr(otsentry.ecs, "now_iso", lambda: now[0])
    for observer in (OBSERVER, observer_doc("plant2")):
        doc_ids, line_ids = DocumentIds("plant1"), DocumentIds("plant1")
        for i, ev in enumerate(_events() * 2):
            if i % 3 == 0:  # a new text now and then, the same text object in between
                now[0] = f"2026-01-01T00:00:{i:02d}.000000Z"
            doc: dict[str, Any] = event_doc(ev, observer, doc_ids)
            assert event_line(ev, observer, line_ids) == ndjson_line(doc)
