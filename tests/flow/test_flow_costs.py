"""What the flow layer does to be cheap must not change what it means: ``Conn`` (not frozen,
yet compared and hashed by value), the flow's two keys (one of them the first packet's), and
the shared empty dict a TCP stream holds until a segment arrives out of order."""

from __future__ import annotations

import dataclasses

from otsentry.decode import ACK, SYN, TCP
from otsentry.flow import reassembly
from otsentry.flow.reassembly import ReassemblyStats, TcpStream
from otsentry.model import Conn


def test_conn_compares_hashes_and_replaces_by_value() -> None:
    a = Conn("1:x", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502, segment="cell")
    b = Conn("1:x", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502, segment="cell")
    assert a == b and hash(a) == hash(b) and a is not b
    assert len({a, b}) == 1
    c = dataclasses.replace(a, client_ip="10.0.0.3")
    assert c != a and c.client_ip == "10.0.0.3" and c.segment == "cell"
    assert [f.name for f in dataclasses.fields(Conn)][:3] == [
        "community_id",
        "transport",
        "client_ip",
    ]
    assert repr(a).startswith("Conn(community_id='1:x', transport='tcp'")


class _Sink:
    """A dissector taking 4-byte records."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def parse(self, data: bytes, pos: int, from_client: bool, ts: int) -> int:
        if len(data) - pos < 4:
            return -(4 - (len(data) - pos))
        self.got.append(bytes(data[pos : pos + 4]))
        return 4

    def gap(self, from_client: bool, ts: int) -> None:
        self.got.append(b"GAP")

    def close(self, ts: int) -> None:
        pass


def _stream(max_ooo: int = 4) -> tuple[TcpStream, _Sink]:
    stream = TcpStream(True, ReassemblyStats(), 1 << 16, max_ooo, 1 << 20)
    sink = _Sink()
    stream.dissector = sink  # type: ignore[assignment]
    stream.syn(999)
    return stream, sink


def test_out_of_order_segments_get_dicts_of_their_own() -> None:
    s1, sink1 = _stream()
    s2, _sink2 = _stream()
    assert s1.ooo is s2.ooo is reassembly._NONE_WAITING  # nothing waits: nothing allocated
    s1.segment(1004, b"bbbb", 1)  # a hole before it: waits
    assert s1.ooo == {1004: b"bbbb"} and s1.ooo_bytes == 4
    assert s2.ooo == {} and not reassembly._NONE_WAITING
    s1.segment(1000, b"aaaa", 2)  # fills the hole
    assert sink1.got == [b"aaaa", b"bbbb"] and not s1.ooo and s1.ooo_bytes == 0
    # too many waiting: holes skipped, and a far jump drops what waits
    for i in range(6):
        s2.segment(1100 + 8 * i, b"cccc", 3)
    s2.segment(1000 + (1 << 21), b"dddd", 4)
    assert not s2.ooo and s2.ooo_bytes == 0
    s2.segment(1000 + (1 << 21) + 10, b"eeee", 5)
    s2.release()
    assert s2.ooo is reassembly._NONE_WAITING and s2.stats.bytes_buffered == 0
    s1.finish(6)
    s1.release()
    assert not reassembly._NONE_WAITING


def test_flow_keys_are_the_packets_and_its_mirror() -> None:
    from otsentry.dissect.registry import DissectorRegistry
    from otsentry.flow.table import FlowTable

    table = FlowTable(DissectorRegistry(), lambda e: None, lambda ip, vlan: "seg")
    frame = bytes(60)
    key = (b"\x0a\x00\x00\x01", 40000, b"\x0a\x00\x00\x02", 502, 0, TCP)
    table.packet((key, SYN, 5, b"", 0), 1, frame)
    flow, fc = table.flows[key]
    assert fc and flow.key_c is key
    assert flow.key_s == (b"\x0a\x00\x00\x02", 502, b"\x0a\x00\x00\x01", 40000, 0, TCP)
    assert table.flows[flow.key_s] == (flow, False)
    # first seen from the server (a SYN-ACK): the packet's key is the server's
    key2 = (b"\x0a\x00\x00\x02", 502, b"\x0a\x00\x00\x03", 40001, 0, TCP)
    table.packet((key2, SYN | ACK, 5, b"", 0), 2, frame)
    flow2, fc2 = table.flows[key2]
    assert not fc2 and flow2.key_s is key2 and flow2.client_port == 40001


def test_streams_are_made_at_their_first_payload_from_the_syn() -> None:
    from tests.flow.test_table import ADUS, Harness, handshake, seg

    h = Harness()
    h.feed(handshake())
    ((flow, _fc),) = {id(f): (f, c) for f, c in h.table.flows.values()}.values()
    assert flow.reassemble and flow.stream_c is None and flow.stream_s is None
    assert flow.seq_c >= 0 and flow.seq_s >= 0  # kept for the streams to come
    h.feed([seg(True, 0, ADUS[0])])
    assert flow.stream_c is not None and flow.stream_s is None
    assert flow.stream_c.dissector is flow.dissector
    assert h.client_adus() == [ADUS[0]]  # taken in order from the SYN's sequence number
    assert h.table.stats.midstream_pickups == 0
