"""Aspect ``addresses``: ranges per link and table, writers, OPC UA nodes and methods."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otsentry.baseline.addresses import AddressesAspect, modbus_accesses, s7_accesses
from otsentry.baseline.aspect import AnomalyKind
from otsentry.baseline.items import Ranges
from otsentry.model import Envelope, Event
from tests.baseline.conftest import events_of


def learned(events: list[Event]) -> AddressesAspect:
    aspect = AddressesAspect()
    for event in events:
        if event.envelope.protocol in AddressesAspect.protocols:
            aspect.learn(event)
    return aspect


def with_fields(event: Event, **changes: Any) -> Event:
    """The same event (same flow and time) with some protocol fields changed."""
    return Event(
        event.envelope, event.action, {**event.fields, **changes}, event.anomalies, event.outcome
    )


def from_client(event: Event, ip: str) -> Event:
    env = event.envelope
    conn = replace(env.conn, client_ip=ip)
    return Event(Envelope(env.ts, conn, env.protocol, env.direction), event.action, event.fields)


def test_ranges_merge_cover_and_stay_bounded() -> None:
    r = Ranges(cap=3)
    assert r.add(0, 9) and r.add(10, 12) and not r.add(3, 4)
    assert r.pairs() == [(0, 12)] and r.covers(5, 12) and not r.covers(5, 13)
    r.add(40, 40)
    r.add(100, 109)
    r.add(200, 200)  # a fourth range: the two closest join
    assert len(r) == 3 and r.covers(0, 40) and str(r) == "0-40, 100-109, 200"
    assert Ranges.from_data(r.as_data(), "x").pairs() == r.pairs()


def test_modbus_and_s7_accesses() -> None:
    fc23 = {
        "function_code": 23,
        "address": 0,
        "quantity": 2,
        "write_address": 63,
        "write_quantity": 3,
    }
    assert list(modbus_accesses(fc23)) == [
        ("holding_registers", "read", 0, 1),
        ("holding_registers", "write", 63, 65),
    ]
    assert list(modbus_accesses({"function_code": 6, "address": 7, "quantity": 1})) == [
        ("holding_registers", "write", 7, 7)
    ]
    assert list(modbus_accesses({"function_code": 8})) == []
    item = {
        "area": 132,
        "area_name": "data_block",
        "db": 2,
        "byte": 4,
        "length": 2,
        "transport_size_name": "real",
    }
    assert list(s7_accesses("s7comm-write-var", {"items": [item]})) == [
        ("data_block DB2", "write", 4, 11)
    ]
    assert list(s7_accesses("s7comm-read-szl", {"items": [item]})) == []


def test_a_known_writer_outside_its_ranges_is_a_new_address_range_t0836(
    normal_events: list[Event],
) -> None:
    aspect = learned(normal_events)
    write = next(e for e in normal_events if e.action == "modbus-write-multiple-registers")
    assert aspect.check(write) == []
    [dev] = aspect.check(with_fields(write, address=500, quantity=10))
    assert dev.kind is AnomalyKind.NEW_ADDRESS_RANGE
    assert dev.effective_techniques == ("T0836",) and dev.effective_level == "high"
    assert dev.reason == (
        "10.10.30.10 wrote unit 1 holding registers of 10.10.30.5 0, 10-13 only while learning; now 500-509"
    )
    assert dev.item["range"] == "500-509" and dev.item["op"] == "write"
    # a read outside the polled block: T0861, medium
    read = next(e for e in normal_events if e.action == "modbus-read-holding-registers")
    [dev] = aspect.check(with_fields(read, address=100, quantity=2))
    assert dev.effective_techniques == ("T0861", "T0801") and dev.effective_level == "medium"
    # accepting it makes it normal, and the file keeps it
    assert aspect.accept(dev.item)
    assert aspect.check(with_fields(read, address=100, quantity=2)) == []
    again = AddressesAspect.from_data(aspect.to_data())
    assert again.check(with_fields(read, address=100, quantity=2)) == []
    assert again.to_data() == aspect.to_data()


def test_a_write_from_a_host_that_never_wrote_is_a_new_writer(normal_events: list[Event]) -> None:
    aspect = learned(normal_events)
    write = next(e for e in normal_events if e.action == "modbus-write-single-register")
    [dev] = aspect.check(from_client(with_fields(write, address=40), "10.10.30.66"))
    assert dev.kind is AnomalyKind.NEW_WRITER and dev.effective_techniques == ("T0855", "T0848")
    assert dev.reason.startswith(
        "unit 1 holding registers of 10.10.30.5 were written by 10.10.30.10 only (10.10.30.10 wrote 0, 10-13); "
        "10.10.30.66, which never wrote to unit 1 of 10.10.30.5, wrote 40"
    )
    # the reader that is also a writer elsewhere is no new writer: .10 writes unit 1, not unit 7
    [dev] = aspect.check(with_fields(write, unit_id=7))
    assert dev.kind is AnomalyKind.NEW_WRITER and "nobody wrote to unit 7" in dev.reason


def test_opcua_nodes_and_methods(normal_events: list[Event]) -> None:
    aspect = learned(normal_events)
    call = next(e for e in normal_events if e.action == "opcua-call")
    assert aspect.check(call) == []
    other = with_fields(call, methods=[{"object_id": "ns=2;i=1", "method_id": "ns=2;i=99"}])
    [dev] = aspect.check(other)
    assert dev.kind is AnomalyKind.NEW_METHOD and dev.item["method"] == "ns=2;i=99"
    assert dev.reason == (
        "10.10.30.20 called ns=2;i=5 on ns=2;i=1 on 10.10.30.7 while learning; "
        "now method ns=2;i=99 on object ns=2;i=1 (which nobody called)"
    )
    write = next(e for e in normal_events if e.action == "opcua-write")
    [dev] = aspect.check(with_fields(write, nodes=[{"node_id": "ns=2;i=77"}]))
    assert dev.kind is AnomalyKind.NEW_ADDRESS_RANGE and dev.effective_techniques == ("T0836",)
    assert (
        dev.reason == "10.10.30.20 wrote nodes ns=2;i=4 of 10.10.30.7 while learning; now ns=2;i=77"
    )


def test_tables_are_bounded_and_count_what_they_drop() -> None:
    aspect = AddressesAspect(cap=2)
    for event in events_of("opcua_attacks.pcap"):
        if event.envelope.protocol == "opcua":
            aspect.learn(event)
    assert len(aspect.nodes) == 2 and aspect.to_data()["dropped"] > 100


def test_the_quick_modbus_check_passes_over_only_what_the_full_one_would(
    normal_events: list[Event],
) -> None:
    aspect = learned(normal_events)
    covered = uncovered = 0
    for name in ("modbus_normal.pcap", "modbus_attacks.pcap", "modbus_abuse.pcap"):
        for event in events_of(name):
            if event.envelope.protocol != "modbus":
                continue
            if aspect._modbus_covered(event):
                covered += 1
                assert aspect._check_accesses(event) == []
            elif aspect._check_accesses(event):
                uncovered += 1
    assert covered > 100 and uncovered > 0
