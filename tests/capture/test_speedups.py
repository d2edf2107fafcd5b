"""The compiled parts (``otsentry._speedups``) against their pure-Python equivalents.

They must give exactly the frames, numbers, shares, packets, errors and ids of the Python code
they stand in for: on the lab captures, on generated captures of every byte order and timestamp
resolution read in windows of every size, on frames at every boundary, and on arbitrary bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import otsentry.capture.pcap as pcap_module
import otsentry.decode as decode_module
import otsentry.ecs as ecs_module
from otsentry import accel
from otsentry.capture import CaptureError, Frame, PcapReader
from otsentry.capture.split import host_pair_hash, numbered_share, share_of
from otsentry.decode import Decoder
from otsentry.ecs import DocumentIds
from tests.conftest import LAB_PCAPS

FAST = accel.SPEEDUPS
needs_fast = pytest.mark.skipif(FAST is None, reason="otsentry._speedups is not built")

LINKTYPES = (0, 1, 101, 108, 113, 228, 229, 276, 147)


def read(path: Path, *, compiled: bool, share: tuple[int, int] | None = None, chunk: int = 1 << 20):
    """(frames, numbers or None, error text or None) of one pass over ``path``."""
    saved = pcap_module.SPEEDUPS
    pcap_module.SPEEDUPS = FAST if compiled else None
    try:
        reader = PcapReader(str(path), chunk_size=chunk)
        numbers = reader.keep_share(*share) if share else None
        frames: list[Frame] = []
        kept: list[int] = []
        error = None
        try:
            for frame in reader:
                frames.append(frame)
                if numbers is not None:
                    kept.append(next(numbers))
        except CaptureError as err:
            error = str(err)
        return frames, (kept if numbers is not None else None), error
    finally:
        pcap_module.SPEEDUPS = saved


@needs_fast
@pytest.mark.parametrize("path", sorted(LAB_PCAPS.glob("*.pcap")), ids=lambda p: p.name)
def test_lab_captures_read_the_same(path: Path) -> None:
    assert read(path, compiled=True) == read(path, compiled=False)


@needs_fast
@pytest.mark.parametrize("workers", [2, 3, 5])
def test_lab_capture_shares_match_the_python_split(workers: int) -> None:
    path = LAB_PCAPS / "modbus_normal.pcap"
    everything, _, _ = read(path, compiled=False)
    seen: list[int] = []
    for worker in range(workers):
        frames, numbers, error = read(path, compiled=True, share=(worker, workers))
        assert error is None
        expect_frames, expect_numbers = numbered_share(iter(everything), worker, workers)
        expected = [(f, next(expect_numbers)) for f in expect_frames]
        assert list(zip(frames, numbers or [], strict=True)) == expected
        assert (frames, numbers, error) == read(path, compiled=False, share=(worker, workers))
        seen += numbers or []
    assert sorted(seen) == list(range(1, len(everything) + 1))


def _header(order: str, nano: bool, linktype: int) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)


@st.composite
def captures(draw: st.DrawFn) -> bytes:
    """A classic pcap file, its records well-formed or not, maybe cut anywhere."""
    order = draw(st.sampled_from("<>"))
    nano = draw(st.booleans())
    out = [_header(order, nano, draw(st.sampled_from(LINKTYPES)))]
    for _ in range(draw(st.integers(0, 12))):
        data = draw(st.binary(max_size=120))
        caplen = len(data)
        if draw(st.integers(0, 9)) == 0:  # a lie: longer than what follows, or huge
            caplen = draw(st.sampled_from([len(data) + 1, 256 * 1024 + 1, 0xFFFFFFFF]))
        sec = draw(st.integers(0, 0xFFFFFFFF))
        frac = draw(st.integers(0, 0xFFFFFFFF))
        out.append(struct.pack(order + "IIII", sec, frac, caplen, len(data)) + data)
    raw = b"".join(out)
    cut = draw(st.integers(24, len(raw)))
    return raw[:cut] if draw(st.booleans()) else raw


@needs_fast
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=captures(), chunk=st.integers(1, 200), workers=st.integers(1, 4), data=st.data())
def test_generated_captures_read_the_same(
    tmp_path: Path, raw: bytes, chunk: int, workers: int, data: st.DataObject
) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(raw)
    share = (data.draw(st.integers(0, workers - 1)), workers) if workers > 1 else None
    assert read(path, compiled=True, share=share, chunk=chunk) == read(
        path, compiled=False, share=share, chunk=chunk
    )


def _ipv4(src: int, dst: int) -> bytes:
    return struct.pack("!BBHHHBBHII", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst) + bytes(20)


def _ipv6(words: list[int]) -> bytes:
    return struct.pack("!IHBB", 0x60000000, 20, 6, 64) + struct.pack("!QQQQ", *words) + bytes(20)


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """A link type and a frame: well-formed IPv4/IPv6 under every link header, or any bytes."""
    linktype = draw(st.sampled_from(LINKTYPES))
    if draw(st.integers(0, 3)) == 0:
        return linktype, draw(st.binary(max_size=80))
    top = st.sampled_from([0, 1, 0xFFFFFFFF, 0x7FFFFFFF]) | st.integers(0, 0xFFFFFFFF)
    wide = st.sampled_from([0, 0xFFFFFFFFFFFFFFFF]) | st.integers(0, 0xFFFFFFFFFFFFFFFF)
    v6 = draw(st.booleans())
    ip = _ipv6([draw(wide) for _ in range(4)]) if v6 else _ipv4(draw(top), draw(top))
    etype = 0x86DD if v6 else 0x0800
    if linktype == 1:
        tags = b"".join(
            struct.pack("!HH", draw(st.sampled_from([0x8100, 0x88A8, 0x9100, 0x9200])), 5)
            for _ in range(draw(st.integers(0, 3)))
        )
        head = bytes(12) + tags + struct.pack("!H", etype)  # each tag: TPID, then TCI
    elif linktype == 113:
        head = bytes(14) + struct.pack("!H", etype)
    elif linktype == 276:
        head = struct.pack("!H", etype) + bytes(18)
    elif linktype in (0, 108):
        family = draw(st.sampled_from([2, 10, 24, 28, 30, 7]))
        head = struct.pack("!I" if linktype == 108 or draw(st.booleans()) else "<I", family)
    else:
        head = b""
    frame = head + ip
    return linktype, frame[: draw(st.integers(0, len(frame)))] if draw(st.booleans()) else frame


@needs_fast
@settings(max_examples=2000, deadline=None)
@given(frame=frames(), workers=st.integers(1, 7))
def test_share_matches_the_python_hash(frame: tuple[int, bytes], workers: int) -> None:
    assert FAST is not None
    linktype, data = frame
    assert FAST.share(linktype, data, workers) == share_of(host_pair_hash(linktype, data), workers)


@needs_fast
def test_share_of_the_widest_ipv6_sum() -> None:
    """Four all-ones 64-bit words: a sum of 66 bits, a product of 130 — beyond 128-bit math."""
    assert FAST is not None
    data = bytes(12) + b"\x86\xdd" + _ipv6([0xFFFFFFFFFFFFFFFF] * 4)
    for workers in (2, 3, 7, 1000003, 2**62 + 1):
        assert FAST.share(1, data, workers) == share_of(host_pair_hash(1, data), workers)


@needs_fast
def test_bad_arguments_are_refused() -> None:
    assert FAST is not None
    with pytest.raises(ValueError):
        FAST.share(1, b"", 0)
    with pytest.raises(ValueError):
        FAST.scan(b"", 0, 1, False, 1000, 65535, 2, 2, 0, [], None)
    with pytest.raises(ValueError):
        FAST.scan(b"", -1, 1, False, 1000, 65535, 0, 1, 0, [], None)
    with pytest.raises(TypeError):
        FAST.scan(b"", 0, 1, False, 1000, 65535, 0, 1, 0, [], ())


def test_pure_python_is_chosen_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTSENTRY_PURE_PYTHON", "1")
    assert accel._load() is None
    monkeypatch.setattr(accel, "SPEEDUPS", None)
    assert accel.describe() == "pure Python (OTSENTRY_PURE_PYTHON)"
    monkeypatch.setenv("OTSENTRY_PURE_PYTHON", "0")
    assert (accel._load() is None) == (FAST is None)
    assert accel.describe() == "pure Python (extension not built)"
    monkeypatch.setattr(accel, "SPEEDUPS", FAST)
    assert accel.describe() == (
        "compiled" if FAST is not None else "pure Python (extension not built)"
    )


def decode_all(frames: list[Frame], *, compiled: bool) -> list[object]:
    """Every frame through a fresh Decoder, and its error counters at the end."""
    saved = decode_module.FAST_TCP4
    decode_module.FAST_TCP4 = FAST.ethernet_ipv4_tcp if compiled and FAST else None
    try:
        decoder = Decoder()
        out: list[object] = [decoder.decode(lt, data, ts) for ts, lt, data in frames]
        return [*out, dict(decoder.errors), dict(decoder.other)]
    finally:
        decode_module.FAST_TCP4 = saved


@needs_fast
def test_lab_captures_decode_the_same() -> None:
    frames = [f for path in sorted(LAB_PCAPS.glob("*.pcap")) for f in read(path, compiled=False)[0]]
    assert len(frames) > 10_000
    assert decode_all(frames, compiled=True) == decode_all(frames, compiled=False)


@st.composite
def tcp4_frames(draw: st.DrawFn) -> bytes:
    """Ethernet + IPv4 + TCP headers with every field that decides the first case drawn around
    its boundary, and a payload; sometimes cut short."""
    etype = draw(st.sampled_from([0x0800, 0x86DD, 0x8100]))
    vihl = draw(st.sampled_from([0x45, 0x46, 0x44, 0x55]))
    total = draw(st.sampled_from([0, 20, 39, 40, 41, 60, 1500, 0xFFFF]) | st.integers(0, 0xFFFF))
    frag = draw(st.sampled_from([0, 0x4000, 0x2000, 0x0001, 0x8000, 0x3FFF]))
    proto = draw(st.sampled_from([6, 17, 1]))
    doff = draw(st.sampled_from([0x40, 0x50, 0x5F, 0x60, 0xF0, 0xFF]))
    ip = struct.pack("!BBHHHBBH", vihl, 0, total, 7, frag, 64, proto, 0) + draw(
        st.binary(min_size=8, max_size=8)
    )
    tcp = (
        draw(st.binary(min_size=12, max_size=12))
        + bytes([doff])
        + draw(st.binary(min_size=7, max_size=7))
    )
    frame = draw(st.binary(min_size=12, max_size=12)) + struct.pack("!H", etype) + ip + tcp
    frame += draw(st.binary(max_size=80))
    return frame[: draw(st.integers(0, len(frame)))] if draw(st.integers(0, 4)) == 0 else frame


@needs_fast
@settings(max_examples=3000, deadline=None)
@given(data=tcp4_frames())
def test_first_decode_case_matches_python(data: bytes) -> None:
    frames: list[Frame] = [(1, 1, data)]
    assert decode_all(frames, compiled=True) == decode_all(frames, compiled=False)


@needs_fast
def test_first_decode_case_on_every_boundary_combination() -> None:
    """Each field the first case tests, at and around its boundary, in every combination."""
    frames: list[Frame] = []
    for etype, vihl, total, frag, proto, doff, size in itertools.product(
        (0x0800, 0x86DD),
        (0x45, 0x46, 0x44),
        (0, 39, 40, 41, 60, 0xFFFF),
        (0, 0x4000, 0x2000, 0x0001, 0x8000),
        (6, 17),
        (0x40, 0x4F, 0x50, 0x5F, 0x60, 0xF0),
        (53, 54, 60, 90),
    ):
        ip = struct.pack(
            "!BBHHHBBH4s4s", vihl, 0, total, 7, frag, 64, proto, 0, b"\n\0\0\1", b"\n\0\0\2"
        )
        tcp = struct.pack("!HHII", 1234, 502, 99, 0) + bytes([doff, 0x18]) + bytes(6)
        frame = bytes(12) + struct.pack("!H", etype) + ip + tcp + bytes(range(40))
        frames.append((1, 1, frame[:size]))
    assert decode_all(frames, compiled=True) == decode_all(frames, compiled=False)


@needs_fast
def test_first_decode_case_takes_only_bytes() -> None:
    assert FAST is not None
    with pytest.raises(TypeError):
        FAST.ethernet_ipv4_tcp(bytearray(60))
    assert FAST.ethernet_ipv4_tcp(b"") is None


def _replay(tmp_path: Path, name: str, pure: bool, *extra: str) -> list[dict[str, object]]:
    """The events of a replay of a lab capture, without their wall-clock member (one file: the
    workers' reader then keeps its share itself)."""
    out = tmp_path / name
    env = {**os.environ, "OTSENTRY_PURE_PYTHON": "1" if pure else "0"}
    paths = [LAB_PCAPS / "network_attacks_modbus.pcap"]
    res = subprocess.run(
        [sys.executable, "-m", "otsentry", "replay", *map(str, paths), "--out", str(out)]
        + ["--quiet", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    docs = []
    for line in (out / "events.ndjson").read_text().splitlines():
        doc = json.loads(line)
        doc["event"].pop("created")
        docs.append(doc)
    return sorted(docs, key=lambda d: str(d["event"]["id"]))


@needs_fast
@pytest.mark.parametrize("extra", [(), ("--workers", "2")], ids=["one", "workers"])
def test_replay_gives_the_same_events_either_way(tmp_path: Path, extra: tuple[str, ...]) -> None:
    compiled = _replay(tmp_path, "c", False, *extra)
    assert len(compiled) > 100
    assert compiled == _replay(tmp_path, "p", True, *extra)


@needs_fast
@settings(max_examples=2000, deadline=None)
@given(head=st.binary(max_size=300), tail=st.binary(max_size=300))
def test_uuid5_is_uuid5(head: bytes, tail: bytes) -> None:
    """Every length around the 55/56/64-byte padding edges of SHA-1, and beyond one block."""
    assert FAST is not None
    namespace, name = (head + tail)[:16], (head + tail)[16:]
    got = FAST.uuid5(head, tail).decode()
    with contextlib.suppress(UnicodeDecodeError):  # uuid5 takes a str and hashes its UTF-8
        if len(namespace) == 16:
            assert got == str(uuid.uuid5(uuid.UUID(bytes=namespace), name.decode()))
    assert got == _python_uuid5(head + tail)


def _python_uuid5(data: bytes) -> str:
    h = hashlib.sha1(data).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{(int(h[16], 16) & 3) | 8:x}{h[17:20]}-{h[20:32]}"


@needs_fast
def test_uuid5_at_every_length_to_three_blocks() -> None:
    assert FAST is not None
    for n in range(200):
        data = bytes(range(256))[:n] if n < 256 else b""
        for cut in {0, n // 2, n}:
            assert FAST.uuid5(data[:cut], data[cut:]).decode() == _python_uuid5(data)


@needs_fast
def test_document_ids_are_the_same_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [("event", 1_700_000_000_123_456_789, "1:abc="), ("alert", 0, ""), ("asset", 5, "é")]
    compiled = DocumentIds("sensor-ü")
    want = [compiled.next(*c) for c in calls]
    monkeypatch.setattr(ecs_module, "_UUID5", None)
    python = DocumentIds("sensor-ü")
    assert [python.next(*c) for c in calls] == want
