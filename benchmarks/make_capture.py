"""Build a large benchmark capture from a few source captures.

    python benchmarks/make_capture.py [--packets N] [--out FILE] [--source FILE ...]

The source packets (default: the project's lab captures ``pcaps/*.pcap``) are merged in time
order and then written again and again. Each copy follows the previous one in time, so the file
stays time-ordered, and moves the source's IPv4 hosts into a block of 10.0.0.0/8 of its own
(``10.<copy // 256>.<copy % 256>.<host>`` while the sources hold fewer than 255 hosts), so the
number of flows grows with the number of copies like a plant with many PLCs. With
``--networks K`` the copies cycle through K such blocks instead: the hosts stay the same however
long the capture, only the flows keep coming. Nothing else is changed: checksums go stale, MACs,
ports and payloads stay. Multicast, broadcast and 0.0.0.0/8 addresses keep their value. The output
is a microsecond Ethernet pcap, written in chunks.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from struct import Struct

from otsentry.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CaptureError,
    open_capture,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "benchmarks" / "data"
DEFAULT_PACKETS = 1_000_000

_FILE_HEADER = Struct("<IHHiIII")
_RECORD = Struct("<IIII")
_U16 = Struct("!H")
_U32 = Struct("!I")
_NULL_LE = Struct("<I")
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_SYNTH_MACS = bytes.fromhex("020000000002020000000001")  # dst, src for frames without MACs
_BASE_NET = 10 << 24
_NET_SIZE = 1 << 24
_FLUSH_EVERY = 65_536  # buffered pieces per write


@dataclass(frozen=True, slots=True)
class Template:
    """One pass over the sources: per packet (µs offset, bytes before the IPv4 addresses,
    source host, destination host, bytes after them); hosts index ``hosts``, -1 = not IPv4."""

    packets: list[tuple[int, bytes, int, int, bytes]]
    #: original addresses: the first ``rewritten`` get a per-copy address, the rest keep theirs
    hosts: list[bytes]
    rewritten: int
    span_us: int


@dataclass(frozen=True, slots=True)
class Summary:
    """What ``build`` wrote."""

    path: Path
    packets: int
    copies: int
    hosts_per_copy: int
    #: distinct rewritten hosts in the file
    hosts: int
    bytes: int
    seconds: float


def default_sources() -> list[Path]:
    """The project's own lab captures."""
    return sorted((REPO / "pcaps").glob("*.pcap"))


def default_out(packets: int, networks: int = 0) -> Path:
    """``benchmarks/data/bench-1m.pcap`` for 1,000,000 packets, ``bench-10k-n64.pcap`` for
    10,000 packets on 64 networks."""
    tail = f"-n{networks}.pcap" if networks else ".pcap"
    for size, suffix in ((1_000_000, "m"), (1_000, "k")):
        if packets >= size and packets % size == 0:
            return DATA_DIR / f"bench-{packets // size}{suffix}{tail}"
    return DATA_DIR / f"bench-{packets}{tail}"


def _is_special(addr: bytes) -> bool:
    """Addresses that keep their value: 0.0.0.0/8, multicast, reserved and broadcast."""
    return addr[0] == 0 or addr[0] >= 224


def _to_ethernet(linktype: int, data: bytes) -> bytes | None:
    """The frame with an Ethernet header (synthetic MACs where the link has none)."""
    if linktype == LINKTYPE_ETHERNET:
        return data
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        etype, body = (_ETH_IPV6 if data[0] >> 4 == 6 else _ETH_IPV4), data
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        family = _U32.unpack_from(data)[0]
        if linktype == LINKTYPE_NULL:
            family = _NULL_LE.unpack_from(data)[0]
            if family > 0xFFFF:
                family = _U32.unpack_from(data)[0]
        etype, body = (_ETH_IPV4 if family == 2 else _ETH_IPV6), data[4:]
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        etype, body = _U16.unpack_from(data, 14)[0], data[16:]
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        etype, body = _U16.unpack_from(data, 0)[0], data[20:]
    else:
        raise ValueError(f"link type {linktype} is not supported")
    return _SYNTH_MACS + _U16.pack(etype) + body


