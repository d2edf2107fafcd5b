"""Format detection, gzip, path expansion, time-ordered merging, and the shared public captures."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from otsentry.capture import (
    CaptureError,
    FileSource,
    Frame,
    PcapngReader,
    PcapReader,
    expand_paths,
    merge_frames,
    open_capture,
)

from .conftest import (
    SHARED_PCAPS,
    T0,
    epb,
    idb,
    pcap_file,
    read_until_error,
    sample_frames,
    shared_capture_files,
    shb,
    write,
)

NS = 1_000_000_000
FRAMES = sample_frames(40, seed=7)


def pcap_bytes(frames: list[bytes] = FRAMES, t0: int = T0 * NS, step: int = 1_000) -> bytes:
    return pcap_file([(t0 + i * step, f) for i, f in enumerate(frames)])[0]


def pcapng_bytes(frames: list[bytes] = FRAMES) -> bytes:
    return shb() + idb(1) + b"".join(epb(0, T0 * 1_000_000 + i, f) for i, f in enumerate(frames))


# --- format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "cls"),
    [
        ("pcapng-named.pcap", "pcapng", PcapngReader),
        ("pcap-named.pcapng", "pcap", PcapReader),
        ("no-extension", "pcapng", PcapngReader),
        ("capture.txt", "pcap", PcapReader),
    ],
)
def test_format_comes_from_magic_not_name(
    tmp_path: Path, name: str, content: str, cls: type
) -> None:
    data = pcapng_bytes() if content == "pcapng" else pcap_bytes()
    reader = open_capture(write(tmp_path / name, data))

    assert type(reader) is cls
    assert [f[2] for f in reader] == FRAMES


@pytest.mark.parametrize(
    ("content", "magic"),
    [
        (b"GET / HTTP/1.1\r\n", "47455420"),
        (b"\x00\x01", "0001"),
        (b"\xa1\xb2\xc3\xd5" + bytes(30), "a1b2c3d5"),
    ],
)
def test_unknown_magic(tmp_path: Path, content: bytes, magic: str) -> None:
    path = write(tmp_path / "x.pcap", content)

    with pytest.raises(CaptureError) as info:
        open_capture(path)

    assert (info.value.path, info.value.offset) == (str(path), 0)
    assert info.value.reason == f"not a pcap or pcapng file (magic 0x{magic})"


def test_zero_byte_file_is_an_empty_capture(tmp_path: Path) -> None:
    reader = open_capture(write(tmp_path / "empty.pcap", b""))

    assert list(reader) == []
    assert reader.size == reader.position == 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as info:
        open_capture(tmp_path / "nope.pcap")

    assert info.value.offset == 0
    assert str(tmp_path / "nope.pcap") in str(info.value)


# --- gzip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["pcap", "pcapng"])
def test_gzip_is_read_transparently(tmp_path: Path, content: str) -> None:
    data = pcapng_bytes() if content == "pcapng" else pcap_bytes()
    plain = list(open_capture(write(tmp_path / "plain", data)))
    path = write(tmp_path / "c.pcap", gzip.compress(data))

    reader = open_capture(path)
    got = list(reader)

    assert got == plain
    assert reader.size == path.stat().st_size < len(data)
    assert reader.position == reader.size


def test_gzip_position_counts_compressed_bytes(tmp_path: Path) -> None:
    frames = [os.urandom(200 + i % 700) for i in range(3000)]  # incompressible: ~1.4 MB on disk
    path = write(tmp_path / "c.gz", gzip.compress(pcap_bytes(frames), compresslevel=1))
    reader = open_capture(path)
    positions = [reader.position for _ in reader]

    assert positions == sorted(positions)
    assert 0 < positions[0] < reader.size // 2
    assert reader.position == reader.size


def test_gzip_is_streamed_in_bounded_pieces(tmp_path: Path) -> None:
    path = write(tmp_path / "zeros.gz", gzip.compress(bytes(50_000_000)))  # ~50 KB on disk
    source = FileSource(path)
    sizes = []
    while chunk := source.read(1 << 20):
        sizes.append(len(chunk))
    source.close()

    assert sum(sizes) == 50_000_000
    assert max(sizes) == 1 << 20


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    data = pcap_bytes()
    cut = len(data) // 2
    path = write(tmp_path / "two.gz", gzip.compress(data[:cut]) + gzip.compress(data[cut:]))

    assert [f[2] for f in open_capture(path)] == FRAMES


def test_gzip_of_empty_content(tmp_path: Path) -> None:
    assert list(open_capture(write(tmp_path / "e.gz", gzip.compress(b"")))) == []


def test_gzip_of_something_else(tmp_path: Path) -> None:
    with pytest.raises(
        CaptureError, match=r"offset 0: not a pcap or pcapng file \(magic 0x3c3f786d\)"
    ):
        open_capture(write(tmp_path / "x.gz", gzip.compress(b"<?xml version='1.0'?>")))


@pytest.mark.parametrize("content", ["pcap", "pcapng"])
def test_truncated_gzip(tmp_path: Path, content: str) -> None:
    data = pcapng_bytes() if content == "pcapng" else pcap_bytes()
    full = list(open_capture(write(tmp_path / "plain", data)))
    packed = zlib.compressobj(6, zlib.DEFLATED, 31)
    body = packed.compress(data) + packed.flush(zlib.Z_FULL_FLUSH)  # no end-of-stream marker
    path = write(tmp_path / "t.gz", body)

    got, err = read_until_error(path)

    assert got == full  # every frame was decompressed before the stream ran out
    assert err is not None
    assert (err.path, err.offset, err.reason) == (str(path), len(data), "truncated gzip stream")


def test_gzip_cut_inside_a_record(tmp_path: Path) -> None:
    data = pcap_bytes()
    packed = gzip.compress(data)
    path = write(tmp_path / "t.gz", packed[: len(packed) * 2 // 3])
    full = list(open_capture(write(tmp_path / "plain", data)))

    got, err = read_until_error(path)

    assert err is not None and err.reason == "truncated gzip stream"
    assert 0 < len(got) < len(full)
    assert got == full[: len(got)]
    _, offsets = pcap_file([(0, f) for f in FRAMES])
    assert err.offset == offsets[len(got)]


def test_gzip_crc_mismatch_after_all_frames(tmp_path: Path) -> None:
    data = pcap_bytes()
    packed = bytearray(gzip.compress(data))
    packed[-8] ^= 0xFF  # CRC-32 in the trailer

    got, err = read_until_error(write(tmp_path / "crc.gz", bytes(packed)))

    assert [f[2] for f in got] == FRAMES  # the check fails only once all data is out
    assert err is not None
    assert (
        err.reason == "corrupt gzip stream: Error -3 while decompressing data: incorrect data check"
    )
    assert err.offset == len(data)


def test_corrupt_gzip_member(tmp_path: Path) -> None:
    frames = [os.urandom(300) for _ in range(500)]
    data = pcap_bytes(frames)
    cut = len(data) // 2
    second = bytearray(gzip.compress(data[cut:]))
    second[2] = 7  # compression method: not deflate
    full = list(open_capture(write(tmp_path / "plain", data)))

    got, err = read_until_error(write(tmp_path / "bad.gz", gzip.compress(data[:cut]) + second))

    _, offsets = pcap_file([(0, f) for f in frames])
    complete = sum(1 for o, f in zip(offsets, frames, strict=True) if o + 16 + len(f) <= cut)
    assert got == full[:complete]
    assert err is not None and err.reason.startswith("corrupt gzip stream")
    assert err.offset == offsets[complete]


def test_gzip_with_trailing_garbage(tmp_path: Path) -> None:
    data = pcap_bytes()
    got, err = read_until_error(write(tmp_path / "g.gz", gzip.compress(data) + b"garbage!"))

    assert len(got) == len(FRAMES)
    assert err is not None and err.reason.startswith("corrupt gzip stream")
    assert err.offset == len(data)


# --- expand_paths -------------------------------------------------------------------------------


def test_expand_paths(tmp_path: Path) -> None:
    root = tmp_path / "caps"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    write(root / "b" / "deep" / "z.bin", pcapng_bytes())
    write(root / "b" / "one.pcap", pcap_bytes())
    write(root / "a" / "two.pcapng.gz", gzip.compress(pcapng_bytes()))
    write(root / "a" / "notes.txt", b"not a capture")
    write(root / "a" / "log.gz", gzip.compress(b"neither"))
    write(root / "a" / "empty.pcap", b"")
    write(root / "a" / "fake.pcap", b"\xd4\xc3")
    write(root / "top.cap", pcap_bytes())
    single = write(tmp_path / "single.pcap", pcap_bytes())
    empty = write(tmp_path / "empty.pcap", b"")

    got = expand_paths([single, root, str(root / "top.cap"), empty])

    assert got == [
        single,
        root / "a" / "two.pcapng.gz",
        root / "b" / "deep" / "z.bin",
        root / "b" / "one.pcap",
        root / "top.cap",
        empty,
    ]


def test_expand_paths_refuses_a_named_non_capture(tmp_path: Path) -> None:
    notes = write(tmp_path / "notes.pcap", b"hello world")

    with pytest.raises(CaptureError, match=r"not a pcap or pcapng file \(magic 0x68656c6c\)"):
        expand_paths([notes])
    with pytest.raises(CaptureError):
        expand_paths([tmp_path / "missing.pcap"])


# --- merge_frames -------------------------------------------------------------------------------


class ListReader:
    """A reader over given frames that can fail after them."""

    def __init__(self, name: str, frames: list[Frame], error_at: int | None = None) -> None:
        self.path = name
        self.size = 0
        self.frames = frames
        self.error_at = error_at
        self.closed = False

    @property
    def position(self) -> int:
        return 0

    def __iter__(self) -> Iterator[Frame]:
        yield from self.frames
        if self.error_at is not None:
            raise CaptureError(self.path, self.error_at, "broken")

    def close(self) -> None:
        self.closed = True


def no_errors(err: CaptureError) -> None:
    pytest.fail(f"unexpected error: {err}")


def frames_at(tag: int, times: list[int]) -> list[Frame]:
    return [(t, 1, bytes([tag, i])) for i, t in enumerate(times)]


def test_merge_in_timestamp_order() -> None:
    a = ListReader("a", frames_at(1, [1, 4, 4, 9]))
    b = ListReader("b", frames_at(2, [2, 4, 5]))
    c = ListReader("c", frames_at(3, [0, 10]))
    empty = ListReader("e", [])

    got = list(merge_frames([a, b, empty, c], keep_going=False, on_error=no_errors))

    assert [(f[0], f[2][0]) for f in got] == [
        (0, 3), (1, 1), (2, 2), (4, 1), (4, 1), (4, 2), (5, 2), (9, 1), (10, 3),
    ]  # fmt: skip
    assert a.closed and b.closed and c.closed and empty.closed


def test_merge_keeps_file_order_within_a_file() -> None:
    a = ListReader("a", frames_at(1, [5, 3, 8]))  # out of order on disk
    b = ListReader("b", frames_at(2, [4, 6]))

    got = list(merge_frames([a, b], keep_going=False, on_error=no_errors))

    assert [f[2] for f in got if f[2][0] == 1] == [b"\x01\x00", b"\x01\x01", b"\x01\x02"]
    assert len(got) == 5


def test_merge_single_reader_passes_frames_through(tmp_path: Path) -> None:
    reader = open_capture(write(tmp_path / "a.pcap", pcap_bytes()))

    got = list(merge_frames([reader], keep_going=False, on_error=no_errors))

    assert [f[2] for f in got] == FRAMES


@pytest.mark.parametrize("readers", [1, 3])
def test_merge_keep_going_drops_the_broken_reader(readers: int) -> None:
    bad = ListReader("bad", frames_at(9, [1, 3, 5]), error_at=123)
    others = [ListReader(f"r{i}", frames_at(i, [2, 4, 6, 8])) for i in range(readers - 1)]
    errors: list[CaptureError] = []

    got = list(merge_frames([bad, *others], keep_going=True, on_error=errors.append))

    assert [(e.path, e.offset) for e in errors] == [("bad", 123)]
    assert len(got) == 3 + 4 * (readers - 1)
    assert [f[0] for f in got] == sorted(f[0] for f in got)
    assert bad.closed


@pytest.mark.parametrize("readers", [1, 3])
def test_merge_stops_on_error_without_keep_going(readers: int) -> None:
    bad = ListReader("bad", frames_at(9, [1, 3, 5]), error_at=77)
    others = [ListReader(f"r{i}", frames_at(i, [2, 4, 6, 8])) for i in range(readers - 1)]
    errors: list[CaptureError] = []
    got: list[Frame] = []

    with pytest.raises(CaptureError) as info:
        for frame in merge_frames([bad, *others], keep_going=False, on_error=errors.append):
            got.append(frame)

    assert errors == [info.value]
    assert [f[2] for f in got if f[2][0] == 9] == [b"\x09\x00", b"\x09\x01", b"\x09\x02"]
    assert all(f[0] <= 5 for f in got)
    assert bad.closed and all(r.closed for r in others)


def test_merge_error_on_first_frame() -> None:
    bad = ListReader("bad", [], error_at=0)
    good = ListReader("good", frames_at(1, [1, 2]))
    errors: list[CaptureError] = []

    got = list(merge_frames([bad, good], keep_going=True, on_error=errors.append))

    assert len(got) == 2 and len(errors) == 1


def test_merge_real_files(tmp_path: Path) -> None:
    a = write(tmp_path / "a.pcap", pcap_bytes(FRAMES[:20], t0=T0 * NS, step=2_000))
    b = write(tmp_path / "b.gz", gzip.compress(pcapng_bytes(FRAMES[20:])))  # 1 µs steps
    readers = [open_capture(p) for p in expand_paths([tmp_path])]

    got = list(merge_frames(readers, keep_going=False, on_error=no_errors))

    assert len(got) == 40
    assert [f[0] for f in got] == sorted(f[0] for f in got)
    assert sorted(f[2] for f in got) == sorted(FRAMES)
    assert {str(a), str(b)} == {r.path for r in readers}


# --- the shared public captures -----------------------------------------------------------------

SHARED = shared_capture_files()


@pytest.mark.parametrize(
    "path",
    SHARED or [pytest.param(None, marks=pytest.mark.skip(reason=f"{SHARED_PCAPS} is absent"))],
    ids=lambda p: str(p.relative_to(SHARED_PCAPS)) if isinstance(p, Path) else "absent",
)
def test_shared_capture_matches_tshark(
    path: Path, shared_reference: dict[Path, list[tuple[int | None, int]]]
) -> None:
    got, err = read_until_error(path)

    assert err is None
    assert [(f[0], len(f[2])) for f in got] == shared_reference[path]


def test_shared_folder_expands_to_its_captures() -> None:
    if not SHARED:
        pytest.skip(f"{SHARED_PCAPS} is absent")
    found = expand_paths([SHARED_PCAPS])

    # identical copies are listed once per path; nothing else is a capture
    assert found == SHARED
    misnamed = [p for p in found if p.suffix == ".pcap" and p.read_bytes()[:4] == b"\n\r\r\n"]
    assert misnamed
    assert all(type(open_capture(p)) is PcapngReader for p in misnamed)
