"""Network events (flows starting and ending, ARP bindings changing) from real stages."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from otsentry.capture import open_capture
from otsentry.capture.base import LINKTYPE_ETHERNET
from otsentry.config import Config
from otsentry.ecs import DocumentIds, event_doc, observer_doc
from otsentry.flow.table import FlowTable
from otsentry.model import Event
from otsentry.netevents import (
    ARP_CONFLICT,
    FLOW_END,
    FLOW_START,
    IP_MAC_CHANGE,
    SENDER_MAC_MISMATCH,
    NetworkEvents,
    virtual_router_mac,
)
from otsentry.stages import configured_registry, decoder_for, flow_table_for
from tests.conftest import capture_path, lab_pcaps

SECOND = 1_000_000_000
HMI, PLC, ROGUE = "10.10.30.10", "10.10.30.5", "10.10.30.66"
HMI_MAC, PLC_MAC, ROGUE_MAC = "00:30:de:4b:30:0a", "00:80:f4:0c:30:05", "02:42:de:ad:be:ef"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def ecs(mac: str) -> str:
    return mac.replace(":", "-").upper()


class Sensor:
    """The decoder, flow table and NetworkEvents wired as the pipeline wires them."""

    def __init__(self, **limits: Any) -> None:
        self.config = Config()
        self.events: list[Event] = []  # network events only
        self.protocol_events: list[Event] = []
        self.net = NetworkEvents(self.events.append, self.config.segment_for, **limits)
        self.decoder = decoder_for(self.config, on_arp=self.net.arp)
        self.table: FlowTable = flow_table_for(
            self.config,
            configured_registry(self.config),
            self.protocol_events.append,
            on_flow_start=self.net.flow_start,
            on_flow_end=self.net.flow_end,
        )
        self.ts = 0
        self.decoded = 0

    def feed(self, frame: bytes, ts: int, linktype: int = LINKTYPE_ETHERNET) -> None:
        self.ts = ts
        pkt = self.decoder.decode(linktype, frame, ts)
        if pkt is not None:
            self.decoded += 1
            self.table.packet(pkt, ts, frame)

    def replay(self, path: Path) -> None:
        with open_capture(path) as frames:
            for ts, linktype, data in frames:
                self.feed(data, ts, linktype)
        self.table.close_all(self.ts)

    def actions(self, *names: str) -> list[Event]:
        return [e for e in self.events if e.action in names]


def who_has(asker_ip: str, asker_mac: str, ip: str) -> bytes:
    return bytes(
        Ether(src=asker_mac, dst=BROADCAST) / ARP(op=1, hwsrc=asker_mac, psrc=asker_ip, pdst=ip)
    )


def is_at(ip: str, mac: str, to_ip: str, to_mac: str, eth_src: str | None = None) -> bytes:
    return bytes(
        Ether(src=eth_src or mac, dst=to_mac)
        / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=to_mac, pdst=to_ip)
    )


def announce(ip: str, mac: str, op: int = 1) -> bytes:
    """A gratuitous ARP (sender IP = target IP)."""
    target = "00:00:00:00:00:00" if op == 1 else BROADCAST
    return bytes(
        Ether(src=mac, dst=BROADCAST) / ARP(op=op, hwsrc=mac, psrc=ip, hwdst=target, pdst=ip)
    )


def modbus_session(ts: int) -> list[tuple[bytes, int]]:
    """HMI polls the PLC once: handshake, read holding registers, its response."""

    def seg(c2s: bool, flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        src, dst, sport, dport = (HMI, PLC, 49822, 502) if c2s else (PLC, HMI, 502, 49822)
        mac_s, mac_d = (HMI_MAC, PLC_MAC) if c2s else (PLC_MAC, HMI_MAC)
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
        return bytes(Ether(src=mac_s, dst=mac_d) / IP(src=src, dst=dst) / tcp / data)

    req = bytes.fromhex("000100000006010300000002")
    rsp = bytes.fromhex("00010000000701030400070008")
    frames = [
        seg(True, "S", 1000, 0),
        seg(False, "SA", 5000, 1001),
        seg(True, "A", 1001, 5001),
        seg(True, "PA", 1001, 5001, req),
        seg(False, "PA", 5001, 1013, rsp),
    ]
    return [(f, ts + i * 1_000_000) for i, f in enumerate(frames)]


# -- flows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", lab_pcaps(), ids=lambda p: p.name)
def test_lab_flows_each_start_and_end_once_with_their_counts(path: Path) -> None:
    s = Sensor()
    s.replay(path)
    starts, ends = s.actions(FLOW_START), s.actions(FLOW_END)
    assert len(starts) == len(ends) == s.table.flows_total > 0
    assert {e.envelope.protocol for e in s.events} == {"network"}
    if not path.name.startswith("network_attacks"):  # the ARP spoofing scenario
        assert not s.actions(IP_MAC_CHANGE, ARP_CONFLICT)
    moved = sum(e.fields["packets_to_server"] + e.fields["packets_to_client"] for e in ends)
    assert moved == s.decoded
    by_flow = {e.envelope.conn.community_id: e for e in ends}
    for start in starts:
        end = by_flow[start.envelope.conn.community_id]
        assert start.envelope.conn is end.envelope.conn  # one Conn per flow
        assert start.envelope.ts <= end.envelope.ts
        assert end.duration_ns == round(end.fields["duration"] * SECOND)
    protocol_conns = {id(e.envelope.conn) for e in s.protocol_events}
    assert protocol_conns <= {id(e.envelope.conn) for e in starts}
    assert s.net.stats()["flow_starts"] == len(starts)


def test_modbus_lab_flows() -> None:
    s = Sensor()
    s.replay(Path(__file__).parents[1] / "pcaps" / "modbus_normal.pcap")
    (start, _) = s.actions(FLOW_START)
    assert dict(start.fields) == {
        "transport": "tcp",
        "server_port": 502,
        "protocol": "modbus",
        "ics_service": "modbus",
        "roles_from": "handshake",
        "syn": True,
        "vlan": None,
    }
    assert (start.envelope.conn.client_ip, start.envelope.conn.server_ip) == (HMI, PLC)
    ends = s.actions(FLOW_END)
    assert {(e.fields["state"], e.fields["reason"], e.outcome) for e in ends} == {
        ("established", "fin", "success")
    }
    assert all(e.fields["bytes_to_server"] and e.fields["bytes_to_client"] for e in ends)


def test_ics_scan_shows_in_flow_events() -> None:
    """A sweep of 502 over twenty addresses (half refuse, half never answer), then one PLC's
    ports: the events a scan rule counts."""
    s = Sensor()
    ts = SECOND
    for host in range(1, 21):
        dst = f"10.10.30.{100 + host}"
        syn = Ether() / IP(src=ROGUE, dst=dst) / TCP(sport=40000 + host, dport=502, flags="S")
        s.feed(bytes(syn), ts)
        if host % 2:
            rst = Ether() / IP(src=dst, dst=ROGUE) / TCP(sport=502, dport=40000 + host, flags="RA")
            s.feed(bytes(rst), ts + 1000)
        ts += 10_000_000
    for port in (102, 502, 4840, 20000, 44818):
        syn = Ether() / IP(src=ROGUE, dst=PLC) / TCP(sport=41000, dport=port, flags="S")
        s.feed(bytes(syn), ts)
        ts += 10_000_000
    s.table.close_all(ts)
    starts = s.actions(FLOW_START)
    sweep = [e for e in starts if e.fields["server_port"] == 502]
    assert len({e.envelope.conn.server_ip for e in sweep}) == 21
    assert {e.envelope.conn.client_ip for e in starts} == {ROGUE}
    assert all(e.fields["syn"] for e in starts)
    ports = [e.fields["ics_service"] for e in starts if e.envelope.conn.server_ip == PLC]
    assert ports == ["s7comm", "modbus", "opcua", "dnp3", "enip"]
    states = [e.fields["state"] for e in s.actions(FLOW_END)]
    assert states.count("rejected") == 10 and states.count("unanswered") == 15
    assert {e.outcome for e in s.actions(FLOW_END)} == {"failure"}


# -- ARP --------------------------------------------------------------------------------------


def test_arp_spoofing_is_a_change_then_one_conflict_per_interval() -> None:
    s = Sensor(report_interval=60.0)
    s.feed(who_has(HMI, HMI_MAC, PLC), 0)
    s.feed(is_at(PLC, PLC_MAC, HMI, HMI_MAC), 1_000_000)
    for frame, ts in modbus_session(SECOND):
        s.feed(frame, ts)
    assert s.net.binding("10.10.30.0/24", PLC) == ecs(PLC_MAC)

    # the rogue host poisons the HMI (PLC's IP) and the PLC (HMI's IP), unsolicited
    t = 10 * SECOND
    s.feed(is_at(PLC, ROGUE_MAC, HMI, HMI_MAC), t)
    s.feed(is_at(HMI, ROGUE_MAC, PLC, PLC_MAC), t + 1000)
    first, second = s.actions(IP_MAC_CHANGE)
    assert dict(first.fields) == {
        "ip": PLC,
        "old_mac": ecs(PLC_MAC),
        "new_mac": ecs(ROGUE_MAC),
        "arp_op": "reply",
        "gratuitous": False,
        "old_mac_idle_seconds": 9.999,
        "old_mac_held_seconds": 9.999,
        "changes": 1,
        "solicited": False,
        "virtual_mac": "",
        "new_mac_ips": 1,
        "ics_protocols": ["modbus"],  # the PLC answered Modbus on a flow still open
    }
    conn = first.envelope.conn
    assert (conn.transport, conn.client_ip, conn.client_mac, conn.server_ip) == (
        "arp",
        PLC,
        ecs(ROGUE_MAC),
        HMI,
    )
    assert (conn.client_port, conn.server_port, conn.segment) == (0, 0, "10.10.30.0/24")
    assert first.envelope.protocol == "network" and first.anomalies == ()
    assert second.fields["ip"] == HMI and second.fields["new_mac_ips"] == 2
    assert second.fields["ics_protocols"] == []

    # the HMI asks for the PLC (taking its own address back) and the PLC answers itself
    t += SECOND
    s.feed(who_has(HMI, HMI_MAC, PLC), t)
    s.feed(is_at(PLC, PLC_MAC, HMI, HMI_MAC), t + 500_000)
    hmi_back, conflict = s.actions(ARP_CONFLICT)
    assert (hmi_back.fields["ip"], hmi_back.fields["arp_op"]) == (HMI, "request")
    assert "solicited" not in hmi_back.fields
    assert conflict.fields["ip"] == PLC and conflict.fields["solicited"] is True
    assert (conflict.fields["old_mac"], conflict.fields["new_mac"]) == (
        ecs(ROGUE_MAC),
        ecs(PLC_MAC),
    )
    assert (conflict.fields["flips"], conflict.fields["suppressed"]) == (1, 0)

    # the tug of war goes on every 2 s for 70 s: one more conflict event, after the interval
    for _ in range(35):
        t += 2 * SECOND
        s.feed(is_at(PLC, ROGUE_MAC, HMI, HMI_MAC), t)
        s.feed(is_at(PLC, PLC_MAC, HMI, HMI_MAC), t + SECOND)
    conflicts = [e for e in s.actions(ARP_CONFLICT) if e.fields["ip"] == PLC]
    assert len(conflicts) == 2
    assert conflicts[1].envelope.ts - conflicts[0].envelope.ts >= 60 * SECOND
    assert conflicts[1].fields["flips"] == conflicts[1].fields["suppressed"] + 2
    stats = s.net.stats()
    assert stats["arp_conflicts"] == 3
    assert stats["arp_conflicts_suppressed"] == 70 - 1  # every flip in the loop but one
    assert stats["ip_mac_changes"] == 2
    assert len(s.actions(IP_MAC_CHANGE)) == 2


def test_sender_mac_that_is_not_the_frame_source_is_an_anomaly() -> None:
    s = Sensor()
    s.feed(announce(PLC, PLC_MAC), 0)
    s.feed(is_at(PLC, ROGUE_MAC, HMI, HMI_MAC, eth_src=HMI_MAC), SECOND)
    (change,) = s.actions(IP_MAC_CHANGE)
    assert change.anomalies == (SENDER_MAC_MISMATCH,)
    assert s.net.stats()["arp"]["sender_mac_mismatch"] == 1


def test_gratuitous_announcements_and_renumbering() -> None:
    """A host that took over an address days after its last holder went quiet: still reported,
    with the old binding's idle time for the rule to weigh; coming back days later is another
    change, not a conflict."""
    day = 86_400 * SECOND
    s = Sensor()
    s.feed(announce("10.10.30.50", PLC_MAC, op=1), 0)
    s.feed(announce("10.10.30.50", ROGUE_MAC, op=2), 2 * day)
    s.feed(announce("10.10.30.50", PLC_MAC, op=1), 5 * day)
    first, second = s.actions(IP_MAC_CHANGE)
    assert first.fields["gratuitous"] and first.fields["arp_op"] == "reply"
    assert "solicited" in first.fields and first.fields["solicited"] is False
    assert first.fields["old_mac_idle_seconds"] == 2 * 86_400
    assert second.fields["changes"] == 2 and "solicited" not in second.fields
    assert not s.actions(ARP_CONFLICT)
    assert s.net.stats()["arp"]["gratuitous"] == 3


def test_first_hop_redundancy_macs_are_named() -> None:
    assert virtual_router_mac(bytes.fromhex("00005e00010a")) == "vrrp"
    assert virtual_router_mac(bytes.fromhex("00000c07ac01")) == "hsrp"
    assert virtual_router_mac(bytes.fromhex("00000c9ff001")) == "hsrp"
    assert virtual_router_mac(bytes.fromhex("0007b4000102")) == "glbp"
    for other in ("00005e00020a", "00000c9f0001", "00000c07ab01", "0007b4010102", "0080f40c3005"):
        assert virtual_router_mac(bytes.fromhex(other)) == ""
    s = Sensor()
    gw = "10.10.30.1"
    s.feed(announce(gw, "00:1b:1b:00:00:01"), 0)
    s.feed(announce(gw, "00:00:5e:00:01:0a"), SECOND)  # VRRP took the address over
    (change,) = s.actions(IP_MAC_CHANGE)
    assert change.fields["virtual_mac"] == "vrrp"


def test_probes_and_impossible_senders_bind_nothing() -> None:
    s = Sensor()
    probe = Ether(src=PLC_MAC, dst=BROADCAST) / ARP(op=1, hwsrc=PLC_MAC, psrc="0.0.0.0", pdst=PLC)
    s.feed(bytes(probe), 0)
    for mac, ip in (
        (BROADCAST, PLC),
        ("01:00:5e:00:00:01", PLC),
        ("00:00:00:00:00:00", PLC),
        (ROGUE_MAC, "224.0.0.1"),
        (ROGUE_MAC, "255.255.255.255"),
    ):
        s.feed(is_at(ip, mac, HMI, HMI_MAC), SECOND)
    stats = s.net.stats()
    assert stats["bindings"] == 0
    assert (stats["arp"]["probes"], stats["arp"]["invalid_sender"]) == (1, 5)
    s.feed(announce(PLC, PLC_MAC), 2 * SECOND)
    s.feed(bytes(probe), 3 * SECOND)  # a probe for a bound address changes nothing
    assert not s.events and s.net.stats()["bindings"] == 1


def test_one_address_on_two_vlans_is_two_bindings() -> None:
    s = Sensor()
    for vlan, mac in ((10, PLC_MAC), (20, ROGUE_MAC), (10, PLC_MAC), (20, ROGUE_MAC)):
        arp = ARP(op=1, hwsrc=mac, psrc=PLC, pdst=PLC)
        s.feed(bytes(Ether(src=mac, dst=BROADCAST) / Dot1Q(vlan=vlan) / arp), SECOND)
    assert not s.events
    assert s.net.binding("10.10.30.0/24", PLC, vlan=10) == ecs(PLC_MAC)
    assert s.net.binding("10.10.30.0/24", PLC, vlan=20) == ecs(ROGUE_MAC)


def test_tables_are_bounded_and_count_evictions() -> None:
    s = Sensor(max_bindings=16, max_pending_requests=8, max_servers=4)
    for i in range(1000):
        ip = f"10.20.{i // 250}.{i % 250 + 1}"
        mac = f"00:11:22:33:{i // 256:02x}:{i % 256:02x}"
        s.feed(who_has(ip, mac, f"10.30.{i // 250}.{i % 250 + 1}"), i * SECOND)
    for i in range(20):
        syn = Ether() / IP(src=HMI, dst=f"10.10.30.{100 + i}") / TCP(dport=502, flags="S")
        s.feed(bytes(syn), 2000 * SECOND + i)
    stats = s.net.stats()
    assert (stats["bindings"], stats["bindings_evicted"]) == (16, 1000 - 16)
    assert (stats["pending_requests"], stats["pending_requests_evicted"]) == (8, 1000 - 8)
    assert stats["ics_servers_evicted"] == 20 - 4
    assert len(s.net._mac_ips) == 16  # the per-MAC counts follow the bindings out
    # an evicted binding is learned again, not reported as a change
    s.feed(who_has("10.20.0.1", ROGUE_MAC, HMI), 3000 * SECOND)
    assert not s.actions(IP_MAC_CHANGE)


def test_arp_events_render_as_ecs_documents() -> None:
    s = Sensor()
    s.feed(announce(PLC, PLC_MAC), 0)
    s.feed(announce(PLC, ROGUE_MAC), SECOND)
    doc = event_doc(s.events[0], observer_doc("lab"), DocumentIds("lab"))
    assert doc["network"]["transport"] == "arp" and doc["network"]["protocol"] == "network"
    assert doc["source"] == {"ip": PLC, "port": 0, "mac": ecs(ROGUE_MAC)}
    assert doc["otsentry"]["network"]["old_mac"] == ecs(PLC_MAC)


@pytest.mark.parametrize("path", lab_pcaps(), ids=lambda p: p.name)
def test_lab_bindings_are_the_arp_senders_tshark_sees(path: Path, tshark: str) -> None:
    out = subprocess.run(
        [tshark, "-r", str(path), "-Y", "arp", "-T", "fields"]
        + ["-e", "arp.src.proto_ipv4", "-e", "arp.src.hw_mac"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = dict(line.split("\t") for line in out.splitlines())
    s = Sensor()
    s.replay(path)
    assert expected
    for ip, mac in expected.items():
        assert s.net.binding(s.config.segment_for(ip), ip) == ecs(mac)
    assert s.net.stats()["bindings"] == len(expected)


def test_a_plant_capture_raises_no_arp_event(request: pytest.FixtureRequest) -> None:
    """mb2.pcap: 25 ARP packets of a real plant network, gratuitous announcements and an address
    conflict probe among them, none of them a binding change."""
    s = Sensor()
    s.replay(capture_path("shared/iti-ics-security-tools/pcaps/ModbusTCP/mb2.pcap", request))
    stats = s.net.stats()
    assert stats["arp"] == {
        "requests": 19,
        "replies": 6,
        "gratuitous": 8,
        "probes": 1,
        "invalid_sender": 0,
        "sender_mac_mismatch": 0,
    }
    assert not s.actions(IP_MAC_CHANGE, ARP_CONFLICT)
    states = [e.fields["state"] for e in s.actions(FLOW_END)]
    assert states.count("rejected") == 3  # three SYNs to 141.81.0.10:80, each answered by RST


def test_lab_arp_spoofing_and_scan(request: pytest.FixtureRequest) -> None:
    """The lab's attacker sweeps 502/102/4840, scans one PLC's ports, claims plc1's address for
    the HMI with forged replies, then restores the HMI's entry with the PLC's MAC from its own
    port."""
    s = Sensor()
    s.replay(capture_path("lab/network_attacks_modbus.pcap", request))
    attacker = "10.10.30.66"
    (change,) = s.actions(IP_MAC_CHANGE)
    assert (change.fields["ip"], change.fields["old_mac"]) == (PLC, ecs(PLC_MAC))
    assert change.envelope.conn.client_mac == change.fields["new_mac"] != ecs(PLC_MAC)
    assert change.fields["gratuitous"] and change.fields["solicited"] is False
    assert change.fields["ics_protocols"] == ["modbus"]
    (restore,) = s.actions(ARP_CONFLICT)
    assert (restore.fields["new_mac"], restore.fields["flips"]) == (ecs(PLC_MAC), 1)
    assert restore.fields["ics_protocols"] == ["modbus"]  # the scan's RSTs on 102/4840 are not
    assert restore.anomalies == (SENDER_MAC_MISMATCH,)  # sent from the attacker's port
    assert s.net.stats()["arp_conflicts_suppressed"] == 0
    scan = [e for e in s.actions(FLOW_START) if e.envelope.conn.client_ip == attacker]
    swept = {e.envelope.conn.server_ip for e in scan if e.fields["server_port"] == 502}
    assert len(swept) >= 5
    ports = {e.fields["server_port"] for e in scan if e.envelope.conn.server_ip == "10.10.30.6"}
    assert len(ports) >= 10
    ended = [e for e in s.actions(FLOW_END) if e.envelope.conn.client_ip == attacker]
    assert {"rejected", "established"} <= {e.fields["state"] for e in ended}
