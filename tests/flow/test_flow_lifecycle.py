"""The flow table's start/end hooks, the state a flow ended in and why it ended."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from otsentry.capture import open_capture
from otsentry.capture.base import LINKTYPE_ETHERNET
from otsentry.config import Config
from otsentry.decode import Decoder
from otsentry.dissect.registry import DissectorRegistry
from otsentry.flow.table import Flow, FlowTable, community_id, conn_of
from otsentry.model import Event
from otsentry.stages import configured_registry, decoder_for, flow_table_for
from tests.conftest import SHARED_PCAPS, capture_path, lab_pcaps, shared_pcaps
from tests.dissect.framers import mbap_spec

CLIENT, SERVER = "10.10.30.10", "10.10.30.5"


def tcp(src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes) -> bytes:
    seq = 0 if "S" in flags else 1  # data follows the SYN
    segment = TCP(sport=sport, dport=dport, flags=flags, seq=seq)
    return bytes(Ether() / IP(src=src, dst=dst) / segment / payload)


def c2s(flags: str, payload: bytes = b"", cport: int = 49822, port: int = 502) -> bytes:
    return tcp(CLIENT, SERVER, cport, port, flags, payload)


def s2c(flags: str, payload: bytes = b"", cport: int = 49822, port: int = 502) -> bytes:
    return tcp(SERVER, CLIENT, port, cport, flags, payload)


class Hooks:
    """A flow table whose start and end hooks record what they saw, as they saw it."""

    def __init__(self, **limits: float) -> None:
        self.started: list[tuple[Flow, int]] = []  # with the packets counted at the time
        self.ended: list[Flow] = []
        self.events: list[Event] = []
        self.decoder = Decoder()
        self.table = FlowTable(
            DissectorRegistry([mbap_spec([])]),
            self.events.append,
            lambda ip, vlan: "seg",
            on_flow_start=lambda f: self.started.append((f, f.packets)),
            on_flow_end=self.ended.append,
            **limits,  # type: ignore[arg-type]
        )

    def feed(self, frames: list[bytes], start_ts: int = 0, step: int = 1_000_000) -> None:
        for i, frame in enumerate(frames):
            ts = start_ts + i * step
            pkt = self.decoder.decode(LINKTYPE_ETHERNET, frame, ts)
            assert pkt is not None
            self.table.packet(pkt, ts, frame)

    def end(self, ts: int = 10**9) -> list[Flow]:
        self.table.close_all(ts)
        return self.ended


@pytest.mark.parametrize(
    ("frames", "state", "reason"),
    [
        ([c2s("S")], "unanswered", "end"),
        ([c2s("S"), c2s("S")], "unanswered", "end"),  # a retransmitted SYN
        ([c2s("S"), s2c("RA")], "rejected", "rst"),
        ([c2s("S"), s2c("SA"), c2s("R")], "half_open", "rst"),  # the SYN-scan pattern
        ([c2s("S"), s2c("SA")], "half_open", "end"),
        ([c2s("S"), s2c("SA"), c2s("A"), c2s("R")], "established", "rst"),  # connect scan
        (
            [c2s("S"), s2c("SA"), c2s("A"), c2s("PA", b"x" * 12), c2s("FA"), s2c("FA")],
            "established",
            "fin",
        ),
        ([c2s("S"), c2s("A"), s2c("PA", b"y" * 9)], "established", "end"),  # SYN-ACK not captured
        ([s2c("SA"), c2s("A")], "established", "end"),  # SYN not captured
        ([c2s("PA", b"x" * 12), s2c("PA", b"y" * 9)], "midstream", "end"),
        ([c2s("PA", b"x" * 12), s2c("R")], "midstream", "rst"),
    ],
    ids=[
        "syn",
        "syn-retransmitted",
        "rst",
        "syn-scan",
        "synack-only",
        "connect-scan",
        "closed",
        "synack-missed",
        "syn-missed",
        "midstream",
        "midstream-rst",
    ],
)
def test_tcp_end_state_and_reason(frames: list[bytes], state: str, reason: str) -> None:
    h = Hooks()
    h.feed(frames)
    (flow,) = h.end()
    assert (flow.state, flow.end_reason) == (state, reason)
    assert flow.packets == len(frames)
    assert [f for f, _ in h.started] == [flow]


def test_syn_flag_records_whether_the_flow_began_with_a_syn() -> None:
    for frames, syn in (
        ([c2s("S"), s2c("SA")], True),
        ([s2c("SA"), c2s("A")], False),
        ([c2s("PA", b"x")], False),
        ([s2c("S")], False),  # a SYN from port 502: the port decides the roles, not the SYN
    ):
        h = Hooks()
        h.feed(frames)
        assert h.started[0][0].syn is syn


def test_udp_states() -> None:
    def udp(src: str, dst: str, sport: int, dport: int) -> bytes:
        return bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / b"q")

    h = Hooks()
    h.feed([udp(CLIENT, SERVER, 40000, 47808), udp(SERVER, CLIENT, 47808, 40000)])
    h.feed([udp(CLIENT, SERVER, 40001, 161)], start_ts=10**7)
    ended = {f.client_port: f for f in h.end()}
    assert ended[40000].state == "established"
    assert ended[40001].state == "unanswered"
    assert {f.end_reason for f in ended.values()} == {"end"}


def test_start_hook_runs_once_per_flow_before_its_first_packet_is_counted() -> None:
    h = Hooks()
    h.feed([c2s("S"), s2c("SA"), c2s("A"), c2s("S", cport=50000), c2s("PA", b"z", cport=50000)])
    assert [(f.client_port, counted) for f, counted in h.started] == [(49822, 0), (50000, 0)]
    assert h.started[0][0].protocol == "mbap"  # bound by port before the hook runs


def test_reused_ports_end_the_closed_flow_and_start_a_new_one() -> None:
    h = Hooks()
    h.feed([c2s("S"), s2c("RA"), c2s("S"), s2c("RA"), c2s("S")])
    assert len(h.started) == 3
    ended = h.end()
    assert [(f.state, f.end_reason) for f in ended] == [
        ("rejected", "rst"),
        ("rejected", "rst"),
        ("unanswered", "end"),
    ]


def test_idle_and_evicted_reasons() -> None:
    h = Hooks(idle_timeout=1.0)
    h.feed([c2s("S"), s2c("SA"), c2s("A")])
    h.feed([c2s("S", cport=50001)], start_ts=5 * 10**9)  # the sweep ends the first flow
    assert [(f.client_port, f.end_reason, f.end_ts) for f in h.ended] == [
        (49822, "idle", 5 * 10**9)
    ]

    h = Hooks(max_flows=10)
    h.feed([c2s("S", cport=40000 + i) for i in range(30)])
    assert {f.end_reason for f in h.ended} == {"evicted"}
    assert {f.state for f in h.ended} == {"unanswered"}


def test_conn_is_built_once_and_shared_with_the_dissector() -> None:
    h = Hooks()
    h.feed([c2s("S"), s2c("SA"), c2s("A"), c2s("PA", bytes.fromhex("000100000006010300000002"))])
    flow = h.started[0][0]
    assert h.events, "the framer emitted an event"
    assert h.events[0].envelope.conn is conn_of(flow) is h.table.conn_of(flow)


def _tshark_syn_outcomes(path: Path) -> dict[str, int]:
    """Connection attempts in tshark's view: per TCP stream, a client SYN opens an attempt (again
    after a RST or both FINs closed the last one); it was rejected if the server sent only RSTs,
    unanswered if the server sent nothing."""
    fields = ("tcp.stream", "tcp.flags", "ip.src", "ipv6.src", "tcp.srcport")
    args = ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    streams: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        stream, hex_flags, ip4, ip6, port = line.split("\t")
        streams.setdefault(stream, []).append((int(hex_flags, 16), f"{ip4 or ip6}:{port}"))
    counts = {"rejected": 0, "unanswered": 0}

    def judge(client: str, pkts: list[tuple[int, str]]) -> None:
        server = [f for f, sender in pkts if sender != client]
        if not server:
            counts["unanswered"] += 1
        elif all(f & 0x04 for f in server) and not any(f & 0x02 for f in server):
            counts["rejected"] += 1

    for pkts in streams.values():
        attempt: list[tuple[int, str]] = []
        client, closed, fins = "", False, set[str]()
        for flags, sender in pkts:
            if flags & 0x12 == 0x02 and (not attempt or closed):
                if attempt and client:
                    judge(client, attempt)
                attempt, client, closed, fins = [], sender, False, set()
            elif not attempt:
                client = ""  # picked up mid-stream: not an attempt
            attempt.append((flags, sender))
            if flags & 0x04:
                closed = True
            if flags & 0x01:
                fins.add(sender)
                closed = closed or len(fins) == 2
        if attempt and client:
            judge(client, attempt)
    return counts


CAPTURES = [f"lab/{p.name}" for p in lab_pcaps()] + [
    f"shared/{p.relative_to(SHARED_PCAPS)}" for p in shared_pcaps()
]


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_flow_starts_and_ends_once_and_ends_as_tshark_sees_it(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Every flow meets both hooks once; the SYNs answered by RST alone (rejected) and by
    nothing (unanswered) are the ones tshark finds."""
    path = capture_path(capture, request)
    config = Config()
    started: list[Flow] = []
    ended: list[Flow] = []
    decoder = decoder_for(config)
    table = flow_table_for(
        config,
        configured_registry(config),
        lambda e: None,
        on_flow_start=started.append,
        on_flow_end=ended.append,
    )
    decoded = 0
    ts = 0
    with open_capture(path) as frames:
        for ts, linktype, data in frames:
            pkt = decoder.decode(linktype, data, ts)
            if pkt is not None:
                decoded += 1
                table.packet(pkt, ts, data)
    table.close_all(ts)
    assert len(started) == len(ended) == table.flows_total > 0
    assert {id(f) for f in started} == {id(f) for f in ended}
    assert sum(f.packets for f in ended) == decoded  # every packet belongs to one flow
    assert all(f.end_reason in ("fin", "rst", "idle", "evicted", "end") for f in ended)
    states = [f.state for f in ended if f.transport == 6]
    expected = _tshark_syn_outcomes(path)
    assert states.count("rejected") == expected["rejected"]
    assert states.count("unanswered") == expected["unanswered"]


def test_community_id_agrees_with_the_reference_library() -> None:
    import random

    from communityid import CommunityID, FlowTuple

    reference = CommunityID()
    rng = random.Random(1)
    for i in range(2000):
        size = 4 if i % 3 else 16
        src = bytes(rng.getrandbits(8) for _ in range(size))
        dst = src if i % 17 == 0 else bytes(rng.getrandbits(8) for _ in range(size))
        sport = rng.choice((502, 102, rng.randrange(65536)))
        dport = sport if i % 23 == 0 else rng.randrange(65536)
        proto, make = (6, FlowTuple.make_tcp) if i % 2 else (17, FlowTuple.make_udp)
        expected = reference.calc(make(src, dst, sport, dport))
        assert community_id(src, dst, sport, dport, proto) == expected
        assert community_id(dst, src, dport, sport, proto) == expected
