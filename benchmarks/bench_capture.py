"""Frames per second of the capture readers on a generated capture of small TCP packets.

Usage: ``python benchmarks/bench_capture.py [--packets N] [--format pcap|pcapng] [--gzip]``
"""

from __future__ import annotations

import argparse
import gzip
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otsentry.capture import open_capture


def _frame(rng: random.Random) -> bytes:
    payload = bytes(rng.randrange(6, 66))
    ip_len = 20 + 20 + len(payload)
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 1, 0x4000, 64, 6, 0, bytes(4), bytes(4))
    tcp = struct.pack("!HHIIBBHHH", 50000, 502, 1, 1, 0x50, 0x18, 8192, 0, 0)
    return eth + ip + tcp + payload


def write_pcap(path: Path, packets: int, compress: bool) -> None:
    """Write a little-endian microsecond pcap of ``packets`` 60-120 byte Ethernet/IPv4/TCP frames."""
    rng = random.Random(1)
    frames = [_frame(rng) for _ in range(256)]
    record = struct.Struct("<IIII")
    opener = gzip.open if compress else open
    with opener(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        parts = []
        for i in range(packets):
            data = frames[i & 255]
            parts.append(
                record.pack(1_700_000_000 + i // 1000, (i % 1000) * 1000, len(data), len(data))
            )
            parts.append(data)
            if len(parts) >= 20000:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))


def write_pcapng(path: Path, packets: int, compress: bool) -> None:
    """Write a little-endian pcapng (one Ethernet interface, EPBs) of the same frames."""
    rng = random.Random(1)
    frames = [_frame(rng) for _ in range(256)]
    opener = gzip.open if compress else open
    with opener(path, "wb") as out:
        out.write(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
        out.write(struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20))
        parts = []
        for i in range(packets):
            data = frames[i & 255]
            pad = -len(data) % 4
            blen = 32 + len(data) + pad
            ts = (1_700_000_000 + i // 1000) * 1_000_000 + (i % 1000) * 1000
            parts.append(
                struct.pack("<IIIIIII", 6, blen, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
            )
            parts.append(data + bytes(pad) + struct.pack("<I", blen))
            if len(parts) >= 20000:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.cap"
        writer = write_pcap if args.format == "pcap" else write_pcapng
        writer(path, args.packets, args.gzip)
        best = float("inf")
        for _ in range(args.repeat):
            reader = open_capture(path)
            start = time.perf_counter()
            count = sum(1 for _ in reader)
            best = min(best, time.perf_counter() - start)
            assert count == args.packets, count
        size = path.stat().st_size
        print(
            f"{args.format}{' (gzip)' if args.gzip else ''}: {count} frames, {size / 1e6:.1f} MB, "
            f"best of {args.repeat}: {best:.3f} s = {count / best / 1e6:.2f} M frames/s"
        )


if __name__ == "__main__":
    main()
