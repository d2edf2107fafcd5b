"""Aspects ``assets``, ``links`` and ``functions``: what they learn, report, accept and write."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otsentry.baseline.aspect import AnomalyKind
from otsentry.baseline.assets import AssetsAspect
from otsentry.baseline.functions import FunctionsAspect, _known_key, function_of, is_read
from otsentry.baseline.links import LinksAspect
from otsentry.model import Envelope, Event
from tests.baseline import lab_windows
from tests.baseline.conftest import events_of


def moved(event: Event, **conn: Any) -> Event:
    env = event.envelope
    return Event(
        Envelope(env.ts, replace(env.conn, **conn), env.protocol, env.direction),
        event.action,
        event.fields,
    )


def test_assets_new_ip_and_new_mac(normal_events: list[Event]) -> None:
    aspect = AssetsAspect()
    for e in normal_events:
        aspect.learn(e)
    read = next(e for e in normal_events if e.action == "modbus-read-coils")
    assert aspect.check(read) == []
    [dev] = aspect.check(moved(read, client_ip="10.10.30.99"))
    assert dev.kind is AnomalyKind.NEW_ASSET and dev.item == {
        "ip": "10.10.30.99",
        "mac": read.envelope.conn.client_mac,
    }
    assert "never seen in segment" in dev.reason
    [dev] = aspect.check(moved(read, server_mac="02-00-00-00-00-01"))
    assert (
        dev.reason
        == "10.10.30.5 was seen with MAC 00-80-F4-0C-30-05 only; now with 02-00-00-00-00-01"
    )
    assert (
        aspect.accept(dev.item) and aspect.check(moved(read, server_mac="02-00-00-00-00-01")) == []
    )
    data = aspect.to_data()
    assert AssetsAspect.from_data(data).to_data() == data
    assert [h["ip"] for h in data["hosts"]][-2:] == ["10.10.30.10", "10.10.30.20"]  # numeric order


def test_links_from_flows_and_protocol_events(normal_events: list[Event]) -> None:
    only_protocol = LinksAspect()
    for e in normal_events:
        if e.envelope.protocol != "network":
            only_protocol.learn(e)
    with_flows = LinksAspect()
    for e in normal_events:
        with_flows.learn(e)
    keys = set(with_flows.table.items)
    assert keys == set(only_protocol.table.items) and len(keys) == 4
    start = next(e for e in normal_events if e.action == "network-flow-start")
    [dev] = with_flows.check(moved(start, server_port=445))
    assert dev.kind is AnomalyKind.NEW_LINK and dev.effective_level == "medium"
    assert dev.item["server_port"] == 445
    assert dev.reason.startswith(
        f"{start.envelope.conn.client_ip} never talked to {start.envelope.conn.server_ip} on tcp/445"
    )
    ics = with_flows.check(moved(start, client_ip="10.10.30.66"))
    assert ics[0].effective_level == "high"
    assert with_flows.accept(dev.item) and with_flows.check(moved(start, server_port=445)) == []
    data = with_flows.to_data()
    assert LinksAspect.from_data(data).to_data() == data


def test_function_labels_and_reads(normal_events: list[Event]) -> None:
    labels = {
        function_of(e) for e in events_of("modbus_attacks.pcap") if e.envelope.protocol == "modbus"
    }
    assert (1, "8/0", "diagnostics (return_query_data)") in labels
    assert (1, "43/14", "encapsulated_interface_transport (read_device_identification)") in labels
    assert is_read("modbus", "3") and is_read("modbus", "43/14") and not is_read("modbus", "16")
    assert is_read("s7comm", "read-szl") and not is_read("s7comm", "plc-stop")
    assert (
        is_read("opcua", "Browse")
        and not is_read("opcua", "Call")
        and not is_read("opcua", "Write")
    )


def test_functions_new_on_a_link(normal_events: list[Event]) -> None:
    aspect = FunctionsAspect()
    for e in normal_events:
        if e.envelope.protocol in FunctionsAspect.protocols:
            aspect.learn(e)
    attack = [e for e in events_of("s7comm_attacks.pcap") if e.action == "s7comm-plc-stop"]
    stop = moved(attack[0], client_ip="10.10.30.10")  # from the HMI that never stopped it
    [dev] = aspect.check(stop)
    assert dev.kind is AnomalyKind.NEW_FUNCTION and dev.effective_level == "high"
    assert dev.item == {
        "client": "10.10.30.10",
        "server": "10.10.30.6",
        "protocol": "s7comm",
        "function": "plc-stop",
    }
    assert dev.reason.startswith("10.10.30.10 used s7comm functions cotp-connection-request")
    assert dev.reason.endswith("while learning; now plc-stop")
    assert aspect.accept(dev.item) and aspect.check(stop) == []
    data = aspect.to_data()
    assert FunctionsAspect.from_data(data).to_data() == data
    modbus = [
        f for f in data["functions"] if f["protocol"] == "modbus" and f["server"] == "10.10.30.5"
    ]
    assert {(f["unit"], f["function"]) for f in modbus} >= {(1, "3"), (1, "16"), (2, "6")}


def test_the_quick_key_of_a_modbus_request_is_the_full_ones() -> None:
    quick = 0
    for name in ("modbus_normal.pcap", "modbus_attacks.pcap", "modbus_abuse.pcap"):
        for event in lab_windows.events_of(name):
            known = _known_key(event)
            if known is not None:
                quick += 1
                full = FunctionsAspect.key_of(event)
                assert full is not None and full[0] == known
    assert quick > 100
