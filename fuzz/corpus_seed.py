"""Seed the fuzz corpora from the lab captures.

For every TCP flow of ``pcaps/*.pcap`` on a dissector's port, the in-order payload segments of
both directions (retransmissions dropped) are written in the driver's record format: short
windows of a conversation, each a seed, into ``fuzz/corpus/<protocol>/``. The reader harness gets
the capture files themselves, cut to their first records, in ``fuzz/corpus/pcap_readers/``; the
compiled pcap loop their first records and frames in ``fuzz/corpus/speedups/``.

Run: ``python fuzz/corpus_seed.py`` (from the repository root; rewrites the seed files).
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import sys
from pathlib import Path

from driver import encode

from otsentry.capture.open import open_capture
from otsentry.decode import TCP, Decoder

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
PORTS = {502: "modbus", 5020: "modbus", 102: "s7comm", 4840: "opcua"}
WINDOW = 8  # segments per seed
MAX_SEEDS = 400  # per protocol

Conversation = list[tuple[bool, bytes]]


def conversations(path: Path) -> dict[str, list[Conversation]]:
    """In-order client and server segments of each flow, by protocol."""
    decoder = Decoder()
    flows: dict[tuple[bytes, int, bytes, int], tuple[str, Conversation]] = {}
    expected: dict[tuple[tuple[bytes, int, bytes, int], bool], int] = {}
    with open_capture(path) as reader:
        for ts, linktype, data in reader:
            pkt = decoder.decode(linktype, data, ts)
            if pkt is None or pkt[0][5] != TCP:
                continue
            (src, sport, dst, dport, _vlan, _t), _flags, seq, payload, _mac = pkt
            if not payload or (dport not in PORTS and sport not in PORTS):
                continue
            fc = dport in PORTS
            key = (src, sport, dst, dport) if fc else (dst, dport, src, sport)
            proto, conv = flows.setdefault(key, (PORTS[key[3]], []))
            nxt = expected.get((key, fc))
            if nxt is not None and seq != nxt:
                continue  # a retransmission or a segment after a hole
            expected[(key, fc)] = (seq + len(payload)) & 0xFFFFFFFF
            conv.append((fc, bytes(payload)))
    out: dict[str, list[Conversation]] = {}
    for proto, conv in flows.values():
        out.setdefault(proto, []).append(conv)
    return out


def seeds(conv: Conversation) -> list[bytes]:
    """Windows of a conversation, plus each segment alone."""
    found = [encode(conv[i : i + WINDOW]) for i in range(0, len(conv), WINDOW // 2)]
    found += [encode([seg]) for seg in conv]
    return found


def write(directory: Path, items: list[bytes]) -> int:
    """Write distinct items named by their hash; return how many were written."""
    directory.mkdir(parents=True, exist_ok=True)
    names = set()
    for item in items:
        name = hashlib.sha1(item).hexdigest()
        if name not in names:
            names.add(name)
            (directory / name).write_bytes(item)
    return len(names)


def _block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    size = struct.pack("<I", 12 + len(body))
    return struct.pack("<I", kind) + size + body + size


def to_pcapng(path: Path, limit: int) -> bytes:
    """The first ``limit`` frames of a capture as pcapng: a section, an interface, packets."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    with open_capture(path) as reader:
        for i, (ts, linktype, data) in enumerate(reader):
            if i == 0:
                out += _block(1, struct.pack("<HHI", linktype, 0, 65535))
            if i == limit:
                break
            us = ts // 1000
            head = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
            out += _block(6, head + data)
    return out


def capture_seeds(paths: list[Path]) -> list[bytes]:
    """Each capture's first kilobytes (cut anywhere), as pcap and as pcapng, plain and gzipped."""
    out = []
    for path in paths:
        for head in (path.read_bytes()[:2048], to_pcapng(path, 12)):
            out += [head, gzip.compress(head, mtime=0)]
    return out


def speedups_seeds(paths: list[Path]) -> list[bytes]:
    """Per capture: its first 2 KB of records, and its first frame, behind the two control bytes
    of ``speedups.py`` (Ethernet with 1, 2 and 4 workers; little-endian, microseconds)."""
    out = []
    for path in paths:
        raw = path.read_bytes()
        records = raw[24 : 24 + 2048]
        caplen = struct.unpack_from("<I", raw, 24 + 8)[0] if len(raw) >= 40 else 0
        out += [bytes([control, 0]) + records for control in (0x01, 0x11, 0x31)]
        out.append(b"\x11\x00" + raw[40 : 40 + caplen])
    return out


def main() -> int:
    """Write every corpus; print the counts."""
    paths = sorted((ROOT / "pcaps").glob("*.pcap"))
    by_proto: dict[str, list[bytes]] = {}
    for path in paths:
        for proto, convs in conversations(path).items():
            for conv in convs:
                by_proto.setdefault(proto, []).extend(seeds(conv))
    for proto, items in sorted(by_proto.items()):
        uniq = sorted(set(items), key=lambda b: (len(b), b))
        step = max(1, len(uniq) // MAX_SEEDS)
        print(proto, write(CORPUS / proto, uniq[::step][:MAX_SEEDS]))
    print("pcap_readers", write(CORPUS / "pcap_readers", capture_seeds(paths)))
    print("speedups", write(CORPUS / "speedups", speedups_seeds(paths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
