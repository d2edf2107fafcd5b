"""Flow table and TCP reassembly, driven with crafted TCP conversations."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from otsentry.capture.base import LINKTYPE_ETHERNET
from otsentry.decode import Decoder
from otsentry.dissect.registry import DissectorRegistry
from otsentry.flow.table import FlowTable
from otsentry.model import Event
from tests.dissect.framers import mbap_spec

CLIENT, SERVER = "10.10.30.10", "10.10.30.5"
CPORT, SPORT = 49822, 502
C_ISN, S_ISN = 1000, 50000


def adu(tid: int, nregs: int = 2) -> bytes:
    """A Modbus read-holding-registers request ADU."""
    return struct.pack("!HHHBBHH", tid, 0, 6, 1, 3, 0, nregs)


def seg(from_client: bool, seq_off: int, data: bytes = b"", flags: str = "PA") -> bytes:
    if from_client:
        ip = IP(src=CLIENT, dst=SERVER)
        tcp = TCP(sport=CPORT, dport=SPORT, seq=C_ISN + 1 + seq_off, flags=flags)
    else:
        ip = IP(src=SERVER, dst=CLIENT)
        tcp = TCP(sport=SPORT, dport=CPORT, seq=S_ISN + 1 + seq_off, flags=flags)
    return bytes(Ether() / ip / tcp / data)


def handshake() -> list[bytes]:
    return [
        bytes(
            Ether()
            / IP(src=CLIENT, dst=SERVER)
            / TCP(sport=CPORT, dport=SPORT, seq=C_ISN, flags="S")
        ),
        bytes(
            Ether()
            / IP(src=SERVER, dst=CLIENT)
            / TCP(sport=SPORT, dport=CPORT, seq=S_ISN, flags="SA")
        ),
        seg(True, 0, flags="A"),
    ]


class Harness:
    def __init__(self, **limits: int) -> None:
        self.log: list[tuple[bool, int, bytes]] = []
        self.events: list[Event] = []
        self.ended: list[object] = []
        self.decoder = Decoder()
        self.table = FlowTable(
            DissectorRegistry([mbap_spec(self.log)]),
            self.events.append,
            lambda ip, vlan: "seg",
            on_flow_end=self.ended.append,
            **limits,  # type: ignore[arg-type]
        )

    def feed(self, frames: list[bytes], start_ts: int = 0) -> None:
        for i, frame in enumerate(frames):
            pkt = self.decoder.decode(LINKTYPE_ETHERNET, frame, start_ts + i)
            assert pkt is not None
            self.table.frame = i + 1
            self.table.packet(pkt, start_ts + i, frame)

    def client_adus(self) -> list[bytes]:
        return [a for fc, _ts, a in self.log if fc]


def stream_of(adus: list[bytes]) -> bytes:
    return b"".join(adus)


ADUS = [adu(t, 1 + t % 5) for t in range(1, 21)]
STREAM = stream_of(ADUS)


def chop(data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    out, pos, i = [], 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append((pos, data[pos : pos + n]))
        pos += n
        i += 1
    return out


def test_in_order_whole_adus() -> None:
    h = Harness()
    frames = handshake() + [seg(True, off, d) for off, d in chop(STREAM, [12])]
    h.feed(frames)
    assert h.client_adus() == ADUS
    flow, _fc = next(iter(h.table.flows.values()))
    assert (flow.roles_from, flow.protocol) == ("handshake", "mbap")
    assert h.table.stats.bytes_buffered == 0


@pytest.mark.parametrize("sizes", [[1], [5, 7, 3], [13], [100], [7, 11]])
def test_adus_split_and_merged_across_segments(sizes: list[int]) -> None:
    h = Harness()
    h.feed(handshake() + [seg(True, off, d) for off, d in chop(STREAM, sizes)])
    assert h.client_adus() == ADUS
    assert h.table.stats.gaps == 0


def test_out_of_order_and_retransmitted_segments() -> None:
    rng = random.Random(7)
    pieces = chop(STREAM, [9, 4, 17])
    shuffled = pieces[:]
    # local reordering within windows of 4 segments, plus duplicated segments
    for i in range(0, len(shuffled) - 3, 4):
        window = shuffled[i : i + 4]
        rng.shuffle(window)
        shuffled[i : i + 4] = window
    shuffled += rng.sample(pieces, 5)
    h = Harness()
    h.feed(handshake() + [seg(True, off, d) for off, d in shuffled])
    assert h.client_adus() == ADUS
    assert h.table.stats.retransmissions >= 5
    assert h.table.stats.gaps == 0


def test_overlap_keeps_first_bytes_and_counts_conflict() -> None:
    h = Harness()
    first = STREAM[:20]
    forged = bytes(b ^ 0xFF for b in STREAM[10:30])
    frames = (
        handshake()
        + [
            seg(True, 0, first),
            seg(True, 10, forged),  # overlaps 10 bytes already delivered, brings 10 new ones
            seg(True, 30, STREAM[30:]),
        ]
    )
    h.feed(frames)
    assert h.table.stats.overlaps == 1
    # the overlapping part of the forged segment was ignored; its new bytes were taken
    got = b"".join(a for fc, _ts, a in h.log if fc)
    assert got.startswith(STREAM[:20])


def test_gap_is_reported_and_dissector_resynchronises() -> None:
    h = Harness(max_ooo_segments=4)
    pieces = chop(STREAM, [12])  # mostly whole ADUs
    lost = pieces[3]
    frames = handshake() + [seg(True, off, d) for off, d in pieces if (off, d) != lost]
    h.feed(frames)
    assert h.table.stats.gaps == 1
    assert h.table.stats.gap_bytes == len(lost[1])
    got = h.client_adus()
    assert ADUS[:3] == got[:3]
    missing = [a for a in ADUS if a not in got]
    assert 1 <= len(missing) <= 2  # the ADU(s) touched by the hole, nothing else
    flow = next(iter(h.table.flows.values()))[0]
    assert flow.dissector.gaps == 1  # type: ignore[union-attr]


def test_midstream_pickup_without_handshake() -> None:
    h = Harness()
    # the capture starts in the middle of an ADU, long after the handshake
    frames = [seg(True, off, d) for off, d in chop(STREAM[5:], [10])]
    h.feed(frames)
    assert h.table.stats.midstream_pickups == 1
    assert h.client_adus() == ADUS[1:]
    flow = next(iter(h.table.flows.values()))[0]
    assert flow.roles_from == "port"
    assert (flow.client_port, flow.server_port) == (CPORT, SPORT)


def test_adus_beyond_a_hole_that_never_fills_keep_their_arrival_time() -> None:
    """Held segments are delivered when the hole is given up on, with the time (and frame) they
    arrived in: where a PDU's last byte arrived, as Wireshark reports it."""
    h = Harness()
    frames = handshake() + [
        seg(True, 0, ADUS[0]),  # index 3
        seg(True, 24, ADUS[2]),  # index 4: ADUS[1] (bytes 12-23) is never captured
        seg(True, 36, ADUS[3]),  # index 5
        seg(True, 48, flags="FA"),
        seg(False, 0, flags="FA"),
    ]
    h.feed(frames)
    assert h.client_adus() == [ADUS[0], ADUS[2], ADUS[3]]
    assert [ts for fc, ts, _a in h.log if fc] == [3, 4, 5]
    assert h.table.stats.gaps == 1 and h.table.stats.gap_bytes == 12


