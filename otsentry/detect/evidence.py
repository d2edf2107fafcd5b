"""Evidence pcaps: the triggering flow's packets around each alert, in a small capture file.

The pipeline appends every frame, as the reader yields it, to a ring of the most recent frames
(``ring``: a bounded deque; the frames are immutable bytes, so holding them costs no copy), and
the flow key the decoder gave it (None when it did not decode) to ``keys``, a ring of the same
length. When an alert's trigger is seen, :meth:`EvidenceRecorder.start` picks the flow's last
packets from the ring by their flow keys (5-tuple and VLAN); the packets that follow are
collected on the pipeline's periodic :meth:`advance` — one pass over the new packets for every
waiting capture, a dict lookup each — until enough have passed, and the file is written then (or
at :meth:`finish`). Nothing here runs per packet except the two appends. A caller that fills only
``ring`` (``keys`` stays shorter) gets the frames decoded here, by a decoder of its own.

Files are classic pcap (microsecond timestamps unless a frame needs nanoseconds) with the
frames' own link type; a flow whose frames came with several link types gets one file per
link type. The names are stable: packet time of the trigger, rule id and a hash of the flow.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha1
from itertools import islice
from pathlib import Path
from typing import Any

from otsentry.capture.base import LINKTYPE_ETHERNET, Frame
from otsentry.decode import ACK, ETH_ARP, SYN, TCP, UDP, Decoder, FlowKey
from otsentry.model import Conn

#: captures waiting for the packets after their trigger at most; beyond, the oldest is written
MAX_PENDING = 1024
#: the directory under the output directory
EVIDENCE_DIR = "evidence"

_PCAP_HEADER = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_SNAPLEN = 262_144
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

#: (packet number, frame)
Numbered = tuple[int, Frame]


def _packed(ip: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)


def flow_keys(conn: Conn) -> frozenset[FlowKey]:
    """The decoder's flow keys of ``conn``'s packets, one per direction."""
    client, server = _packed(conn.client_ip), _packed(conn.server_ip)
    vlan = (conn.vlan or 0) | ((conn.inner_vlan or 0) << 12)
    proto = UDP if conn.transport == "udp" else TCP
    return frozenset(
        (
            (client, conn.client_port, server, conn.server_port, vlan, proto),
            (server, conn.server_port, client, conn.client_port, vlan, proto),
        )
    )


_VLAN_TAGS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00", b"\x92\x00")
_ARP_TYPE = ETH_ARP.to_bytes(2, "big")


def arp_mentions(linktype: int, data: bytes, ip: bytes) -> bool:
    """Whether an Ethernet frame is ARP (behind up to two VLAN tags) naming the IPv4 ``ip``."""
    if linktype != LINKTYPE_ETHERNET:
        return False
    off = 12
    while data[off : off + 2] in _VLAN_TAGS and off < 20:
        off += 4
    return data[off : off + 2] == _ARP_TYPE and ip in data[off + 2 :]


def write_pcap(path: Path, linktype: int, frames: Iterable[Frame]) -> int:
    """Write ``frames`` (all of ``linktype``) as a classic pcap file; returns how many."""
    frames = list(frames)
    nano = any(ts % 1000 for ts, _, _ in frames)
    parts = [
        _PCAP_HEADER.pack(_MAGIC_NSEC if nano else _MAGIC_USEC, 2, 4, 0, 0, _SNAPLEN, linktype)
    ]
    for ts, _, data in frames:
        secs, ns = divmod(ts, 1_000_000_000)
        parts.append(_PCAP_RECORD.pack(secs, ns if nano else ns // 1000, len(data), len(data)))
        parts.append(data)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(parts))
    os.replace(tmp, path)
    return len(frames)


def _key_of(pkt: Any) -> FlowKey | None:
    return pkt[0] if pkt is not None else None


def _client_syn(frame: Frame, decoder: Decoder) -> bool:
    """Whether a frame of the flow is the client's SYN (decoded again: only for the frames of
    an evidence flow, never per packet)."""
    pkt = decoder.decode(frame[1], frame[2], frame[0])
    return pkt is not None and bool(pkt[1] & SYN) and not pkt[1] & ACK


@dataclass(slots=True)
class _Capture:
    """One evidence file in the making."""

    name: str
    keys: frozenset[FlowKey]
    client: bytes
    server: bytes
    trigger_no: int
    trigger_ts: int
    frames: list[Numbered]
    after_wanted: int
    scanned_to: int  # packets up to this number have been looked at
    after_found: int = 0
    #: an ARP alert: the frames are the ARP packets naming the client (sender) address
    arp: bool = False

    def holds(self, frame: Frame, key: FlowKey | None) -> bool:
        """Whether ``frame`` (``key`` its flow key) belongs to this evidence."""
        if self.arp:
            return arp_mentions(frame[1], frame[2], self.client)
        return key is not None and key in self.keys


@dataclass(slots=True)
class EvidenceStats:
    """Evidence files written, alerts left without one (``max_files`` reached, or the trigger's
    flow no longer in the ring), captures written early (too many waiting), frames written."""

    written: int = 0
    skipped_max_files: int = 0
    skipped_no_packets: int = 0
    written_early: int = 0
    frames: int = 0

    def as_dict(self) -> dict[str, int]:
        """For ``stats.json``."""
        return {
            "files_written": self.written,
            "skipped_max_files": self.skipped_max_files,
            "skipped_no_packets": self.skipped_no_packets,
            "written_early": self.written_early,
            "frames_written": self.frames,
        }


@dataclass(slots=True)
class EvidenceRecorder:
    """Keeps the ring of recent frames and writes one evidence pcap per alert.

    Packet numbers count every frame appended to ``ring`` (1 for the first); callers pass the
    number of the frame appended last.
    """

    out_dir: Path
    packets_before: int = 20
    packets_after: int = 10
    ring_packets: int = 20_000
    max_files: int = 1000
    #: packet time after the trigger (seconds) beyond which a capture is written with what it has
    wait: float = 60.0
    ring: deque[Frame] = field(init=False)
    #: the flow key of each frame of ``ring`` (None: not decoded), appended beside it
    keys: deque[FlowKey | None] = field(init=False)
    stats: EvidenceStats = field(init=False, default_factory=EvidenceStats)
    _decoder: Decoder = field(init=False, default_factory=Decoder)
    _pending: dict[str, _Capture] = field(init=False, default_factory=dict)
    _names: set[str] = field(init=False, default_factory=set)
    _wait_ns: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.ring = deque(maxlen=self.ring_packets)
        self.keys = deque(maxlen=self.ring_packets)
        self._wait_ns = round(self.wait * 1e9)

    @property
    def directory(self) -> Path:
        """Where the files go."""
        return self.out_dir / EVIDENCE_DIR

    def start(self, conn: Conn, rule_id: str, packet_no: int) -> str | None:
        """Begin the evidence of an alert triggered by ``conn``'s most recent packet (at or
        before packet ``packet_no``, the last appended); return its path relative to the output
        directory, or None when there will be no file (counted)."""
        if len(self._names) >= self.max_files:
            self.stats.skipped_max_files += 1
            return None
        arp = conn.transport == "arp"
        cap = _Capture(
            name="",
            keys=frozenset() if arp else flow_keys(conn),
            client=_packed(conn.client_ip),
            server=_packed(conn.server_ip),
            trigger_no=0,
            trigger_ts=0,
            frames=[],
            after_wanted=self.packets_after,
            scanned_to=packet_no,
            arp=arp,
        )
        found = self._before(cap, packet_no)
        if not found:
            self.stats.skipped_no_packets += 1
            return None
        cap.frames = found
        cap.trigger_no, (cap.trigger_ts, _, _) = found[-1]
        cap.name = self._name(cap.trigger_ts, rule_id, conn.community_id)
        if cap.after_wanted == 0:
            self._write(cap)
        else:
            if len(self._pending) >= MAX_PENDING:
                self.stats.written_early += 1
                self._write(self._pending.pop(next(iter(self._pending))))
            self._pending[cap.name] = cap
        return f"{EVIDENCE_DIR}/{cap.name}.pcap"

    def advance(self, packet_no: int, ts: int) -> None:
        """Collect the packets after each waiting trigger up to packet ``packet_no`` (packet time
        ``ts``); write the captures that are complete or have waited long enough."""
        if not self._pending:
            return
        self._collect(packet_no)
        done = [
            name
            for name, cap in self._pending.items()
            if cap.after_found >= cap.after_wanted or ts - cap.trigger_ts >= self._wait_ns
        ]
        for name in done:
            self._write(self._pending.pop(name))

    def finish(self, packet_no: int) -> None:
        """Write every waiting capture with the packets seen up to ``packet_no``."""
        self._collect(packet_no)
        while self._pending:
            self._write(self._pending.pop(next(iter(self._pending))))

    # -- selection ---------------------------------------------------------------------------

    def _keyed(
        self, frames: Iterable[Frame], keys: Iterable[FlowKey | None] | None
    ) -> Iterator[tuple[Frame, FlowKey | None]]:
        """The frames with their flow keys: those of ``keys``, or decoded here when None."""
        if keys is not None:
            return zip(frames, keys, strict=True)
        decode = self._decoder.decode
        return ((f, _key_of(decode(f[1], f[2], f[0]))) for f in frames)

    def _packets(self, have: int) -> Iterator[tuple[Frame, FlowKey | None]]:
        """The last ``have`` frames of the ring (at most its length) with their flow keys,
        oldest first."""
        ring = self.ring
        skip = len(ring) - have
        keys = islice(self.keys, skip, None) if len(self.keys) == len(ring) else None
        return self._keyed(islice(ring, skip, None), keys)

    def _before(self, cap: _Capture, packet_no: int) -> list[Numbered]:
        """The flow's last ``packets_before`` + 1 frames up to ``packet_no``, oldest first (the
        scan back stops early at the client's SYN: nothing of the flow comes before it)."""
        want = self.packets_before + 1
        found: list[Numbered] = []
        ring = self.ring
        if not cap.arp and len(self.keys) == len(ring):
            # the common case in a tight loop: the flow's frames found by their keys alone,
            # each fetched from the ring by its distance from the end
            wanted = cap.keys
            for back, key in enumerate(reversed(self.keys)):
                if key in wanted:
                    frame = ring[-1 - back]
                    found.append((packet_no - back, frame))
                    if len(found) >= want or _client_syn(frame, self._decoder):
                        break
            found.reverse()
            return found
        keys = reversed(self.keys) if len(self.keys) == len(ring) else None
        back = -1
        for frame, key in self._keyed(reversed(ring), keys):
            back += 1
            if not cap.holds(frame, key):
                continue
            found.append((packet_no - back, frame))
            if len(found) >= want or (key is not None and _client_syn(frame, self._decoder)):
                break
        found.reverse()
        return found

    def _collect(self, packet_no: int) -> None:
        """Add to every waiting capture its flow's frames after the packets it has looked at,
        up to ``packet_no``: one pass over the new packets, a dict lookup each."""
        by_key: dict[FlowKey, list[_Capture]] = {}
        arp: list[_Capture] = []
        first = packet_no
        for cap in self._pending.values():
            if cap.after_found >= cap.after_wanted or cap.scanned_to >= packet_no:
                cap.scanned_to = max(cap.scanned_to, packet_no)
                continue
            first = min(first, cap.scanned_to)
            if cap.arp:
                arp.append(cap)
            else:
                for flow_key in cap.keys:
                    by_key.setdefault(flow_key, []).append(cap)
        if first >= packet_no:
            return
        have = min(packet_no - first, len(self.ring))
        number = packet_no - have
        get = by_key.get
        for frame, key in self._packets(have):
            number += 1
            if key is not None:
                caps = get(key)
            elif arp:  # no flow key: ARP (or not IP at all)
                caps = [c for c in arp if c.holds(frame, key)]
            else:
                continue
            if not caps:
                continue
            for cap in caps:
                if number > cap.scanned_to and cap.after_found < cap.after_wanted:
                    cap.frames.append((number, frame))
                    cap.after_found += 1
        for cap in self._pending.values():
            cap.scanned_to = max(cap.scanned_to, packet_no)

    # -- files -------------------------------------------------------------------------------

    def _name(self, ts: int, rule_id: str, flow: str) -> str:
        secs, ns = divmod(ts, 1_000_000_000)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(secs)) + f".{ns:09d}Z"
        base = f"{stamp}-{_UNSAFE.sub('_', rule_id)}-{sha1(flow.encode()).hexdigest()[:8]}"
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base}-{n}"
        self._names.add(name)
        return name

    def _write(self, cap: _Capture) -> None:
        by_linktype: dict[int, list[Frame]] = {}
        for _, frame in cap.frames:
            by_linktype.setdefault(frame[1], []).append(frame)
        trigger_linktype = cap.frames[-1 - cap.after_found][1][1]
        if not self.stats.written:
            self.directory.mkdir(parents=True, exist_ok=True)
        for linktype, frames in by_linktype.items():
            suffix = "" if linktype == trigger_linktype else f"-linktype{linktype}"
            self.stats.frames += write_pcap(
                self.directory / f"{cap.name}{suffix}.pcap", linktype, frames
            )
            self.stats.written += 1
        cap.frames = []
