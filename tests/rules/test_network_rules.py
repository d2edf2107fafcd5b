"""The network rules on the network events of real captures, ahead of ``otsentry replay``.

The decoder, flow table and ``NetworkEvents`` are wired as the pipeline wires them and the
events (network and protocol, in packet-time order) go through the built-in pack's engine.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.detect.engine import RuleEngine
from otsentry.detect.loader import load_rules
from otsentry.model import Event
from otsentry.netevents import NetworkEvents
from otsentry.stages import configured_registry, decoder_for, flow_table_for
from tests.conftest import capture_path

ATTACKER = "10.10.30.66"


def rule_matches(path: Path) -> Counter[str]:
    """Rule id → matches, for every event the capture yields."""
    config = Config()
    events: list[Event] = []
    net = NetworkEvents(events.append, config.segment_for)
    decoder = decoder_for(config, on_arp=net.arp)
    table = flow_table_for(
        config,
        configured_registry(config),
        events.append,
        on_flow_start=net.flow_start,
        on_flow_end=net.flow_end,
    )
    last = 0
    with open_capture(path) as frames:
        for ts, linktype, data in frames:
            last = ts
            pkt = decoder.decode(linktype, data, ts)
            if pkt is not None:
                table.packet(pkt, ts, data)
    table.close_all(last)
    assert any(e.envelope.protocol == "network" for e in events)
    engine = RuleEngine(load_rules())
    found: Counter[str] = Counter()
    for event in sorted(events, key=lambda e: e.envelope.ts):
        for match in engine.match(event):
            found[match.rule.id] += 1
            if match.rule.id in ("OTS-NET-PORT-SCAN", "OTS-NET-ICS-HOST-SWEEP"):
                assert match.event.envelope.conn.client_ip == ATTACKER
    return found


def test_network_attacks_raise_the_network_rules(request: pytest.FixtureRequest) -> None:
    found = rule_matches(capture_path("lab/network_attacks_modbus.pcap", request))
    for rule_id in (
        "OTS-NET-ICS-HOST-SWEEP",
        "OTS-NET-PORT-SCAN",
        "OTS-NET-IP-MAC-CHANGE",
        "OTS-NET-ARP-SPOOFING",
        "OTS-ICS-NON-ICS-PAYLOAD",
    ):
        assert found[rule_id], rule_id
    # one spoofing episode: one change to the attacker's MAC, one conflict when it gives it back
    assert found["OTS-NET-IP-MAC-CHANGE"] == 1
    assert found["OTS-NET-ARP-SPOOFING"] == 1


@pytest.mark.parametrize(
    "capture",
    [
        "lab/modbus_normal.pcap",
        "lab/s7comm_normal.pcap",
        "lab/opcua_normal.pcap",
        "lab/modbus_attacks.pcap",
        "lab/s7comm_engineering.pcap",
    ],
)
def test_plant_traffic_raises_no_network_rule(capture: str, request: pytest.FixtureRequest) -> None:
    """Polling, reconnecting raw clients and engineering sessions are no scan or spoofing."""
    found = rule_matches(capture_path(capture, request))
    assert not [rule for rule in found if rule.startswith("OTS-NET-")]
