"""Per-link window features from the lab captures' events, and the extractor's bounds."""

from __future__ import annotations

from collections import Counter

from otsentry.baseline.features import (
    ACTION_PREFIX,
    GENERIC_FEATURES,
    OPTIONAL_FEATURES,
    WindowExtractor,
    WindowVector,
)
from otsentry.model import Conn, Direction, Envelope, Event
from tests.baseline.lab_windows import (
    ATTACKER,
    HMI,
    PLC1,
    RTU1,
    events_of,
    windows_of,
)

SEGMENT = "10.10.30.0/24"


def event(
    ts_s: float,
    client: str = HMI,
    server: str = PLC1,
    action: str = "modbus-read-coils",
    **fields: object,
) -> Event:
    conn = Conn("1:x", "tcp", client, 40000, server, 502, segment=SEGMENT)
    env = Envelope(int(ts_s * 1e9), conn, "modbus", Direction.TRANSACTION)
    return Event(env, action, dict(fields), outcome="success")


def by_link(windows: list[WindowVector]) -> dict[tuple[str, ...], list[WindowVector]]:
    out: dict[tuple[str, ...], list[WindowVector]] = {}
    for w in windows:
        out.setdefault(w.link, []).append(w)
    return out


def test_every_modbus_transaction_lands_in_one_window_of_its_link() -> None:
    events = events_of("modbus_normal.pcap")
    windows = windows_of("modbus_normal.pcap")
    links = by_link(windows)
    assert set(links) == {(SEGMENT, HMI, PLC1, "modbus"), (SEGMENT, HMI, RTU1, "modbus")}
    actions = Counter(e.action for e in events if e.envelope.protocol == "modbus")
    counted: Counter[str] = Counter()
    for w in windows:
        for name, value in w.values.items():
            if name.startswith(ACTION_PREFIX):
                counted[name[len(ACTION_PREFIX) :]] += int(value)
    assert counted == actions
    # windows tile packet time: 2 s apart, none twice for a link
    for ws in links.values():
        starts = [w.start for w in ws]
        assert len(set(starts)) == len(starts)
        assert all((s - starts[0]) % 2_000_000_000 == 0 for s in starts)
    # only the windows still open at the end (the last one and the one in its grace time)
    # are incomplete
    for ws in links.values():
        assert [w.complete for w in ws] == [True] * (len(ws) - 2) + [False, False]
    # plc1 unit 1 is polled with FC1-4 every 200 ms: ten cycles a window
    plc1 = [w for w in links[(SEGMENT, HMI, PLC1, "modbus")] if w.complete]
    assert all(9 <= w.values["action.modbus-read-coils"] <= 11 for w in plc1)
    assert all(180 <= w.values["gap_max_ms"] <= 2100 for w in plc1)
    for w in windows:
        assert set(GENERIC_FEATURES) - set(w.values) <= OPTIONAL_FEATURES


def test_the_same_events_give_the_same_windows() -> None:
    assert windows_of("opcua_attacks.pcap") == windows_of("opcua_attacks.pcap")


def test_attacks_show_in_the_attackers_windows() -> None:
    links = by_link(windows_of("modbus_abuse.pcap"))
    plc1 = links[(SEGMENT, ATTACKER, PLC1, "modbus")]
    # brute-force I/O: coil 2 and HR 4 written 24 times each within one window
    assert any(
        w.values.get("action.modbus-write-single-coil") == 24
        and w.values.get("action.modbus-write-single-register", 0) >= 24
        for w in plc1
    )
    # unit-id sweep: 32 units asked
    assert max(w.values["units_distinct"] for w in plc1) == 32
    # rtu1 pipelined flood: 120 requests never answered
    rtu1 = links[(SEGMENT, ATTACKER, RTU1, "modbus")]
    assert sum(w.values["unanswered"] for w in rtu1) == 120
    # OPC UA enumeration: hundreds of distinct nodes in the attacker's windows
    opc = by_link(windows_of("opcua_attacks.pcap"))
    attacker = [w for link, ws in opc.items() if link[1] == ATTACKER for w in ws]
    assert max(w.values["addresses_distinct"] for w in attacker) > 400


def test_flows_count_on_their_protocols_link_even_when_found_by_probing() -> None:
    windows = windows_of("modbus_port5020.pcap")
    assert {w.link[3] for w in windows} == {"modbus"}
    assert sum(w.values["flows_started"] for w in windows) == 2
    scan = by_link(windows_of("network_attacks_modbus.pcap"))
    other = [w for link, ws in scan.items() if link[3] == "other" for w in ws]
    assert other and all(w.link[1] == ATTACKER for w in other)
    assert max(w.values["flows_failed"] for w in other) >= 20  # the port scan of plc2


def test_gaps_are_missing_not_zero_without_two_of_them() -> None:
    x = WindowExtractor(10.0)
    x.add(event(0.0))
    x.add(event(1.0))
    x.add(event(1.5))
    x.add(event(1.7, server=RTU1))
    closed = x.add(event(25.0, client="10.10.30.99"))
    by = {w.link[2]: w for w in closed}
    assert by[PLC1].values["gap_mean_ms"] == 750.0
    assert by[PLC1].values["gap_max_ms"] == 1000.0
    assert by[PLC1].values["gap_std_ms"] == 250.0
    assert "gap_mean_ms" not in by[RTU1].values


def test_late_events_go_to_the_links_open_window() -> None:
    x = WindowExtractor(2.0, grace_seconds=0.5)
    x.add(event(0.0))
    closed = x.add(event(2.6))  # closes window 0 (ends at 2 s, grace 0.5 s)
    assert [w.start for w in closed] == [0]
    x.add(event(1.0))  # a response to a request of window 0, reported late
    assert x.stats.late == 1
    (w,) = x.flush()
    assert w.values["action.modbus-read-coils"] == 2
    assert not w.complete


def test_state_is_bounded() -> None:
    x = WindowExtractor(1.0, max_links=2, max_open_windows=2, max_distinct=3)
    closed: list[WindowVector] = []
    for i, server in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        closed += x.add(event(0.1 * i, server=server, address=i, unit_id=1, function_code=1))
    assert x.stats.links_evicted == 1
    assert [w.link[2] for w in closed] == ["10.0.0.1"]
    assert not closed[0].complete
    assert len(x) <= 2
    for address in range(10):
        x.add(event(0.5, server="10.0.0.3", address=address, unit_id=1, function_code=1))
    (w3,) = [w for w in x.flush() if w.link[2] == "10.0.0.3"]
    assert w3.values["addresses_distinct"] == 3
    assert x.stats.capped >= 7


def test_every_event_is_in_exactly_one_window_whatever_closes_it() -> None:
    """Links evicted, windows forced closed early, late events, windows due: each event is
    counted in one window that comes out once, and nothing stays open after a flush."""
    ex = WindowExtractor(2.0, max_links=4, max_open_windows=5)
    servers = [f"10.10.30.{n}" for n in range(5, 11)]
    out: list[WindowVector] = []
    sent = 0
    for step in range(400):
        ts = step * 0.37 - (3.0 if step % 9 == 0 else 0.0)  # some late
        server = servers[4 + step // 25 % 2] if step % 25 == 0 else servers[step % 4]
        out += ex.add(event(ts, server=server))
        sent += 1
        assert len(ex) == sum(len(keys) for keys in ex._at.values())
    out += ex.flush()
    assert len(ex) == 0 and not ex._at
    assert sum(w.events for w in out) == sent
    assert len({(w.link, w.start) for w in out if w.complete}) == sum(w.complete for w in out)
    assert ex.stats.links_evicted and ex.stats.windows_forced and ex.stats.late
