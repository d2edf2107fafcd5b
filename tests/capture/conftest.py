"""Byte builders for capture files, sample frames, and tshark as a reference reader."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from otsentry.capture import CaptureError, Frame, PcapngReader, PcapReader, open_capture
from otsentry.capture.pcapng import PCAPNG_MAGIC

SHARED_PCAPS = Path(__file__).resolve().parents[2].parent / "shared" / "pcaps"
T0 = 1_700_000_000  # a timestamp in seconds


# --- frames -------------------------------------------------------------------------------------


def sample_frames(count: int, seed: int = 0) -> list[bytes]:
    """Ethernet frames of varied sizes (60-1514 bytes), TCP and UDP."""
    frames = []
    for i in range(count):
        size = (seed * 131 + i * 97) % 1400
        l4 = TCP(sport=40000 + i, dport=502) if i % 3 else UDP(sport=40000 + i, dport=47808)
        pkt = (
            Ether()
            / IP(src="10.0.0.1", dst=f"10.0.1.{i % 250}")
            / l4
            / Raw(bytes([i % 256]) * size)
        )
        frames.append(bytes(pkt))
    return frames


# --- classic pcap -------------------------------------------------------------------------------


def pcap_header(
    *, order: str = "<", nano: bool = False, linktype: int = 1, snaplen: int = 65535
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts_ns: int, data: bytes, *, order: str = "<", nano: bool = False) -> bytes:
    sec, frac = divmod(ts_ns, 1_000_000_000)
    if not nano:
        frac //= 1000
    return struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data


def pcap_file(
    frames: Sequence[tuple[int, bytes]], *, order: str = "<", nano: bool = False, linktype: int = 1
) -> tuple[bytes, list[int]]:
    """A pcap file of (ts_ns, data) frames and the offset of each record."""
    out = bytearray(pcap_header(order=order, nano=nano, linktype=linktype))
    offsets = []
    for ts, data in frames:
        offsets.append(len(out))
        out += pcap_record(ts, data, order=order, nano=nano)
    return bytes(out), offsets


# --- pcapng -------------------------------------------------------------------------------------


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def end_of_options(order: str = "<") -> bytes:
    return struct.pack(order + "HH", 0, 0)


def shb(order: str = "<", major: int = 1, minor: int = 0) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1)
    body += option(4, b"otsentry tests", order) + end_of_options(order)
    return block(0x0A0D0D0A, body, order)


def idb(
    linktype: int = 1,
    *,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    order: str = "<",
) -> bytes:
    body = struct.pack(order + "HHI", linktype, 0, snaplen)
    opts = option(2, b"eth0", order)
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order)
    return block(1, body + opts + end_of_options(order), order)


def epb(iface: int, ts: int, data: bytes, *, order: str = "<", wirelen: int | None = None) -> bytes:
    """An Enhanced Packet Block; ``ts`` is in the interface's units."""
    head = struct.pack(
        order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), wirelen or len(data)
    )
    body = head + data + bytes(-len(data) % 4) + option(2, b"\x01\0\0\0", order)
    return block(6, body + end_of_options(order), order)


def spb(data: bytes, *, wirelen: int | None = None, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", wirelen or len(data)) + data, order)


def opb(iface: int, ts: int, data: bytes, *, order: str = "<") -> bytes:
    head = struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
    return block(2, head + data, order)


def nrb(order: str = "<") -> bytes:
    value = bytes([10, 0, 0, 1]) + b"plc-1.local\0"
    record = struct.pack(order + "HH", 1, len(value)) + value
    return block(4, record + bytes(-len(record) % 4) + struct.pack(order + "HH", 0, 0), order)


def isb(order: str = "<") -> bytes:
    return block(5, struct.pack(order + "III", 0, 0, 0) + end_of_options(order), order)


def custom_block(order: str = "<") -> bytes:
    return block(0x00000BAD, struct.pack(order + "I", 32473) + b"opaque", order)


def dsb(order: str = "<") -> bytes:
    return block(0x0000000A, struct.pack(order + "II", 0x544C534B, 5) + b"keys!", order)


# --- reading helpers ----------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read_until_error(
    path: Path | str, chunk_size: int | None = None
) -> tuple[list[Frame], CaptureError | None]:
    """Frames read from ``path`` and the error that ended them, if any.

    The reader comes from ``open_capture``, or with ``chunk_size`` from the reader class the magic
    names.
    """
    frames: list[Frame] = []
    try:
        if chunk_size is None:
            reader: Iterable[Frame] = open_capture(path)
        elif Path(path).read_bytes()[:4] == PCAPNG_MAGIC:
            reader = PcapngReader(path, chunk_size=chunk_size)
        else:
            reader = PcapReader(path, chunk_size=chunk_size)
        for frame in reader:
            frames.append(frame)
    except CaptureError as err:
        return frames, err
    return frames, None


# --- tshark -------------------------------------------------------------------------------------


def have_wireshark_tools() -> bool:
    return all(shutil.which(tool) for tool in ("tshark", "mergecap", "capinfos"))


def parse_tshark_fields(text: str) -> list[tuple[int | None, int]]:
    """(ts_ns, cap_len) per line of ``-e frame.time_epoch -e frame.cap_len`` output.

    The timestamp is ``None`` for a frame tshark has no time for (Simple Packet Block).
    """
    rows: list[tuple[int | None, int]] = []
    for line in text.splitlines():
        if line:
            epoch, caplen = line.split("\t")
            ts = int(Decimal(epoch) * 1_000_000_000) if epoch else None
            rows.append((ts, int(caplen)))
    return rows


def tshark_frames(path: Path | str) -> list[tuple[int | None, int]]:
    """(timestamp ns, captured length) of every frame as tshark reads ``path``."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"]
        + ["-e", "frame.cap_len"],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_tshark_fields(out.stdout)


def shared_capture_files() -> list[Path]:
    """Files under the shared public captures folder that start with a pcap or pcapng magic."""
    if not SHARED_PCAPS.is_dir():
        return []
    found = []
    for path in sorted(SHARED_PCAPS.rglob("*")):
        if path.is_file():
            with path.open("rb") as f:
                if f.read(4) in MAGICS:
                    found.append(path)
    return found


MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)


@pytest.fixture
def needs_tshark() -> None:
    if not shutil.which("tshark"):
        pytest.skip("tshark is needed")


@pytest.fixture(scope="session")
def shared_reference(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[Path, list[tuple[int | None, int]]]:
    """tshark's (ts_ns, cap_len) frames of every shared capture, read in one tshark run.

    The files are concatenated by mergecap and split again by capinfos' per-file packet counts:
    one tshark start-up instead of one per file.
    """
    files = shared_capture_files()
    if not files:
        pytest.skip(f"{SHARED_PCAPS} is absent")
    if not have_wireshark_tools():
        pytest.skip("tshark, mergecap and capinfos are needed")
    merged = tmp_path_factory.mktemp("shared") / "all.pcapng"
    subprocess.run(
        ["mergecap", "-a", "-F", "pcapng", "-w", str(merged), *map(str, files)],
        check=True,
        capture_output=True,
    )
    info = subprocess.run(
        ["capinfos", "-T", "-r", "-c", *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    counts = [int(line.rsplit("\t", 1)[1]) for line in info if line]
    rows = tshark_frames(merged)
    assert len(counts) == len(files)
    assert sum(counts) == len(rows)
    reference = {}
    start = 0
    for path, count in zip(files, counts, strict=True):
        reference[path] = rows[start : start + count]
        start += count
    return reference
