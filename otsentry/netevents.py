"""Protocol-independent network events for the rule engine: flows starting and ending, ARP.

``NetworkEvents`` turns the flow table's hooks and the decoder's ARP packets into ``Event``
objects with ``network.protocol`` = ``network`` (``logsource: {protocol: network}`` in a rule).
They feed the rule engine only; ``events.ndjson`` keeps to protocol records.

- ``network-flow-start``: a TCP/UDP flow entered the flow table, ICS or not (scan rules count
  these: distinct servers per client on 502/102/4840, distinct ports per client and server).
  Fields: ``transport``, ``server_port``, ``protocol`` (the dissector bound by port, "" until a
  probe finds one), ``ics_service`` (the well-known ICS service of the server port, dissected or
  not: ``dnp3``, ``enip``…), ``roles_from``, ``syn`` (began with a SYN), ``vlan``. Time: the
  flow's first packet.
- ``network-flow-end``: the flow left the table. The same fields plus ``state`` (``rejected``,
  ``unanswered``, ``half_open``, ``established``, ``midstream``: see ``Flow.state``), ``reason``
  (``fin``, ``rst``, ``idle``, ``evicted``, ``end``), ``packets_to_server``,
  ``packets_to_client``, ``bytes_to_server``, ``bytes_to_client``, ``duration`` (s);
  ``event.duration`` in ns; ``event.outcome`` success / failure (rejected, unanswered) /
  unknown. Time: when the table ended the flow (an idle flow ends a sweep after its timeout).
- ``network-ip-mac-change``: ARP moved an IP to another MAC. Fields: ``ip``, ``old_mac``,
  ``new_mac``, ``arp_op`` (request / reply), ``gratuitous`` (sender IP = target IP, or a reply
  to the broadcast MAC), ``solicited`` (replies only: a request for it was seen in the last
  ``solicit_window`` s), ``old_mac_idle_seconds`` (since ARP last confirmed the old MAC),
  ``old_mac_held_seconds``, ``changes`` (for this IP so far), ``virtual_mac`` (``vrrp``,
  ``hsrp``, ``glbp`` when either MAC is a first-hop redundancy MAC, else ""), ``new_mac_ips``
  (addresses the new MAC now holds in the segment), ``ics_protocols`` (the ICS protocols the IP
  accepted connections for, from flows seen so far).
  Anomaly ``network.arp_sender_mac_mismatch`` when the Ethernet source is not the ARP sender.
- ``network-arp-conflict``: the same fields, when the IP goes back to the MAC it had before
  within ``conflict_window`` s: two hosts answer for one address, the pattern of ARP spoofing
  (and of a spoofing tool restoring caches). Reported at most once per ``report_interval`` s per
  IP; ``flips`` counts every return so far and ``suppressed`` those not reported since the
  last event.

The envelope of a flow event is the flow's ``Conn`` (client = source). An ARP event gets a
``Conn`` of its own: source = the sender (the IP whose binding moved, with its new MAC),
destination = the target IP and MAC (None when all zero), ports 0, ``transport`` ``arp``
(ECS ``network.transport`` is free text; ``arp`` is what an analyst filters on), no Community
ID (it is defined for IP flows only), segment from ``segment_for`` on the sender IP.

Choices made against false positives:
- Bindings come from ARP only (the sender of requests and replies), never from the MACs of IP
  packets, which carry the router's MAC for every off-segment address and would "change"
  whenever a route does.
- Bindings are kept per segment and outer VLAN: cells that reuse one address plan on several
  VLANs do not collide.
- ARP probes (sender 0.0.0.0, RFC 5227) and senders with a group, broadcast or zero MAC, or a
  0/8, multicast or broadcast IP, bind nothing (counted).
- DHCP renumbering, a replaced device and a NIC swap are real changes and are reported once,
  with ``old_mac_idle_seconds`` for the rule to weigh: a PLC that is polled is confirmed by ARP
  every minute or so, a renumbered address was quiet for hours. A return to an earlier MAC
  after ``conflict_window`` is a plain change, not a conflict.
- Redundant routers: with virtual MACs (VRRP/CARP, HSRP) a failover changes nothing; GLBP
  answers for one address with several virtual MACs by design, and keepalived without
  ``use_vmac`` moves the address between real MACs, so ``virtual_mac`` is named for the rule to
  exclude, and sites list such addresses in the rule's filter.
- Proxy ARP shows as one MAC holding many addresses (``new_mac_ips``); so does an attacker
  poisoning a whole segment: the rule decides, the field tells.

Every table is bounded and evicts its least recently used entries (counted in ``stats()``): IP
bindings, requests awaiting a reply, and the servers known to speak an ICS protocol.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from otsentry.decode import ARP_REPLY, TCP, Arp, vlan_ids
from otsentry.flow.table import Flow, conn_of, ip_text, mac_text
from otsentry.model import Conn, Envelope, Event

PROTOCOL = "network"
FLOW_START = "network-flow-start"
FLOW_END = "network-flow-end"
IP_MAC_CHANGE = "network-ip-mac-change"
ARP_CONFLICT = "network-arp-conflict"
#: anomaly id: the Ethernet source of an ARP packet differs from its sender MAC
SENDER_MAC_MISMATCH = "network.arp_sender_mac_mismatch"

#: well-known ICS service ports (TCP or UDP) → service name, for ``ics_service``
ICS_PORTS: dict[int, str] = {
    102: "s7comm",  # ISO-TSAP: S7comm, S7comm-plus, IEC 61850 MMS
    502: "modbus",
    789: "crimson",
    1911: "niagara_fox",
    1962: "pcworx",
    2222: "enip_io",
    2404: "iec104",
    2455: "codesys",
    4840: "opcua",
    4843: "opcua",
    4911: "niagara_fox",
    5006: "melsec",
    5007: "melsec",
    5094: "hart_ip",
    9600: "omron_fins",
    18245: "ge_srtp",
    20000: "dnp3",
    20547: "proconos",
    34962: "profinet",
    34963: "profinet",
    34964: "profinet",
    44818: "enip",
    47808: "bacnet",
}

_OUTCOMES = {"established": "success", "rejected": "failure", "unanswered": "failure"}
_ZERO_MAC = bytes(6)
_BROADCAST_MAC = b"\xff" * 6


def virtual_router_mac(mac: bytes) -> str:
    """The first-hop redundancy protocol a virtual MAC belongs to: ``vrrp`` (also CARP),
    ``hsrp``, ``glbp``, or ``""`` for any other MAC."""
    if mac[:5] == b"\x00\x00\x5e\x00\x01":
        return "vrrp"
    if mac[:5] == b"\x00\x00\x0c\x07\xac" or (
        mac[:4] == b"\x00\x00\x0c\x9f" and mac[4] >> 4 == 0xF
    ):
        return "hsrp"
    if mac[:4] == b"\x00\x07\xb4\x00":
        return "glbp"
    return ""


def _bad_sender_ip(ip: bytes) -> bool:
    """0.0.0.0/8, multicast, and the limited broadcast cannot be a host's address."""
    return ip[0] == 0 or ip[0] >= 224


