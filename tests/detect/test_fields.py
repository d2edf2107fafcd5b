"""Field accessors over events: envelope names, direction, anomalies, records, nested paths."""

from __future__ import annotations

import pytest

from otsentry.detect.fields import CONN_ATTRIBUTES, ENVELOPE_FIELDS, MISSING, FieldError, accessor
from otsentry.model import Conn, Direction, Envelope, Event


def make_event(protocol: str = "s7comm", **fields: object) -> Event:
    conn = Conn(
        community_id="1:abc",
        transport="tcp",
        client_ip="10.10.20.15",
        client_port=49822,
        server_ip="10.10.30.5",
        server_port=102,
        client_mac="00-1D-9C-AA-BB-01",
        server_mac=None,
        vlan=30,
        segment="cell-3",
    )
    env = Envelope(ts=5, conn=conn, protocol=protocol, direction=Direction.REQUEST)
    return Event(
        env,
        "s7comm-write-var",
        fields,
        anomalies=("s7comm.invalid_length",),
        outcome="failure",
        duration_ns=1200,
    )


def test_envelope_fields() -> None:
    ev = make_event()
    got = {name: get(ev) for name, get in ENVELOPE_FIELDS.items()}
    assert got == {
        "event.action": "s7comm-write-var",
        "event.outcome": "failure",
        "event.duration": 1200,
        "network.protocol": "s7comm",
        "network.transport": "tcp",
        "network.community_id": "1:abc",
        "network.vlan.id": 30,
        "source.ip": "10.10.20.15",
        "source.port": 49822,
        "source.mac": "00-1D-9C-AA-BB-01",
        "destination.ip": "10.10.30.5",
        "destination.port": 102,
        "destination.mac": MISSING,
        "labels.segment": "cell-3",
        "direction": "request",
        "anomalies": ("s7comm.invalid_length",),
    }


def test_absent_optional_envelope_values_are_missing() -> None:
    ev = make_event()
    ev.outcome = None
    ev.duration_ns = None
    ev.anomalies = ()
    for name in ("event.outcome", "event.duration", "anomalies"):
        assert accessor(name)(ev) is MISSING


def test_short_names_read_the_record() -> None:
    ev = make_event(function=5, block=None)
    assert accessor("function")(ev) == 5
    assert accessor("block")(ev) is MISSING  # null is missing
    assert accessor("nothing")(ev) is MISSING


def test_nested_paths_collect_through_lists() -> None:
    ev = make_event(
        items=[{"area": 132, "db": 1}, {"area": 130}, {"db": 7}],
        connection={"rack": 0, "slot": 2},
        values=[[1, 2], [3]],
    )
    assert accessor("items.area")(ev) == [132, 130]
    assert accessor("items.db")(ev) == [1, 7]
    assert accessor("items.nope")(ev) is MISSING
    assert accessor("connection.slot")(ev) == 2
    assert accessor("connection.slot.x")(ev) is MISSING
    assert accessor("values")(ev) == [[1, 2], [3]]


def test_prefixed_record_fields_only_for_their_protocol() -> None:
    ev = make_event(function=5)
    assert accessor("otsentry.s7comm.function")(ev) == 5
    assert accessor("otsentry.modbus.function")(ev) is MISSING
    plus = make_event("s7comm_plus", function="SetVariable")
    assert accessor("otsentry.s7comm_plus.function")(plus) == "SetVariable"


@pytest.mark.parametrize(
    "name", ["event.kind", "source.address", "network.vlan", "otsentry.dnp3.x", "otsentry.modbus"]
)
def test_unknown_envelope_or_protocol_names_are_refused(name: str) -> None:
    with pytest.raises(FieldError):
        accessor(name)


def test_conn_attributes_are_what_the_field_readers_read() -> None:
    event = make_event()
    conn = event.envelope.conn
    assert set(CONN_ATTRIBUTES) <= set(ENVELOPE_FIELDS)
    for field, attr in CONN_ATTRIBUTES.items():
        value = getattr(conn, attr)
        assert ENVELOPE_FIELDS[field](event) == (MISSING if value is None else value), field
