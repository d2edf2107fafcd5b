"""Aspect ``assets``: the hosts of a segment (IP, MACs, roles) → ``new_asset``.

Every event's client and server count as hosts of the event's segment (ARP events: the sender
and target). A host's MACs come from the flows' Ethernet addresses (a host behind a router shows
the router's MAC: kept, it is what the segment sees); roles from protocol events
(``modbus-client``, ``s7comm-server``…, and ``s7comm-engineering-station`` for a client of a
``pg`` connection). A new IP is a ``new_asset``; a known IP behind a MAC it never had is one
too (ARP rules judge spoofing; the baseline says the pair is new).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from otsentry.baseline.aspect import (
    AnomalyKind,
    Aspect,
    AspectContext,
    Deviation,
)
from otsentry.baseline.items import (
    DEFAULT_CAP,
    Seen,
    as_list,
    as_map,
    join_limited,
    text_of,
    texts,
)
from otsentry.model import Event
from otsentry.netevents import PROTOCOL as NETWORK

_ARP = "arp"


class _Host:
    __slots__ = ("macs", "roles", "seen")

    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.macs: set[str] = set()
        self.roles: set[str] = set()


def roles_of(event: Event) -> tuple[str, str]:
    """(client role, server role) an event shows, "" for none."""
    protocol = event.envelope.protocol
    if protocol == NETWORK:
        return "", ""
    client = f"{protocol}-client"
    if protocol == "s7comm":
        connection = event.fields.get("connection")
        kind = connection.get("connection_type") if isinstance(connection, Mapping) else None
        if kind is None:
            kind = event.fields.get("connection_type")
        if kind == "pg":
            client = "s7comm-engineering-station"
    return client, f"{protocol}-server"


class AssetsAspect(Aspect):
    """IPs and their MACs and roles per segment."""

    name = "assets"
    protocols = None

    def __init__(self, context: AspectContext | None = None, cap: int = DEFAULT_CAP) -> None:
        super().__init__(context)
        self.hosts: dict[str, _Host] = {}
        self.cap = cap
        self.dropped = 0

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        conn = event.envelope.conn
        ts = event.envelope.ts
        client_role, server_role = roles_of(event)
        arp = conn.transport == _ARP
        self._learn(conn.client_ip, conn.client_mac, client_role, ts)
        if not arp or conn.server_mac is not None:
            self._learn(conn.server_ip, conn.server_mac, server_role, ts)

    def _learn(self, ip: str, mac: str | None, role: str, ts: int) -> None:
        if not ip:
            return
        host = self.hosts.get(ip)
        if host is None:
            if len(self.hosts) >= self.cap:
                self.dropped += 1
                return
            host = self.hosts[ip] = _Host(Seen(ts, ts))
        else:
            host.seen.hit(ts)
        if mac is not None and len(host.macs) < 16:
            host.macs.add(mac)
        if role:
            host.roles.add(role)

    def to_data(self) -> dict[str, Any]:
        hosts = []
        for ip in sorted(self.hosts, key=_ip_order):
            host = self.hosts[ip]
            hosts.append(
                {
                    "ip": ip,
                    "macs": texts(host.macs),
                    "roles": texts(host.roles),
                    **host.seen.as_data(),
                }
            )
        return {"hosts": hosts, "dropped": self.dropped}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        out = cls(context)
        for i, raw in enumerate(as_list(data.get("hosts"), "hosts")):
            key = f"hosts[{i}]"
            entry = as_map(raw, key)
            host = _Host(Seen.from_data(entry, key))
            host.macs = {str(m) for m in as_list(entry.get("macs"), f"{key}.macs")}
            host.roles = {str(r) for r in as_list(entry.get("roles"), f"{key}.roles")}
            out.hosts[text_of(entry, "ip", key)] = host
        out.dropped = int(data.get("dropped", 0) or 0)
        return out

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        conn = event.envelope.conn
        hosts = self.hosts
        found: list[Deviation] = []
        client = hosts.get(conn.client_ip)
        if client is None or (conn.client_mac is not None and conn.client_mac not in client.macs):
            found.append(self._deviation(event, conn.client_ip, conn.client_mac, client))
        if conn.transport == _ARP and conn.server_mac is None:
            return found
        server = hosts.get(conn.server_ip)
        if server is None or (conn.server_mac is not None and conn.server_mac not in server.macs):
            found.append(self._deviation(event, conn.server_ip, conn.server_mac, server))
        return found

    def _deviation(self, event: Event, ip: str, mac: str | None, host: _Host | None) -> Deviation:
        segment = self.context.segment
        if host is None:
            reason = (
                f"{ip}{f' ({mac})' if mac else ''} was never seen in segment {segment} while "
                f"learning; {len(self.hosts)} hosts were"
            )
            expected: Any = {"hosts": len(self.hosts)}
        else:
            reason = (
                f"{ip} was seen with MAC {join_limited(sorted(host.macs))} only; now with {mac}"
            )
            expected = {"macs": texts(host.macs)}
        return Deviation(
            AnomalyKind.NEW_ASSET,
            self.name,
            {"ip": ip, "mac": mac},
            reason,
            expected=expected,
            observed={"ip": ip, "mac": mac, "action": event.action},
            event=event,
        )

    def accept(self, item: Mapping[str, Any]) -> bool:
        ip = item.get("ip")
        if not isinstance(ip, str) or not ip:
            return False
        host = self.hosts.get(ip)
        if host is None:
            host = self.hosts[ip] = _Host(Seen.accepted())
        mac = item.get("mac")
        if isinstance(mac, str):
            host.macs.add(mac)
        return True

    def stats(self) -> dict[str, Any]:
        return {"hosts": len(self.hosts), "dropped": self.dropped}


def _ip_order(ip: str) -> tuple[int, ...] | tuple[int, str]:
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (1_000, ip)
