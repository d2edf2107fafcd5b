"""The reassembler on arbitrary segment sequences: it never raises, never holds more than its
caps, keeps its byte accounting exact and releases everything at the end; and a shuffled,
duplicated segmentation of a stream (across the sequence wraparound) comes out whole, in order.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.flow.reassembly import ReassemblyStats, TcpStream

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MASK = 0xFFFFFFFF


class Framing:
    """A toy dissector: PDUs of ``1 + data[start]`` bytes, 0xFF a junk byte skipped alone."""

    def __init__(self) -> None:
        self.delivered = bytearray()
        self.gaps = 0

    def parse(self, data: bytes | bytearray, start: int, from_client: bool, ts: int) -> int:
        size = 1 if data[start] == 0xFF else 1 + data[start]
        if len(data) - start < size:
            return len(data) - start - size
        self.delivered += data[start : start + size]
        return size

    def gap(self, from_client: bool, ts: int) -> None:
        self.gaps += 1

    def close(self, ts: int) -> None:
        pass


def streams(max_buffer: int, max_ooo: int, total_cap: int) -> tuple[ReassemblyStats, list[Any]]:
    stats = ReassemblyStats()
    out = []
    for fc in (True, False):
        stream = TcpStream(fc, stats, max_buffer, max_ooo, total_cap)
        stream.dissector = Framing()
        out.append(stream)
    return stats, out


def check(stats: ReassemblyStats, pair: list[TcpStream], total_cap: int) -> None:
    held = sum(len(s.buf) + s.ooo_bytes for s in pair)
    assert stats.bytes_buffered == held
    assert held <= total_cap + max(s.max_buffer for s in pair)
    for s in pair:
        assert len(s.buf) <= s.max_buffer
        assert s.ooo_bytes <= s.max_buffer
        assert len(s.ooo) <= s.max_ooo
        assert s.ooo_bytes == sum(map(len, s.ooo.values()))


SEGMENT = st.tuples(
    st.booleans(),  # direction
    st.one_of(st.integers(-64, 3000), st.integers(0, MASK)),  # offset from the ISN, or anywhere
    st.binary(min_size=1, max_size=300),
)


@SETTINGS
@given(
    isns=st.tuples(st.integers(0, MASK), st.integers(MASK - 2000, MASK)),
    syn=st.booleans(),
    caps=st.tuples(st.integers(16, 256), st.integers(1, 4), st.integers(16, 2048)),
    segments=st.lists(SEGMENT, max_size=40),
)
def test_arbitrary_segments_stay_within_the_caps(
    isns: tuple[int, int],
    syn: bool,
    caps: tuple[int, int, int],
    segments: list[tuple[bool, int, bytes]],
) -> None:
    max_buffer, max_ooo, total_cap = caps
    stats, pair = streams(max_buffer, max_ooo, total_cap)
    if syn:
        for stream, isn in zip(pair, isns, strict=True):
            stream.syn(isn)
    for ts, (fc, offset, payload) in enumerate(segments):
        isn = isns[0 if fc else 1]
        pair[0 if fc else 1].segment((isn + 1 + offset) & MASK, payload, ts)
        check(stats, pair, total_cap)
    for stream in pair:
        stream.finish(len(segments))
    check(stats, pair, total_cap)
    assert stats.bytes_buffered == 0
    assert stats.dissector_errors == 0 and stats.no_progress == 0


@SETTINGS
@given(
    isn=st.integers(MASK - 3000, MASK),
    blob=st.binary(min_size=1, max_size=3000),
    data=st.data(),
)
def test_shuffled_duplicated_segments_come_out_whole(isn: int, blob: bytes, data: Any) -> None:
    """Within the caps, any arrival order of a stream's segments, with repeats, delivers it."""
    points = data.draw(st.lists(st.integers(1, len(blob)), max_size=12, unique=True).map(sorted))
    bounds = [0, *points] if points and points[-1] == len(blob) else [0, *points, len(blob)]
    pieces = [(a, blob[a:b]) for a, b in pairwise(bounds)]
    order = data.draw(st.permutations(pieces + data.draw(st.lists(st.sampled_from(pieces)))))
    stats, pair = streams(1 << 16, 64, 1 << 20)
    stream = pair[0]
    stream.dissector = recorder = Recorder()
    stream.syn(isn)
    for ts, (offset, payload) in enumerate(order):
        stream.segment((isn + 1 + offset) & MASK, payload, ts)
    stream.finish(len(order))
    assert bytes(recorder.delivered) == blob
    assert recorder.gaps == 0 and stats.gaps == 0
    assert stats.bytes_buffered == 0


class Recorder(Framing):
    """Consumes whatever it is given."""

    def parse(self, data: bytes | bytearray, start: int, from_client: bool, ts: int) -> int:
        self.delivered += data[start:]
        return len(data) - start
