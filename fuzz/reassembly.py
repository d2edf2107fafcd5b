"""Fuzz the TCP reassembler: crafted segments (overlapping, out of order, with holes, across the
sequence wraparound, conflicting retransmissions) for both directions of one flow.

A length-prefixed toy dissector (one length byte, then that many bytes) stands on the streams so
the parse/need/buffer paths all run. After every segment the byte accounting must match the
buffers and every cap must hold; after ``finish`` nothing may stay buffered.

Run: ``python fuzz/reassembly.py -atheris_runs=1000000``.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from otsentry.flow.reassembly import ReassemblyStats, TcpStream


class Framing:
    """A toy dissector: PDUs of ``1 + data[start]`` bytes; 0xFF is a junk byte skipped alone."""

    def __init__(self) -> None:
        self.consumed = 0
        self.gaps = 0

    def parse(self, data: bytes | bytearray, start: int, from_client: bool, ts: int) -> int:
        """Consume one PDU, or ask for the rest of it."""
        first = data[start]
        size = 1 if first == 0xFF else 1 + first
        have = len(data) - start
        if have < size:
            return have - size
        self.consumed += size
        return size

    def gap(self, from_client: bool, ts: int) -> None:
        """Count the gaps."""
        self.gaps += 1

    def close(self, ts: int) -> None:
        """Nothing to flush."""


def check(stats: ReassemblyStats, streams: list[TcpStream], total_cap: int) -> None:
    """The accounting matches the buffers and no cap is exceeded."""
    held = sum(len(s.buf) + s.ooo_bytes for s in streams)
    if stats.bytes_buffered != held:
        raise AssertionError(f"bytes_buffered {stats.bytes_buffered} but {held} held")
    if held > total_cap + max(s.max_buffer for s in streams):
        raise AssertionError(f"{held} bytes held over the total cap {total_cap}")
    for s in streams:
        if len(s.buf) > s.max_buffer or s.ooo_bytes > s.max_buffer:
            raise AssertionError(f"buffer {len(s.buf)}/{s.ooo_bytes} over {s.max_buffer}")
        if len(s.ooo) > s.max_ooo:
            raise AssertionError(f"{len(s.ooo)} segments waiting, cap {s.max_ooo}")
        if sum(map(len, s.ooo.values())) != s.ooo_bytes or s.ooo.keys() != s.ooo_at.keys():
            raise AssertionError("out-of-order bookkeeping out of step")


def test_one_input(data: bytes) -> None:
    """Play one segment sequence; raise on an exception or a broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    stats = ReassemblyStats()
    max_buffer = fdp.ConsumeIntInRange(16, 2048)
    total_cap = fdp.ConsumeIntInRange(16, 4096)
    max_ooo = fdp.ConsumeIntInRange(1, 8)
    streams = []
    isn = {}
    for fc in (True, False):
        stream = TcpStream(fc, stats, max_buffer, max_ooo, total_cap)
        stream.dissector = Framing()
        isn[fc] = fdp.ConsumeIntInRange(0, 0xFFFFFFFF)
        if fdp.ConsumeBool():
            stream.syn(isn[fc])
        streams.append(stream)
    ts = 0
    while fdp.remaining_bytes():
        fc = fdp.ConsumeBool()
        stream = streams[0 if fc else 1]
        ts += 1000
        if fdp.ConsumeIntInRange(0, 15) == 0:
            seq = fdp.ConsumeIntInRange(0, 0xFFFFFFFF)  # anywhere, a jump or far behind
        else:
            seq = (isn[fc] + fdp.ConsumeIntInRange(-64, 4096)) & 0xFFFFFFFF
        payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 600))
        if not payload:
            break
        stream.segment(seq, payload, ts)
        check(stats, streams, total_cap)
    for stream in streams:
        stream.finish(ts)
    check(stats, streams, total_cap)
    if stats.bytes_buffered or any(s.ooo for s in streams):
        raise AssertionError(f"{stats.bytes_buffered} bytes still buffered after finish")
    if stats.dissector_errors or stats.no_progress:
        raise AssertionError("the toy dissector never fails")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
