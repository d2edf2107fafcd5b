"""Aspect ``links``: who talks to whom, over what → ``new_link``.

A link is (client, server, transport, server port) for all traffic of the segment, ICS or not:
learned from the network ``network-flow-start`` events of every TCP/UDP flow and, so that a
pipeline without network events still learns the ICS links, from protocol events too. The
protocols spoken on a link are kept with it. A link unseen while learning is a ``new_link``
(medium; high towards a well-known ICS service port: a new master of a PLC).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from otsentry.baseline.aspect import AnomalyKind, Aspect, AspectContext, Deviation
from otsentry.baseline.items import (
    DEFAULT_CAP,
    ItemTable,
    Seen,
    as_list,
    as_map,
    int_of,
    join_limited,
    text_of,
)
from otsentry.model import Event
from otsentry.netevents import FLOW_START, ICS_PORTS
from otsentry.netevents import PROTOCOL as NETWORK

#: (client, server, transport, server port)
LinkKey = tuple[str, str, str, int]


def link_of(event: Event) -> LinkKey | None:
    """The link an event belongs to (None for ARP and flow ends: flow starts stand for flows)."""
    env = event.envelope
    conn = env.conn
    if env.protocol == NETWORK and event.action != FLOW_START:
        return None
    if conn.transport not in ("tcp", "udp"):
        return None
    return conn.client_ip, conn.server_ip, conn.transport, conn.server_port


def protocol_of(event: Event) -> str:
    """The application protocol of an event ("" when a flow start does not know it yet)."""
    if event.envelope.protocol == NETWORK:
        return str(event.fields.get("protocol") or event.fields.get("ics_service") or "")
    return event.envelope.protocol


class LinksAspect(Aspect):
    """(client, server, transport, server port) with the protocols spoken."""

    name = "links"
    protocols = None

    def __init__(self, context: AspectContext | None = None, cap: int = DEFAULT_CAP) -> None:
        super().__init__(context)
        self.table: ItemTable[LinkKey] = ItemTable(cap)
        self.protocols_of: dict[LinkKey, set[str]] = {}

    def learn(self, event: Event) -> None:
        key = link_of(event)
        if key is None:
            return
        if event.envelope.protocol == NETWORK or key not in self.table:
            self.table.add(key, event.envelope.ts)
        if key in self.table:
            protocol = protocol_of(event)
            if protocol:
                self.protocols_of.setdefault(key, set()).add(protocol)

    def to_data(self) -> dict[str, Any]:
        links = [
            {
                "client": c,
                "server": s,
                "transport": t,
                "server_port": p,
                "protocols": sorted(self.protocols_of.get((c, s, t, p), ())),
                **seen.as_data(),
            }
            for (c, s, t, p), seen in self.table.sorted()
        ]
        return {"links": links, "dropped": self.table.dropped}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        out = cls(context)
        for i, raw in enumerate(as_list(data.get("links"), "links")):
            k = f"links[{i}]"
            entry = as_map(raw, k)
            key = (
                text_of(entry, "client", k),
                text_of(entry, "server", k),
                text_of(entry, "transport", k),
                int_of(entry, "server_port", k),
            )
            out.table.put(key, Seen.from_data(entry, k))
            protocols = {str(p) for p in as_list(entry.get("protocols"), f"{k}.protocols")}
            if protocols:
                out.protocols_of[key] = protocols
        out.table.dropped = int(data.get("dropped", 0) or 0)
        return out

    def check(self, event: Event) -> list[Deviation]:
        key = link_of(event)
        if key is None or key in self.table.items:
            return []
        client, server, transport, port = key
        protocol = protocol_of(event)
        to_server = [f"{c} ({t}/{p})" for (c, s, t, p) in self.table.items if s == server]
        from_client = [f"{s} ({t}/{p})" for (c, s, t, p) in self.table.items if c == client]
        what = f"{transport}/{port}" + (f" ({protocol})" if protocol else "")
        reason = (
            f"{client} never talked to {server} on {what} while learning; "
            f"{server} was reached by {join_limited(sorted(to_server))}; "
            f"{client} reached {join_limited(sorted(from_client))}"
        )
        ics = port in ICS_PORTS
        return [
            Deviation(
                AnomalyKind.NEW_LINK,
                self.name,
                {"client": client, "server": server, "transport": transport, "server_port": port},
                reason,
                expected={
                    "server_clients": sorted(to_server),
                    "client_servers": sorted(from_client),
                },
                observed={"link": f"{client} → {server} {what}", "protocol": protocol},
                level="high" if ics else None,
                event=event,
            )
        ]

    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            key = (
                str(item["client"]),
                str(item["server"]),
                str(item["transport"]),
                int(item["server_port"]),
            )
        except (KeyError, TypeError, ValueError):
            return False
        if key not in self.table:
            self.table.put(key, Seen.accepted())
        return True

    def stats(self) -> dict[str, Any]:
        return {"links": len(self.table), "dropped": self.table.dropped}
