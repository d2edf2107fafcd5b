"""Classic pcap reader: formats, chunking, limits, truncation and corruption."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import EDecimal, PcapWriter

from otsentry.capture import CaptureError, PcapReader
from otsentry.capture.pcap import MAX_CAPLEN

from .conftest import (
    SHARED_PCAPS,
    T0,
    pcap_file,
    pcap_header,
    pcap_record,
    read_until_error,
    sample_frames,
    write,
)


def timed(frames: list[bytes], step_ns: int = 1_000) -> list[tuple[int, bytes]]:
    return [(T0 * 1_000_000_000 + i * step_ns, data) for i, data in enumerate(frames)]


@pytest.mark.parametrize("nano", [False, True])
def test_reads_what_scapy_writes(tmp_path: Path, nano: bool) -> None:
    path = tmp_path / "scapy.pcap"
    frames = sample_frames(12)
    times = [
        EDecimal(T0) + EDecimal(i) / 8 + (EDecimal("0.000000123") if nano else 0) for i in range(12)
    ]
    writer = PcapWriter(str(path), nano=nano, linktype=1)
    for data, t in zip(frames, times, strict=True):
        pkt = Ether(data)
        pkt.time = t
        writer.write(pkt)
    writer.close()

    reader = PcapReader(path)
    got = list(reader)

    assert reader.nanosecond is nano
    assert reader.linktype == 1
    assert [f[2] for f in got] == frames
    assert [f[0] for f in got] == [int(t * 1_000_000_000) for t in times]
    assert {f[1] for f in got} == {1}
    assert all(type(f) is tuple and type(f[2]) is bytes for f in got)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_byte_orders_and_precisions(tmp_path: Path, order: str, nano: bool) -> None:
    frames = timed(sample_frames(20), step_ns=1_234_567_000 + (89 if nano else 0))
    data, _ = pcap_file(frames, order=order, nano=nano, linktype=101)
    reader = PcapReader(write(tmp_path / "f.cap", data))

    assert list(reader) == [(ts, 101, frame) for ts, frame in frames]
    assert reader.nanosecond is nano
    assert reader.version == (2, 4)


def test_fcs_flag_bits_are_not_part_of_the_link_type(tmp_path: Path) -> None:
    header = bytearray(pcap_header(linktype=1))
    header[20:24] = struct.pack("<I", 0x1000_0000 | 1)  # "FCS present" flag with FCS length 0
    data = bytes(header) + pcap_record(5, b"\xaa" * 60)

    assert list(PcapReader(write(tmp_path / "f.pcap", data))) == [(0, 1, b"\xaa" * 60)]


@pytest.mark.parametrize("chunk_size", [1, 3, 15, 16, 17, 61, 4096])
def test_records_spanning_chunk_boundaries(tmp_path: Path, chunk_size: int) -> None:
    frames = timed(sample_frames(25) + [b""])  # an empty record too
    path = write(tmp_path / "f.pcap", pcap_file(frames)[0])

    got, err = read_until_error(path, chunk_size=chunk_size)

    assert err is None
    assert got == [(ts, 1, data) for ts, data in frames]


def test_records_up_to_the_limit_are_read(tmp_path: Path) -> None:
    frames = timed([b"\x01" * 200_000, b"\x02" * MAX_CAPLEN, b"\x03" * 60])
    path = write(tmp_path / "big.pcap", pcap_file(frames)[0])

    got, err = read_until_error(path, chunk_size=65536)

    assert err is None
    assert [len(f[2]) for f in got] == [200_000, MAX_CAPLEN, 60]


@pytest.mark.parametrize("caplen", [MAX_CAPLEN + 1, 0xFFFFFFFF])
def test_record_length_over_the_limit(tmp_path: Path, caplen: int) -> None:
    frames = timed(sample_frames(3))
    data, offsets = pcap_file(frames)
    bad = offsets[2]
    corrupt = data[: bad + 8] + struct.pack("<I", caplen) + data[bad + 12 :]
    # enough bytes behind it that only the limit can refuse the record
    corrupt += bytes(MAX_CAPLEN + 64)

    got, err = read_until_error(write(tmp_path / "f.pcap", corrupt))

    assert [f[2] for f in got] == [frame for _, frame in frames[:2]]
    assert err is not None
    assert (err.path, err.offset) == (str(tmp_path / "f.pcap"), bad)
    assert err.reason == f"record length {caplen} exceeds 262144-byte limit"


def test_zero_byte_file_is_an_empty_capture(tmp_path: Path) -> None:
    reader = PcapReader(write(tmp_path / "empty.pcap", b""))

    assert list(reader) == []
    assert reader.linktype is None
    assert reader.position == reader.size == 0


def test_header_only_file_is_an_empty_capture(tmp_path: Path) -> None:
    reader = PcapReader(write(tmp_path / "h.pcap", pcap_header(linktype=113, snaplen=1500)))

    assert list(reader) == []
    assert (reader.linktype, reader.snaplen) == (113, 1500)
    assert reader.position == reader.size == 24


@pytest.mark.parametrize("length", [4, 10, 23])
def test_truncated_file_header(tmp_path: Path, length: int) -> None:
    path = write(tmp_path / "h.pcap", pcap_header()[:length])

    with pytest.raises(CaptureError) as info:
        PcapReader(path)

    assert (info.value.offset, info.value.reason) == (
        0,
        f"truncated file header: {length} of 24 bytes",
    )


def test_other_magic_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "x.pcap", b"\x0a\x0d\x0d\x0a" + bytes(40))

    with pytest.raises(CaptureError, match=r"not a pcap file \(magic 0x0a0d0d0a\)"):
        PcapReader(path)


def test_archaic_version_is_refused(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1)

    with pytest.raises(CaptureError, match=r"unsupported pcap version 1\.0"):
        PcapReader(write(tmp_path / "old.pcap", header))


def _expected_cut(offsets: list[int], end: int, cut: int) -> tuple[int, tuple[int, str] | None]:
    """(complete records before ``cut``, (offset, reason) of the error or None)."""
    bounds = [*offsets, end]
    done = sum(1 for i in range(len(offsets)) if bounds[i + 1] <= cut)
    if cut in bounds:
        return done, None
    start = offsets[done]
    have = cut - start
    if have < 16:
        return done, (start, f"truncated record header: {have} of 16 bytes")
    return done, (start, f"truncated record: {have} of {bounds[done + 1] - start} bytes")


def _record_offsets(data: bytes) -> list[int]:
    """Record offsets of a well-formed little-endian pcap, walked independently of the reader."""
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    assert pos == len(data)
    return offsets


def _check_cuts(tmp_path: Path, data: bytes, offsets: list[int], cuts: list[int]) -> None:
    full, err = read_until_error(write(tmp_path / "full.pcap", data))
    assert err is None and len(full) == len(offsets)
    for cut in cuts:
        path = write(tmp_path / f"cut{cut}.pcap", data[:cut])
        got, err = read_until_error(path, chunk_size=4096)
        done, expected = _expected_cut(offsets, len(data), cut)
        assert got == full[:done], cut
        if expected is None:
            assert err is None, cut
        else:
            assert err is not None, cut
            assert (err.path, err.offset, err.reason) == (str(path), *expected), cut
        path.unlink()


def test_truncated_at_every_boundary_and_inside_records(tmp_path: Path) -> None:
    data, offsets = pcap_file(timed(sample_frames(30)))
    cuts = [24]
    for start in offsets:
        cuts += [start + 1, start + 7, start + 15, start + 16, start + 17, start + 40]
    cuts += [*offsets, len(data) - 1, len(data)]
    _check_cuts(tmp_path, data, offsets, sorted(c for c in set(cuts) if 24 <= c <= len(data)))


def test_truncated_real_capture(tmp_path: Path) -> None:
    source = SHARED_PCAPS / "zeek/testing/btest/Traces/modbus/modbusSmall.pcap"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    data = source.read_bytes()
    offsets = _record_offsets(data)
    cuts = {*offsets, len(data)}
    for start, nxt in zip(offsets, [*offsets[1:], len(data)], strict=True):
        cuts |= {start + 5, start + 16, (start + nxt) // 2, nxt - 1}
    _check_cuts(tmp_path, data, offsets, sorted(cuts))


def test_corrupt_length_reads_as_truncation_at_that_record(tmp_path: Path) -> None:
    frames = timed(sample_frames(10))
    data, offsets = pcap_file(frames)
    bad = offsets[6]
    corrupt = data[: bad + 8] + struct.pack("<I", 100_000) + data[bad + 12 :]

    got, err = read_until_error(write(tmp_path / "f.pcap", corrupt))

    assert [f[2] for f in got] == [frame for _, frame in frames[:6]]
    assert err is not None
    assert err.offset == bad
    assert err.reason == f"truncated record: {len(data) - bad} of 100016 bytes"


def test_position_advances_to_size(tmp_path: Path) -> None:
    data, _ = pcap_file(timed(sample_frames(40)))
    reader = PcapReader(write(tmp_path / "f.pcap", data), chunk_size=1000)
    assert reader.size == len(data)
    seen = []
    for _frame in reader:
        seen.append(reader.position)

    assert seen == sorted(seen)
    assert 0 < seen[0] < len(data)
    assert reader.position == len(data)


def test_iterates_once(tmp_path: Path) -> None:
    reader = PcapReader(write(tmp_path / "f.pcap", pcap_file(timed(sample_frames(2)))[0]))
    assert len(list(reader)) == 2

    with pytest.raises(RuntimeError):
        iter(reader)


def test_close_stops_iteration_with_an_error(tmp_path: Path) -> None:
    data, _ = pcap_file(timed(sample_frames(10)))
    with PcapReader(write(tmp_path / "f.pcap", data), chunk_size=64) as reader:
        frames = iter(reader)
        next(frames)
        reader.close()
        with pytest.raises(CaptureError, match="read after close"):
            list(frames)
