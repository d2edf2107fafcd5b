"""The asset inventory stays within its cap and evicts the least recently updated host."""

from __future__ import annotations

import socket

from otsentry.assets.inventory import Inventory
from otsentry.flow.table import Flow


def flow(client: str, server: str, ts: int) -> Flow:
    f = Flow()
    f.transport, f.vlan, f.first_ts, f.last_ts = 6, 0, ts, ts
    f.client_ip, f.server_ip = socket.inet_aton(client), socket.inet_aton(server)
    f.client_port, f.server_port, f.segment, f.packets_s = 40000, 502, "cell", 1
    return f


def test_cap_evicts_least_recently_updated() -> None:
    inv = Inventory(max_assets=10)
    plc = "10.0.0.1"
    for i in range(100):
        inv.observe_flow(flow(f"10.0.1.{i}", plc, i))
    assert len(inv) == 10
    assert inv.evicted == 91
    ips = {a.ip for a in inv.assets()}
    assert plc in ips  # touched by every flow, never the oldest
    assert "10.0.1.99" in ips and "10.0.1.0" not in ips
    server = next(a for a in inv.assets() if a.ip == plc)
    assert server.services == (("tcp", 502, ""),)
