"""Hosts seen on the wire, built from flows as they end (never per packet), with what events
told about them: device identity, and the roles they play (:mod:`otsentry.assets.roles`)."""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otsentry.assets import roles as role_rules
from otsentry.assets.oui import OuiRegistry, default_registry
from otsentry.flow.table import Flow, ip_text, mac_text
from otsentry.model import Asset, Conn, Event

_MAX_LISTED = 64  # values kept in a list-valued identity fact
_MAX_PEERS = 1024  # distinct peers remembered per asset (the count saturates there)
_MAX_SETTLED = 4096  # connections whose learned actions are remembered (cleared when full)
MAX_LISTED_PEERS = 32  # peer addresses an asset document lists (the lowest)
_TRANSPORT = {6: "tcp", 17: "udp"}
_RULES = role_rules.RULES
_client_finding = role_rules.client_finding
_server_answered = role_rules.server_answered


def _ip_order(ip: str) -> tuple[int, bytes, str]:
    """Sort key: IPv4 before IPv6, numerically (packed bytes compare as the numbers do)."""
    try:
        return (4, socket.inet_pton(socket.AF_INET, ip), ip)
    except OSError:
        pass
    try:
        return (6, socket.inet_pton(socket.AF_INET6, ip), ip)
    except OSError:
        return (9, b"", ip)


@dataclass(slots=True)
class _Facts:
    """What events told about one host."""

    #: protocol → identity facts (vendor, product, firmware…)
    identity: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: role → evidence: first seen (ns), action, peer, S7 connection type
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: protocols of the events that gave it a role
    protocols: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Entry:
    ip: str
    segment: str
    first_seen: int
    last_seen: int
    mac: str | None = None
    vlan: int | None = None
    services: set[tuple[str, int, str]] = field(default_factory=set)
    client_protocols: set[str] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    packets: int = 0
    bytes: int = 0


