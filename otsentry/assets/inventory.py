"""Hosts seen on the wire, built from flows as they end (never per packet)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otsentry.flow.table import Flow, ip_text, mac_text
from otsentry.model import Asset, Event

_MAX_LISTED = 64  # values kept in a list-valued identity fact
_MAX_PEERS = 1024  # distinct peers remembered per asset (the count saturates there)
_TRANSPORT = {6: "tcp", 17: "udp"}


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
    ROLE_ACTIONS: frozenset[str] = frozenset()

    def __init__(self, max_assets: int = 65_536) -> None:
        # least recently updated first: eviction at the cap is O(1)
        self._assets: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.max_assets = max_assets
        #: device identity by (segment, ip), then by the protocol that revealed it
        self._identities: OrderedDict[tuple[str, str], dict[str, dict[str, Any]]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._assets)

    def observe_flow(self, flow: Flow) -> None:
        """Fold an ended flow into both of its endpoints."""
        transport = _TRANSPORT.get(flow.transport, "ip")
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

    def identify(self, segment: str, ip: str, protocol: str, identity: Mapping[str, Any]) -> None:
        """Record what a protocol revealed about a device (vendor, product, firmware…)."""
        key = (segment, ip)
        known = self._identities.get(key)
        if known is None:
            if len(self._identities) >= self.max_assets:
                self._identities.popitem(last=False)
            known = self._identities[key] = {}
        else:
            self._identities.move_to_end(key)
        facts = known.setdefault(protocol, {})
        for name, value in identity.items():
            old = facts.get(name)
            if isinstance(value, list) and isinstance(old, list):
                # what accumulates (security modes used, …): keep every value seen, in order
                facts[name] = old + [v for v in value if v not in old][: _MAX_LISTED - len(old)]
            else:
                facts[name] = value

    def observe_event(self, event: Event) -> None:
        """Learn a host role from an event whose action is in ``ROLE_ACTIONS``."""

    def assets(self) -> list[Asset]:
        """A snapshot, sorted by segment and address."""
        return [
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
                identity=self._identities.get((e.segment, e.ip), {}),
            )
            for _, e in sorted(self._assets.items())
        ]