def _ipv4_offset(frame: bytes) -> int:
    """Offset of the IPv4 header in an Ethernet frame, or -1."""
    if len(frame) < 14:
        return -1
    etype = _U16.unpack_from(frame, 12)[0]
    off = 14
    while etype in _VLAN_TPIDS and len(frame) >= off + 4:
        etype = _U16.unpack_from(frame, off + 2)[0]
        off += 4
    if etype != _ETH_IPV4 or len(frame) < off + 20 or frame[off] >> 4 != 4:
        return -1
    return off


def _source_frames(path: Path) -> list[tuple[int, bytes]]:
    """(µs since the source's earliest frame, Ethernet frame) of one capture, in file order."""
    reader = open_capture(path)
    frames: list[tuple[int, bytes]] = []
    try:
        for ts, linktype, data in reader:
            frame = _to_ethernet(linktype, data)
            if frame is not None:
                frames.append((ts // 1000, frame))
    finally:
        reader.close()
    start = min((ts for ts, _ in frames), default=0)
    return [(ts - start, frame) for ts, frame in frames]


def load_template(sources: Sequence[Path]) -> Template:
    """Read the sources (pcap or pcapng, any link type the sensor decodes) into one pass."""
    merged = heapq.merge(*(_source_frames(p) for p in sources), key=lambda r: r[0])
    raw: list[tuple[int, bytes, int, bytes, bytes]] = []
    seen: dict[bytes, None] = {}
    for rel, frame in merged:
        off = _ipv4_offset(frame)
        if off < 0:
            raw.append((rel, frame, -1, b"", b""))
            continue
        src, dst = frame[off + 12 : off + 16], frame[off + 16 : off + 20]
        seen.setdefault(src)
        seen.setdefault(dst)
        raw.append((rel, frame, off, src, dst))
    if not raw:
        raise ValueError("the sources hold no packets")
    hosts = [a for a in seen if not _is_special(a)]
    rewritten = len(hosts)
    hosts += [a for a in seen if _is_special(a)]
    index = {a: i for i, a in enumerate(hosts)}
    packets = []
    for rel, frame, off, src, dst in raw:
        if off < 0:
            packets.append((rel, frame, -1, -1, b""))
        else:
            packets.append((rel, frame[: off + 12], index[src], index[dst], frame[off + 20 :]))
    return Template(packets, hosts, rewritten, max(p[0] for p in packets))


def _block_size(hosts: int) -> int:
    """Addresses per copy: a power of two of at least 256 leaving out .0 and the top one."""
    size = 256
    while size < hosts + 2:
        size *= 2
    return size


def _copy_hosts(template: Template, copy: int, block: int) -> list[bytes]:
    base = _BASE_NET + copy * block
    pack = _U32.pack
    fresh = [pack(base + 1 + i) for i in range(template.rewritten)]
    return fresh + template.hosts[template.rewritten :]


def _copies(template: Template, packets: int) -> int:
    return -(-packets // len(template.packets))


def _networks(template: Template, packets: int, networks: int) -> int:
    """Address blocks used: one per copy, or ``networks`` reused in turn."""
    copies = _copies(template, packets)
    return min(copies, networks) if networks > 0 else copies


def records(template: Template, packets: int, start_us: int, networks: int = 0) -> Iterator[bytes]:
    """Chunks of pcap records (no file header) for ``packets`` packets from ``start_us`` on;
    copy ``i`` uses address block ``i`` or, with ``networks``, block ``i % networks``."""
    block = _block_size(template.rewritten)
    period_us = (template.span_us // 1_000_000 + 1) * 1_000_000  # whole seconds, > span
    per_copy = len(template.packets)
    copies = _copies(template, packets)
    blocks = _networks(template, packets, networks)
    if blocks * block > _NET_SIZE:
        raise ValueError(
            f"{blocks} networks of {template.rewritten} hosts do not fit in 10.0.0.0/8; "
            "use --networks, fewer packets or sources with more packets"
        )
    pack = _RECORD.pack
    left = packets
    parts: list[bytes] = []
    append = parts.append
    for copy in range(copies):
        addr = _copy_hosts(template, copy % blocks, block)
        shift = start_us + copy * period_us
        batch = template.packets if left >= per_copy else template.packets[:left]
        left -= len(batch)
        for rel, head, si, di, tail in batch:
            sec, usec = divmod(shift + rel, 1_000_000)
            if si < 0:
                append(pack(sec, usec, len(head), len(head)))
                append(head)
            else:
                n = len(head) + 8 + len(tail)
                append(pack(sec, usec, n, n))
                append(head)
                append(addr[si])
                append(addr[di])
                append(tail)
            if len(parts) >= _FLUSH_EVERY:
                yield b"".join(parts)
                parts.clear()
    if parts:
        yield b"".join(parts)


def build(
    sources: Sequence[Path],
    packets: int,
    out: Path,
    *,
    networks: int = 0,
    start_us: int = 1_700_000_000_000_000,
) -> Summary:
    """Write ``packets`` packets made from ``sources`` to ``out``; return what was written."""
    began = time.perf_counter()
    template = load_template(sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    written = 0
    with open(tmp, "wb") as fh:
        fh.write(_FILE_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262_144, LINKTYPE_ETHERNET))
        for chunk in records(template, packets, start_us, networks):
            fh.write(chunk)
            written += len(chunk)
    tmp.replace(out)
    return Summary(
        path=out,
        packets=packets,
        copies=_copies(template, packets),
        hosts_per_copy=template.rewritten,
        hosts=template.rewritten * _networks(template, packets, networks),
        bytes=written + _FILE_HEADER.size,
        seconds=time.perf_counter() - began,
    )


def slice_capture(src: Path, dst: Path, packets: int) -> int:
    """Copy the first ``packets`` records of a classic pcap; return how many there were."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.read(_FILE_HEADER.size))
        count = 0
        while count < packets:
            head = fin.read(_RECORD.size)
            if len(head) < _RECORD.size:
                break
            caplen = _RECORD.unpack(head)[2]
            fout.write(head + fin.read(caplen))
            count += 1
    return count


def count_packets(path: Path) -> int:
    """Records in a capture: a classic little-endian pcap read header by header, any other
    format (pcapng, big-endian, gzip) through otsentry's reader."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        reader = open_capture(path)
        try:
            return sum(1 for _ in reader)
        finally:
            reader.close()
    count = 0
    with open(path, "rb", buffering=1 << 20) as fh:
        fh.seek(_FILE_HEADER.size)
        read, seek, unpack = fh.read, fh.seek, _RECORD.unpack
        while True:
            head = read(16)
            if len(head) < 16:
                return count
            seek(unpack(head)[2], 1)
            count += 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=DEFAULT_PACKETS, help="packets to write")
    parser.add_argument(
        "--networks", type=int, default=0, metavar="K", help="reuse K address blocks [one a copy]"
    )
    parser.add_argument("--out", type=Path, help="output file [benchmarks/data/bench-1m.pcap]")
    parser.add_argument(
        "--source", type=Path, nargs="+", metavar="FILE", help="source captures [pcaps/*.pcap]"
    )
    args = parser.parse_args(argv)
    sources = args.source or default_sources()
    if not sources:
        parser.error("no pcaps/*.pcap yet: name source captures with --source")
    if args.packets < 1 or args.networks < 0:
        parser.error("--packets must be positive, --networks not negative")
    out = args.out or default_out(args.packets, args.networks)
    try:
        summary = build(sources, args.packets, out, networks=args.networks)
    except (CaptureError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{summary.path}: {summary.packets:,} packets, {summary.copies:,} "
        f"cop{'y' if summary.copies == 1 else 'ies'} of "
        f"{summary.hosts_per_copy} hosts ({summary.hosts:,} in all), "
        f"{summary.bytes / 1e6:,.1f} MB in {summary.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