class _Binding:
    """What ARP says about one IP: its MAC, the MAC before it, when they were seen."""

    __slots__ = (
        "bound_at",
        "changed_at",
        "changes",
        "flips",
        "last_seen",
        "mac",
        "prev_mac",
        "reported_at",
        "suppressed",
    )

    def __init__(self, mac: bytes, ts: int) -> None:
        self.mac = mac
        self.prev_mac: bytes | None = None
        self.bound_at = self.last_seen = ts
        self.changed_at = -1
        self.changes = self.flips = self.suppressed = 0
        self.reported_at = -1  # last conflict event


@dataclass(slots=True)
class ArpCounters:
    """ARP packets by kind and what became of them."""

    requests: int = 0
    replies: int = 0
    gratuitous: int = 0
    probes: int = 0  # sender IP 0.0.0.0 (RFC 5227 address conflict detection)
    invalid_sender: int = 0  # group/zero sender MAC or a sender IP no host can have
    sender_mac_mismatch: int = 0
    changes: int = 0
    conflicts: int = 0
    conflicts_suppressed: int = 0


#: (segment, packed vlan, packed IP): where an address lives
_Where = tuple[str, int, bytes]


class NetworkEvents:
    """Flow and ARP events for the rule engine; every table bounded (LRU, evictions counted).

    ``emit`` receives the events; ``segment_for(ip, vlan)`` names an address's segment (the
    config's). ``report_interval`` spaces out conflict events for one IP; a return to the
    previous MAC counts as a conflict only within ``conflict_window`` of the change.
    """

    def __init__(
        self,
        emit: Callable[[Event], None],
        segment_for: Callable[[str, int | None], str],
        *,
        max_bindings: int = 65_536,
        max_pending_requests: int = 4_096,
        max_servers: int = 65_536,
        solicit_window: float = 5.0,
        conflict_window: float = 3_600.0,
        report_interval: float = 300.0,
    ) -> None:
        self.emit = emit
        self.segment_for = segment_for
        self.max_bindings = max_bindings
        self.max_pending = max_pending_requests
        self.max_servers = max_servers
        self.solicit_ns = int(solicit_window * 1e9)
        self.conflict_ns = int(conflict_window * 1e9)
        self.report_ns = int(report_interval * 1e9)
        self._bindings: OrderedDict[_Where, _Binding] = OrderedDict()
        self._mac_ips: Counter[tuple[str, int, bytes]] = Counter()  # (segment, vlan, MAC) → IPs
        #: (vlan, asked IP, asking IP) → time of the request
        self._pending: OrderedDict[tuple[int, bytes, bytes], int] = OrderedDict()
        #: servers that answered an ICS protocol → its names; live ICS flows not yet answered
        self._servers: OrderedDict[_Where, tuple[str, ...]] = OrderedDict()
        self._candidates: OrderedDict[_Where, Flow] = OrderedDict()
        self.arp_counters = ArpCounters()
        self.flow_starts = 0
        self.flow_ends: Counter[str] = Counter()  # by state
        self.bindings_evicted = 0
        self.pending_evicted = 0
        self.servers_evicted = 0

    # -- flows ------------------------------------------------------------------------------
    def flow_start(self, flow: Flow) -> None:
        """The flow table created ``flow`` (its first packet is not counted yet)."""
        self.flow_starts += 1
        protocol = flow.protocol
        if protocol:
            self._candidate(flow)
        conn = flow.conn
        if conn is None:
            conn = conn_of(flow)
        self.emit(Event(Envelope(flow.first_ts, conn, PROTOCOL), FLOW_START, _flow(flow, conn)))

    def flow_end(self, flow: Flow) -> None:
        """``flow`` left the flow table (``state`` and ``end_reason`` are final)."""
        state = flow.state
        self.flow_ends[state] += 1
        protocol = flow.protocol
        if protocol:
            where = (flow.segment, flow.vlan, flow.server_ip)
            if self._candidates.get(where) is flow:
                del self._candidates[where]
            if _answered(flow):
                self._serves(where, protocol)
        conn = flow.conn
        if conn is None:
            conn = conn_of(flow)
        duration = flow.last_ts - flow.first_ts
        fields = _flow(flow, conn)  # then the end's
        fields["state"] = state
        fields["reason"] = flow.end_reason
        fields["packets_to_server"] = flow.packets_c
        fields["packets_to_client"] = flow.packets_s
        fields["bytes_to_server"] = flow.bytes_c
        fields["bytes_to_client"] = flow.bytes_s
        fields["duration"] = round(duration / 1e9, 6)
        envelope = Envelope(flow.end_ts or flow.last_ts, conn, PROTOCOL)
        self.emit(Event(envelope, FLOW_END, fields, (), _OUTCOMES.get(state, "unknown"), duration))

    def _candidate(self, flow: Flow) -> None:
        where = (flow.segment, flow.vlan, flow.server_ip)
        known = self._servers.get(where)
        if known is not None and flow.protocol in known:
            return
        cands = self._candidates
        cands[where] = flow
        cands.move_to_end(where)
        if len(cands) > self.max_servers:
            cands.popitem(last=False)
            self.servers_evicted += 1

    def _serves(self, where: _Where, protocol: str) -> None:
        servers = self._servers
        known = servers.get(where, ())
        if protocol not in known:
            servers[where] = tuple(sorted((*known, protocol)))
        servers.move_to_end(where)
        if len(servers) > self.max_servers:
            servers.popitem(last=False)
            self.servers_evicted += 1

    def _ics_protocols(self, where: _Where) -> tuple[str, ...]:
        """The ICS protocols an address has served (a live flow's answer counts too)."""
        cand = self._candidates.get(where)
        if cand is not None and _answered(cand):
            del self._candidates[where]
            self._serves(where, cand.protocol)
        return self._servers.get(where, ())

    # -- ARP --------------------------------------------------------------------------------
    def arp(self, pkt: Arp) -> None:
        """One ARP request or reply: learn the sender's binding, report a change."""
        c = self.arp_counters
        ts, op, sha, spa, tha, tpa, eth_src, _eth_dst, vlan = pkt
        reply = op == ARP_REPLY
        if reply:
            c.replies += 1
        else:
            c.requests += 1
        if spa == b"\x00\x00\x00\x00":
            c.probes += 1
            return
        if sha[0] & 1 or sha == _ZERO_MAC or _bad_sender_ip(spa) or spa == b"\xff\xff\xff\xff":
            c.invalid_sender += 1
            return
        gratuitous = spa == tpa or (reply and tha == _BROADCAST_MAC)
        if gratuitous:
            c.gratuitous += 1
        mismatch = eth_src is not None and eth_src != sha
        if mismatch:
            c.sender_mac_mismatch += 1
        outer = vlan_ids(vlan)[0]
        segment = self.segment_for(ip_text(spa), outer)
        solicited: bool | None = None
        if reply:
            asked = self._pending.get((vlan, spa, tpa))
            solicited = asked is not None and ts - asked <= self.solicit_ns
        elif not gratuitous:
            self._request(vlan, tpa, spa, ts)

        where = (segment, vlan, spa)
        bindings = self._bindings
        binding = bindings.get(where)
        if binding is None:
            self._bind(where, sha, ts)
            return
        bindings.move_to_end(where)
        if binding.mac == sha:
            binding.last_seen = ts
            return

        old = binding.mac
        flip = sha == binding.prev_mac and ts - binding.changed_at <= self.conflict_ns
        fields: dict[str, Any] = {
            "ip": ip_text(spa),
            "old_mac": mac_text(old),
            "new_mac": mac_text(sha),
            "arp_op": "reply" if reply else "request",
            "gratuitous": gratuitous,
            "old_mac_idle_seconds": round((ts - binding.last_seen) / 1e9, 3),
            "old_mac_held_seconds": round((ts - binding.bound_at) / 1e9, 3),
        }
        self._mac_ips[(segment, vlan, old)] -= 1
        if self._mac_ips[(segment, vlan, old)] <= 0:
            del self._mac_ips[(segment, vlan, old)]
        self._mac_ips[(segment, vlan, sha)] += 1
        binding.prev_mac = old
        binding.mac = sha
        binding.bound_at = binding.last_seen = binding.changed_at = ts
        binding.changes += 1
        fields["changes"] = binding.changes
        if solicited is not None:
            fields["solicited"] = solicited
        fields["virtual_mac"] = virtual_router_mac(sha) or virtual_router_mac(old)
        fields["new_mac_ips"] = self._mac_ips[(segment, vlan, sha)]
        fields["ics_protocols"] = list(self._ics_protocols(where))
        if flip:
            binding.flips += 1
            if binding.reported_at >= 0 and ts - binding.reported_at < self.report_ns:
                binding.suppressed += 1
                c.conflicts_suppressed += 1
                return
            fields["flips"] = binding.flips
            fields["suppressed"] = binding.suppressed
            binding.reported_at = ts
            binding.suppressed = 0
            c.conflicts += 1
            action = ARP_CONFLICT
        else:
            c.changes += 1
            action = IP_MAC_CHANGE
        anomalies = (SENDER_MAC_MISMATCH,) if mismatch else ()
        conn = Conn(
            community_id="",
            transport="arp",
            client_ip=fields["ip"],
            client_port=0,
            server_ip=ip_text(tpa),
            server_port=0,
            client_mac=fields["new_mac"],
            server_mac=mac_text(tha) if tha != _ZERO_MAC else None,
            vlan=outer,
            inner_vlan=vlan_ids(vlan)[1],
            segment=segment,
            roles_from="first_sender",
        )
        self.emit(Event(Envelope(ts, conn, PROTOCOL), action, fields, anomalies))

    def _bind(self, where: _Where, mac: bytes, ts: int) -> None:
        bindings = self._bindings
        bindings[where] = _Binding(mac, ts)
        self._mac_ips[(where[0], where[1], mac)] += 1
        if len(bindings) > self.max_bindings:
            (segment, vlan, _ip), gone = bindings.popitem(last=False)
            key = (segment, vlan, gone.mac)
            self._mac_ips[key] -= 1
            if self._mac_ips[key] <= 0:
                del self._mac_ips[key]
            self.bindings_evicted += 1

    def _request(self, vlan: int, asked: bytes, asking: bytes, ts: int) -> None:
        pending = self._pending
        key = (vlan, asked, asking)
        pending[key] = ts
        pending.move_to_end(key)
        if len(pending) > self.max_pending:
            pending.popitem(last=False)
            self.pending_evicted += 1

    def binding(self, segment: str, ip: str, vlan: int = 0) -> str | None:
        """The MAC ARP last bound ``ip`` to (ECS form), or None."""
        found = self._bindings.get((segment, vlan, ip_address(ip).packed))
        return mac_text(found.mac) if found is not None else None

    # -- counters ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """What was seen and emitted, and the tables' sizes and evictions."""
        c = self.arp_counters
        return {
            "flow_starts": self.flow_starts,
            "flow_ends": dict(self.flow_ends),
            "arp": {
                "requests": c.requests,
                "replies": c.replies,
                "gratuitous": c.gratuitous,
                "probes": c.probes,
                "invalid_sender": c.invalid_sender,
                "sender_mac_mismatch": c.sender_mac_mismatch,
            },
            "ip_mac_changes": c.changes,
            "arp_conflicts": c.conflicts,
            "arp_conflicts_suppressed": c.conflicts_suppressed,
            "bindings": len(self._bindings),
            "bindings_evicted": self.bindings_evicted,
            "pending_requests": len(self._pending),
            "pending_requests_evicted": self.pending_evicted,
            "ics_servers": len(self._servers),
            "ics_servers_evicted": self.servers_evicted,
        }


def _answered(flow: Flow) -> bool:
    """The server took part: it accepted the SYN, or (no SYN seen) sent more than a RST."""
    if flow.transport == TCP and flow.syn:
        return flow.synack
    return flow.packets_s > (1 if flow.rst_s else 0)


def _flow(flow: Flow, conn: Conn) -> dict[str, Any]:
    """The fields flow-start and flow-end events share (the flow's ``Conn`` has transport,
    server port, roles and outer vlan in the events' form already)."""
    return {
        "transport": conn.transport,
        "server_port": conn.server_port,
        "protocol": flow.protocol,
        "ics_service": ICS_PORTS.get(conn.server_port, ""),
        "roles_from": conn.roles_from,
        "syn": flow.syn,
        "vlan": conn.vlan,
    }
