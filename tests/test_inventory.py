"""The asset inventory stays within its caps, evicting the least recently updated host, and
learns roles only from what both ends said."""

from __future__ import annotations

import socket

from otsentry.assets.inventory import MAX_LISTED_PEERS, Inventory
from otsentry.flow.table import Flow
from otsentry.model import Conn, Direction, Envelope, Event


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


def modbus_event(client: str, server: str, ts: int, outcome: str = "success") -> Event:
    conn = Conn(f"1:{client}-{server}", "tcp", client, 40000, server, 502, segment="cell")
    env = Envelope(ts, conn, "modbus", Direction.TRANSACTION)
    return Event(env, "modbus-read-holding-registers", {}, (), outcome)


def test_role_facts_capped_and_eviction_counted() -> None:
    inv = Inventory(max_assets=10)
    plc = "10.0.0.1"
    for i in range(100):
        client = f"10.0.1.{i}"
        inv.observe_event(modbus_event(client, plc, i))
        inv.identify("cell", client, "modbus", {"vendor": f"v{i}"})
        inv.observe_flow(flow(client, plc, i))
    assert inv.facts_evicted == 91  # as the assets: the PLC stays, the oldest clients go
    assets = {a.ip: a for a in inv.assets()}
    assert set(assets["10.0.0.1"].roles) == {"modbus-server"}
    assert set(assets["10.0.1.99"].roles) == {"modbus-client"}
    assert assets["10.0.1.99"].identity == {"modbus": {"vendor": "v99"}}


def test_unanswered_requests_make_no_server() -> None:
    inv = Inventory()
    scan = modbus_event("10.0.1.66", "10.0.0.9", 1, outcome="unknown")
    inv.observe_event(scan)
    inv.observe_event(scan)  # the same action again on the same connection
    inv.observe_flow(flow("10.0.1.66", "10.0.0.9", 1))
    assets = {a.ip: a for a in inv.assets()}
    assert set(assets["10.0.1.66"].roles) == {"modbus-client"}
    assert assets["10.0.0.9"].roles == {}
    # the answer comes later on that connection: now it is a server
    inv.observe_event(modbus_event("10.0.1.66", "10.0.0.9", 2))
    assert set(next(a for a in inv.assets() if a.ip == "10.0.0.9").roles) == {"modbus-server"}


def test_peer_list_is_bounded() -> None:
    inv = Inventory()
    for i in range(200):
        inv.observe_flow(flow(f"10.0.{i // 250}.{i % 250 + 1}", "10.9.0.1", i))
    server = next(a for a in inv.assets() if a.ip == "10.9.0.1")
    assert server.peers == 200
    assert len(server.peer_ips) == MAX_LISTED_PEERS
    assert server.peer_ips[:3] == ("10.0.0.1", "10.0.0.2", "10.0.0.3")  # numeric order