def test_far_sequence_jump_is_taken_as_new_data() -> None:
    h = Harness()
    h.feed(handshake() + [seg(True, 0, ADUS[0]), seg(True, 5_000_000, ADUS[1])])
    assert h.client_adus() == ADUS[:2]  # delivered at once, not held for a 5 MB hole
    assert h.table.stats.sequence_jumps == 1
    assert h.table.stats.bytes_buffered == 0


def test_syn_from_the_protocol_port_makes_that_side_the_server() -> None:
    """A SYN from port 502 to an ephemeral port: 502 is still the server (as tshark and Zeek
    see it), so the Modbus dissector runs with the right directions."""
    h = Harness()
    syn = Ether() / IP(src=SERVER, dst=CLIENT) / TCP(sport=SPORT, dport=CPORT, seq=S_ISN, flags="S")
    h.feed([bytes(syn), seg(False, 0, adu(1)), seg(True, 0, adu(2))])
    flow = next(iter(h.table.flows.values()))[0]
    assert (flow.server_port, flow.roles_from, flow.protocol) == (SPORT, "port", "mbap")
    assert [(fc, a) for fc, _ts, a in h.log] == [(False, adu(1)), (True, adu(2))]


def test_roles_from_server_first_packet_on_known_port() -> None:
    h = Harness()
    h.feed([seg(False, 0, adu(1))])
    flow = next(iter(h.table.flows.values()))[0]
    assert (flow.server_port, flow.roles_from) == (SPORT, "port")


