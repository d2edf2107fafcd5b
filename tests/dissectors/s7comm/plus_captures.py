"""Test helper: the COTP TSDUs of the TCP/102-style (TPKT) conversations in a capture.

Frames are read and decoded by the project's own capture reader and packet decoder; each TCP
direction is put back in sequence order here (sorted by sequence number, retransmitted bytes
dropped, a hole starts a new contiguous run), cut into TPKT packets (RFC 1006: ``03 00`` +
16-bit length) and COTP TPDUs. The user data of DT TPDUs (``F0``) is concatenated until one
carries EOT (bit 0x80 of its number byte): that is one TSDU, what the S7comm session hands to
``decode_plus`` when it starts with 0x72.

TPKT is found on any port (``modbusBig.pcap`` mixes Modbus on 502 with S7comm-plus on 102), so
a direction qualifies when its first bytes parse as TPKT + COTP; other directions are skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from otsentry.capture.open import open_capture
from otsentry.decode import Decoder

_MASK = 0xFFFFFFFF
_TCP = 6


@dataclass(frozen=True, slots=True)
class Tsdu:
    """One reassembled COTP TSDU."""

    flow: tuple[bytes, int, bytes, int]  # src ip, src port, dst ip, dst port (as sent)
    to_server: bool  # sent to the lower port (102 in every capture used here)
    data: bytes


def _runs(segments: list[tuple[int, bytes]]) -> list[bytes]:
    """Contiguous byte runs of one direction, in sequence order (relative to the first seq)."""
    if not segments:
        return []
    base = segments[0][0]
    ordered = sorted(((seq - base) & _MASK, payload) for seq, payload in segments)
    runs: list[bytearray] = []
    nxt = -1
    for rel, payload in ordered:
        if nxt >= 0 and rel <= nxt:
            if rel + len(payload) > nxt:  # overlap: keep the bytes seen first, add the new tail
                runs[-1] += payload[nxt - rel :]
                nxt = rel + len(payload)
            continue
        runs.append(bytearray(payload))
        nxt = rel + len(payload)
    return [bytes(r) for r in runs]


def _tsdus(run: bytes) -> Iterator[bytes]:
    """TSDUs of one contiguous run: TPKT → COTP DT, concatenated until EOT."""
    pos, n = 0, len(run)
    pending = bytearray()
    while pos + 4 <= n:
        if run[pos] != 3 or run[pos + 1] != 0:
            # resynchronise on the next plausible TPKT header (only after a capture hole)
            pos = run.find(b"\x03\x00", pos + 1)
            if pos < 0:
                return
            pending.clear()
            continue
        length = run[pos + 2] << 8 | run[pos + 3]
        if length < 7 or pos + length > n:
            return
        tpdu = run[pos + 4 : pos + length]
        pos += length
        li = tpdu[0]
        if li < 2 or li + 1 > len(tpdu) or tpdu[1] & 0xF0 != 0xF0:
            continue  # CR/CC/DR... or a malformed header: not user data
        pending += tpdu[1 + li :]
        if tpdu[2] & 0x80:  # EOT
            yield bytes(pending)
            pending.clear()


def _is_tpkt(run: bytes) -> bool:
    return len(run) >= 7 and run[0] == 3 and run[1] == 0 and (run[2] << 8 | run[3]) >= 7


def capture_tsdus(path: Path) -> list[Tsdu]:
    """Every COTP TSDU of every TPKT direction in ``path``, per direction in stream order."""
    decoder = Decoder()
    streams: dict[tuple[bytes, int, bytes, int], list[tuple[int, bytes]]] = defaultdict(list)
    with open_capture(path) as reader:
        for ts, linktype, frame in reader:
            pkt = decoder.decode(linktype, frame, ts)
            if pkt is None:
                continue
            key, _flags, seq, payload, _macoff = pkt
            if key[5] != _TCP or not payload:
                continue
            streams[(key[0], key[1], key[2], key[3])].append((seq, bytes(payload)))
    out: list[Tsdu] = []
    for flow, segments in streams.items():
        runs = _runs(segments)
        if not runs or not _is_tpkt(runs[0]):
            continue
        to_server = flow[3] < flow[1]
        for run in runs:
            out.extend(Tsdu(flow, to_server, t) for t in _tsdus(run))
    return out


def plus_tsdus(path: Path) -> list[Tsdu]:
    """The TSDUs of ``path`` that start with 0x72 (S7comm-plus)."""
    return [t for t in capture_tsdus(path) if t.data[:1] == b"\x72"]
