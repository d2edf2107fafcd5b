"""The compiled ``FlowTable.packet`` (``otsentry/_flowpath.c``) against the Python method.

The same random TCP traffic goes through two flow tables, one fed by ``table.packet`` and one by
``table.fast_packet()``; what the dissectors were given, the flows' counters and ends, and the
reassembly counters must be the same.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry import accel
from otsentry.capture.base import LINKTYPE_ETHERNET
from otsentry.decode import Decoder
from otsentry.dissect.base import DissectorSpec, FlowContext
from otsentry.dissect.registry import DissectorRegistry
from otsentry.flow.reassembly import TcpStream
from otsentry.flow.table import Flow, FlowTable

FAST = accel.SPEEDUPS
needs_fast = pytest.mark.skipif(FAST is None, reason="otsentry._speedups is not built")

PORT = 20000
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
RAISE, STALL = 0xEE, 0xDD


class Framer:
    """Length-prefixed PDUs (two bytes of length, then the body); a PDU starting with 0xEE
    raises, one starting with 0xDD makes no progress. Logs everything it is given."""

    def __init__(self, log: list[Any], flow_no: int) -> None:
        self.log = log
        self.flow_no = flow_no

    def parse(self, data: Any, start: int, from_client: bool, ts: int) -> int:
        view = bytes(data[start:])
        self.log.append(("parse", self.flow_no, from_client, ts, view))
        if len(view) < 2:
            return -(2 - len(view))
        if view[0] == RAISE:
            raise ValueError("a dissector bug")
        if view[0] == STALL:
            return 0
        need = 2 + (view[1] % 32)
        return need if len(view) >= need else -(need - len(view))

    def gap(self, from_client: bool, ts: int) -> None:
        self.log.append(("gap", self.flow_no, from_client, ts))

    def close(self, ts: int) -> None:
        self.log.append(("close", self.flow_no, ts))

    def truncated(self, rest: bytes, from_client: bool, ts: int) -> None:
        self.log.append(("truncated", self.flow_no, from_client, ts, rest))


def _spec(log: list[Any]) -> DissectorSpec:
    made = [0]

    def factory(ctx: FlowContext) -> Framer:
        made[0] += 1
        return Framer(log, made[0])

    return DissectorSpec(name="framer", ports=(PORT,), factory=factory)


def frame(client: int, to_server: bool, flags: int, seq: int, payload: bytes) -> bytes:
    """Ethernet / IPv4 / TCP between 10.0.0.<client>:<40000+client> and 10.0.0.1:PORT."""
    c_ip, s_ip = bytes((10, 0, 0, client)), bytes((10, 0, 0, 1))
    c_port = 40000 + client
    src, dst = (c_ip, s_ip) if to_server else (s_ip, c_ip)
    sport, dport = (c_port, PORT) if to_server else (PORT, c_port)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, 0, 0x50, flags, 8192, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0, 64, 6, 0, src, dst
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + payload


#: one step of a conversation: (client, to server, kind, offset delta, payload)
payloads = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.sampled_from([b"\x00\x03abc", b"\x00\x00", b"\x00\x05ab", b"\xee\x01x", b"\xdd\x00"]),
)
steps = st.tuples(
    st.integers(1, 3),
    st.booleans(),
    st.sampled_from(["data", "data", "data", "ack", "retrans", "skip", "syn", "fin", "rst"]),
    st.integers(-8, 64),
    payloads,
    st.sampled_from([1, 1, 1, 7_000_000_000, 400_000_000_000]),
)


#: the kinds of step a script is made of
KINDS = ("data", "ack", "retrans", "skip", "syn", "fin", "rst")


def run_script(script: list[tuple[int, bool, str, int, bytes, int]], fast: bool) -> dict[str, Any]:
    """Play ``script`` (steps of (client 1-3, to the server, kind, offset, payload, time step))
    through a flow table, by ``fast_packet()`` or by ``packet``; what came out of it."""
    log: list[Any] = []
    ended: list[Flow] = []
    table = FlowTable(
        DissectorRegistry([_spec(log)]),
        log.append,
        lambda ip, vlan: "seg",
        on_flow_end=ended.append,
        max_buffer_per_direction=64,
        max_ooo_segments=3,
    )
    packet = table.fast_packet() if fast else table.packet
    decoder = Decoder()
    # per (client, direction): the next sequence number
    nxt: dict[tuple[int, bool], int] = {}
    ts = 1_000
    for number, (client, to_server, kind, delta, payload, step) in enumerate(script, 1):
        ts += step
        key = (client, to_server)
        seq = nxt.setdefault(key, 1000 * client + (0 if to_server else 500_000))
        flags, data = ACK | PSH, payload
        if kind == "ack":
            data = b""
        elif kind == "retrans":
            seq -= abs(delta)
        elif kind == "skip":
            seq += abs(delta)
        elif kind == "syn":
            flags, data = (SYN if to_server else SYN | ACK), b""
        elif kind == "fin":
            flags |= FIN
        elif kind == "rst":
            flags, data = RST, b""
        raw = frame(client, to_server, flags, seq, data)
        pkt = decoder.decode(LINKTYPE_ETHERNET, raw, ts)
        assert pkt is not None
        table.frame = number
        packet(pkt, ts, raw)
        if kind in ("data", "skip", "fin"):
            nxt[key] = seq + len(data) + (1 if flags & FIN else 0)
        elif kind == "syn":
            nxt[key] = seq + 1
    live = sorted(
        (
            flow.client_port,
            flow.packets_c,
            flow.packets_s,
            flow.bytes_c,
            flow.bytes_s,
            flow.last_ts,
            flow.state,
            flow.closed,
            [
                None if s is None else (s.next_seq, bytes(s.buf), sorted(s.ooo.items()))
                for s in (flow.stream_c, flow.stream_s)
            ],
        )
        for flow, fc in table.flows.values()
        if fc
    )
    table.close_all(ts + 1)
    return {
        "log": log,
        "live": live,
        "ended": [
            (f.client_port, f.packets, f.bytes_c + f.bytes_s, f.end_reason, f.state) for f in ended
        ],
        "stats": table.stats.as_dict(),
        "ends": dict(table.ended),
        "fast": getattr(packet, "fast", None),
    }


@needs_fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=1, max_size=60))
def test_compiled_packet_path_matches_the_python_method(
    script: list[tuple[int, bool, str, int, bytes, int]],
) -> None:
    fast = run_script(script, True)
    slow = run_script(script, False)
    assert fast.pop("fast") is not None
    slow.pop("fast")
    assert fast == slow


@needs_fast
def test_the_compiled_path_takes_an_established_conversation() -> None:
    script: list[tuple[int, bool, str, int, bytes, int]] = [
        (1, True, "syn", 0, b"", 1),
        (1, False, "syn", 0, b"", 1),
        (1, True, "ack", 0, b"", 1),
    ]
    for i in range(20):
        script.append((1, True, "data", 0, b"\x00\x02" + bytes((i, i)), 1))
        script.append((1, False, "data", 0, b"\x00\x01" + bytes((i,)), 1))
        script.append((1, True, "ack", 0, b"", 1))
    fast = run_script(script, True)
    # the SYN, the SYN-ACK and each direction's first payload (its stream is made) are handed on
    assert fast.pop("fast") == len(script) - 4
    slow = run_script(script, False)
    slow.pop("fast")
    assert fast == slow
    assert sum(1 for entry in fast["log"] if entry[0] == "parse") == 40


@needs_fast
def test_a_subclassed_table_keeps_the_python_method() -> None:
    class Table(FlowTable):
        pass

    table = Table(DissectorRegistry([]), lambda e: None, lambda ip, vlan: "seg")
    assert table.fast_packet() == table.packet


@needs_fast
def test_interrupts_from_a_dissector_are_not_swallowed() -> None:
    class Interrupting(Framer):
        def parse(self, data: Any, start: int, from_client: bool, ts: int) -> int:
            raise KeyboardInterrupt

    spec = DissectorSpec(name="x", ports=(PORT,), factory=lambda ctx: Interrupting([], 1))
    table = FlowTable(DissectorRegistry([spec]), lambda e: None, lambda ip, vlan: "seg")
    packet = table.fast_packet()
    decoder = Decoder()
    handshake = [(True, SYN, 9), (False, SYN | ACK, 99), (True, ACK, 10)]
    for i, (to_server, flags, seq) in enumerate(handshake):
        raw = frame(1, to_server, flags, seq, b"")
        pkt = decoder.decode(LINKTYPE_ETHERNET, raw, i)
        assert pkt is not None
        packet(pkt, i, raw)
    for seq, ts in ((10, 4), (12, 5)):  # the first payload goes through table.packet
        raw = frame(1, True, ACK | PSH, seq, b"\x00\x00")
        pkt = decoder.decode(LINKTYPE_ETHERNET, raw, ts)
        assert pkt is not None
        with pytest.raises(KeyboardInterrupt):
            packet(pkt, ts, raw)
    assert packet.fast == 2  # type: ignore[attr-defined]  # the handshake's ACK and the last


@needs_fast
def test_bad_arguments_are_refused() -> None:
    assert FAST is not None
    table = FlowTable(DissectorRegistry([]), lambda e: None, lambda ip, vlan: "seg")
    with pytest.raises(TypeError):
        FAST.FlowPath(table, TcpStream, Flow)  # the classes swapped: slots differ
    packet = table.fast_packet()
    with pytest.raises(TypeError):
        packet(1, 2)  # type: ignore[call-arg]