def test_fin_closes_flow_and_dissector() -> None:
    h = Harness()
    frames = handshake() + [
        seg(True, 0, ADUS[0]),
        seg(True, len(ADUS[0]), flags="FA"),
        seg(False, 0, flags="FA"),
    ]
    h.feed(frames)
    flow = next(iter(h.table.flows.values()))[0]
    assert flow.closed and flow.dissector.closed  # type: ignore[union-attr]
    h.table.sweep(10**12)
    assert len(h.table) == 0 and h.table.ended["closed"] == 1


def test_flow_cap_evicts_and_memory_stays_bounded() -> None:
    h = Harness(max_flows=100)
    frames = [
        bytes(
            Ether()
            / IP(src=f"10.1.{i // 250}.{i % 250 + 1}", dst=SERVER)
            / TCP(sport=40000, dport=502, flags="S", seq=i)
        )
        for i in range(1000)
    ]
    h.feed(frames)
    assert len(h.table) <= 100
    assert h.table.ended["evicted"] >= 900 - 100
    assert h.table.flows_total == 1000


def test_per_direction_buffer_cap() -> None:
    h = Harness(max_buffer_per_direction=64)
    # an MBAP header claiming 254 bytes, then a trickle of bytes that never completes it
    hdr = struct.pack("!HHHB", 1, 0, 254, 1)
    frames = (
        handshake()
        + [seg(True, 0, hdr)]
        + [seg(True, len(hdr) + 10 * i, b"\x00" * 10) for i in range(20)]
    )
    h.feed(frames)
    assert h.table.stats.overflows >= 1
    assert h.table.stats.bytes_buffered <= 64


def test_probe_finds_protocol_on_any_port() -> None:
    h = Harness()
    frame = bytes(
        Ether()
        / IP(src=CLIENT, dst=SERVER)
        / TCP(sport=40001, dport=5020, flags="PA", seq=1)
        / ADUS[0]
    )
    h.feed([frame])
    flow = next(iter(h.table.flows.values()))[0]
    assert flow.protocol == "mbap"
    assert h.client_adus() == [ADUS[0]]


def test_events_carry_community_id() -> None:
    h = Harness()
    h.feed(handshake() + [seg(True, 0, ADUS[0])])
    conn = h.events[0].envelope.conn
    # Community ID v1 of (10.10.30.10:49822 -> 10.10.30.5:502, tcp), as Zeek/Suricata compute it
    from communityid import CommunityID, FlowTuple

    assert conn.community_id == CommunityID().calc(FlowTuple.make_tcp(CLIENT, SERVER, CPORT, SPORT))
    assert (conn.client_ip, conn.server_ip, conn.segment) == (CLIENT, SERVER, "seg")