class Inventory:
    """Assets keyed by (segment, ip); capped, the least recently updated evicted first."""

    #: event actions ``observe_event`` learns roles from (the pipeline calls it for these only)
    ROLE_ACTIONS: frozenset[str] = role_rules.ROLE_ACTIONS

    def __init__(self, max_assets: int = 65_536, oui: OuiRegistry | None = None) -> None:
        # least recently updated first: eviction at the cap is O(1)
        self._assets: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.max_assets = max_assets
        #: identity and roles by (segment, ip), kept apart from the flow-built entries since
        #: events come before their flow ends; capped the same way
        self._facts: OrderedDict[tuple[str, str], _Facts] = OrderedDict()
        self._oui = oui
        #: id(conn) → (conn, actions already learned from on it); holding the conn keeps its id
        #: from being reused while it is here
        self._settled: dict[int, tuple[Conn, set[str]]] = {}
        self.evicted = 0  # assets dropped at the cap
        self.facts_evicted = 0  # hosts whose identity and roles were dropped at the cap

    def __len__(self) -> int:
        return len(self._assets)

    def observe_flow(self, flow: Flow) -> None:
        """Fold an ended flow into both of its endpoints (their addresses as text from the
        flow's ``Conn`` when its start event made one)."""
        transport = _TRANSPORT.get(flow.transport, "ip")
        conn = flow.conn
        if conn is not None:
            client = self._entry(flow, conn.client_ip, conn.client_mac)
            server = self._entry(flow, conn.server_ip, conn.server_mac)
        else:
            client = self._entry(flow, ip_text(flow.client_ip), mac_text(flow.client_mac))
            server = self._entry(flow, ip_text(flow.server_ip), mac_text(flow.server_mac))
        client.packets += flow.packets_c
        client.bytes += flow.bytes_c
        server.packets += flow.packets_s
        server.bytes += flow.bytes_s
        if flow.packets_s or flow.protocol:  # the server answered, or it spoke an ICS protocol
            server.services.add((transport, flow.server_port, flow.protocol))
        if flow.protocol:
            client.client_protocols.add(flow.protocol)
        if len(client.peers) < _MAX_PEERS:
            client.peers.add(server.ip)
        if len(server.peers) < _MAX_PEERS:
            server.peers.add(client.ip)

    def _entry(self, flow: Flow, ip: str, mac: str | None) -> _Entry:
        key = (flow.segment, ip)
        entry = self._assets.get(key)
        if entry is None:
            if len(self._assets) >= self.max_assets:
                self._assets.popitem(last=False)
                self.evicted += 1
            entry = self._assets[key] = _Entry(ip, flow.segment, flow.first_ts, flow.last_ts)
            entry.vlan = flow.vlan & 0xFFF or None
        else:
            self._assets.move_to_end(key)
        entry.first_seen = min(entry.first_seen, flow.first_ts)
        entry.last_seen = max(entry.last_seen, flow.last_ts)
        if mac:
            entry.mac = mac
        return entry

    def _facts_of(self, segment: str, ip: str) -> _Facts:
        key = (segment, ip)
        facts = self._facts.get(key)
        if facts is None:
            if len(self._facts) >= self.max_assets:
                self._facts.popitem(last=False)
                self.facts_evicted += 1
            facts = self._facts[key] = _Facts()
        else:
            self._facts.move_to_end(key)
        return facts

    def identify(self, segment: str, ip: str, protocol: str, identity: Mapping[str, Any]) -> None:
        """Record what a protocol revealed about a device (vendor, product, firmware…)."""
        facts = self._facts_of(segment, ip).identity.setdefault(protocol, {})
        for name, value in identity.items():
            old = facts.get(name)
            if isinstance(value, list) and isinstance(old, list):
                # what accumulates (security modes used, …): keep every value seen, in order
                facts[name] = old + [v for v in value if v not in old][: _MAX_LISTED - len(old)]
            else:
                facts[name] = value

    def observe_event(self, event: Event) -> None:
        """Learn host roles from an event whose action is in ``ROLE_ACTIONS``.

        Polling repeats the same few actions on a connection all day: once an action has been
        seen on a connection with its answer, it cannot teach more, and it returns at once.
        """
        action = event.action
        conn = event.envelope.conn
        done = self._settled.get(id(conn))
        if done is not None and done[0] is conn and action in done[1]:
            return  # (only actions with a rule are ever settled)
        rule = _RULES.get(action)
        if rule is None:
            return
        found = _client_finding(rule, event)
        if found is not None:
            self._role(conn.segment, conn.client_ip, found, event, conn.server_ip)
        if rule.server is None or _server_answered(event):
            if rule.server is not None:
                self._role(conn.segment, conn.server_ip, rule.server, event, conn.client_ip)
            if done is None or done[0] is not conn:
                if len(self._settled) >= _MAX_SETTLED:
                    self._settled.clear()
                done = self._settled[id(conn)] = (conn, set())
            done[1].add(action)

    def _role(
        self, segment: str, ip: str, found: role_rules.Finding, event: Event, peer: str
    ) -> None:
        key = (segment, ip)
        facts = self._facts.get(key)
        if facts is None:
            facts = self._facts_of(segment, ip)
        else:
            self._facts.move_to_end(key)
        facts.protocols.add(event.envelope.protocol)
        role, kind = found
        known = facts.roles.get(role)
        if known is not None and (kind is None or "connection_type" in known):
            return  # the first evidence stays, unless a connection type now backs a guess
        evidence: dict[str, Any] = {"first_seen": event.envelope.ts, "action": event.action}
        evidence["peer"] = peer
        if kind is not None:
            evidence["connection_type"] = kind
        facts.roles[role] = evidence

    def assets(self) -> list[Asset]:
        """A snapshot, sorted by segment and address, with vendors looked up for the MACs."""
        entries = sorted(self._assets.values(), key=lambda e: (e.segment, _ip_order(e.ip)))
        oui = self._oui if self._oui is not None else default_registry()
        vendors = oui.vendors(e.mac for e in entries if e.mac)
        empty = _Facts()
        out = []
        for e in entries:
            facts = self._facts.get((e.segment, e.ip), empty)
            protocols = {p for _, _, p in e.services if p} | e.client_protocols | facts.protocols
            out.append(
                Asset(
                    ip=e.ip,
                    segment=e.segment,
                    first_seen=e.first_seen,
                    last_seen=e.last_seen,
                    mac=e.mac,
                    vlan=e.vlan,
                    services=tuple(sorted(e.services)),
                    client_protocols=tuple(sorted(e.client_protocols)),
                    peers=len(e.peers),
                    packets=e.packets,
                    bytes=e.bytes,
                    identity=facts.identity,
                    vendor=vendors.get(e.mac) if e.mac else None,
                    roles=role_rules.settle(facts.roles),
                    protocols=tuple(sorted(protocols)),
                    peer_ips=tuple(sorted(e.peers, key=_ip_order)[:MAX_LISTED_PEERS]),
                )
            )
        return out
