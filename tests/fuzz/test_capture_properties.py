"""The capture readers on hostile files: truncated, byte-flipped or arbitrary pcap, pcapng and
gzip content never raise anything but ``CaptureError``, and every frame read is real content.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.capture import CaptureError, open_capture
from tests.conftest import LAB_PCAPS

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    size = struct.pack("<I", 12 + len(body))
    return struct.pack("<I", kind) + size + body + size


def pcap_head(name: str, frames: int) -> bytes:
    """A lab capture's file header and first ``frames`` records."""
    data = (LAB_PCAPS / name).read_bytes()
    pos = 24
    for _ in range(frames):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return data[:pos]


def as_pcapng(name: str, frames: int) -> bytes:
    """A lab capture's first frames as pcapng: a section, an interface, enhanced packets."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    with open_capture(LAB_PCAPS / name) as reader:
        for i, (ts, linktype, data) in enumerate(reader):
            if i == 0:
                out += _block(1, struct.pack("<HHI", linktype, 0, 65535))
            if i == frames:
                break
            us = ts // 1000
            head = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
            out += _block(6, head + data)
    return out


PCAP = pcap_head("modbus_normal.pcap", 12)
PCAPNG = as_pcapng("s7comm_normal.pcap", 12)
SEEDS = {"pcap": PCAP, "pcapng": PCAPNG}
with open_capture(LAB_PCAPS / "s7comm_normal.pcap") as _reader:
    FRAMES = [bytes(frame) for _i, (_ts, _lt, frame) in zip(range(12), _reader, strict=False)]


def read_all(path: Path) -> list[bytes]:
    """Every frame of a file, or CaptureError; any other exception fails the test."""
    frames: list[bytes] = []
    try:
        with open_capture(path) as reader:
            frames.extend(bytes(frame) for _ts, _lt, frame in reader)
    except CaptureError as err:
        assert str(err).startswith(str(path))
    return frames


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """A seed truncated anywhere and with bytes flipped, overwritten or inserted."""
    data = bytearray(seed[: draw(st.integers(0, len(seed)))])
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(("flip", "byte", "insert", "word")))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        else:  # a length field's worth of hostile value
            data[at : at + 4] = draw(st.sampled_from((0, 1, 0x7FFFFFFF, 0xFFFFFFFF))).to_bytes(
                4, "little"
            )
    return bytes(data)


def test_the_seeds_read_in_full(tmp_path: Path) -> None:
    for kind, seed in SEEDS.items():
        path = tmp_path / kind
        path.write_bytes(seed)
        assert len(read_all(path)) == 12


@pytest.mark.parametrize("kind", sorted(SEEDS))
@SETTINGS
@given(data=st.data(), compress=st.booleans())
def test_mutated_captures_raise_only_capture_error(
    tmp_path: Path, kind: str, data: st.DataObject, compress: bool
) -> None:
    content = data.draw(mutated(SEEDS[kind]))
    path = tmp_path / "capture"
    path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    for frame in read_all(path):
        assert frame in content


@SETTINGS
@given(
    magic=st.sampled_from((PCAP[:4], PCAPNG[:12], b"\x1f\x8b", b"")),
    rest=st.binary(max_size=400),
)
def test_arbitrary_bytes_after_a_magic_raise_only_capture_error(
    tmp_path: Path, magic: bytes, rest: bytes
) -> None:
    path = tmp_path / "capture"
    path.write_bytes(magic + rest)
    for frame in read_all(path):
        assert len(frame) <= len(rest)


@SETTINGS
@given(cut=st.integers(1, 400))
def test_truncated_gzip_streams_raise_only_capture_error(tmp_path: Path, cut: int) -> None:
    packed = gzip.compress(PCAPNG, mtime=0)
    path = tmp_path / "capture.gz"
    path.write_bytes(packed[: len(packed) - cut])
    frames = read_all(path)
    assert frames == FRAMES[: len(frames)]
    if cut > 16:  # beyond the 8-byte trailer and the end of the deflate stream
        assert len(frames) < len(FRAMES)
