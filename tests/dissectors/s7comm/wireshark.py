"""What Wireshark (tshark 4.0) says about each S7comm PDU of a capture, and a TPKT/COTP walk of
the TCP payloads for the S7comm-plus PDUs tshark 4.0 cannot dissect.

tshark runs once per capture with ``-T json -J "frame ip ipv6 tcp tpkt cotp cotp.segments s7comm
data _ws.malformed"`` and the display filter ``tpkt || cotp || s7comm || (tcp.len > 0 &&
tcp.port == 102)``: every frame with an ISO-on-TCP tree, plus every frame with TCP payload on
the ISO-TSAP port, whose TCP facts (``Segment``, with the payload bytes) feed the TPKT/COTP walk.

Several PDUs per frame. A TCP segment may carry several TPKTs (``mb2.pcap``: 54 frames with two
S7 PDUs, up to three COTP TPDUs per frame; 1166 PDUs follow an empty DT without EOT). tshark's JSON writes each TPKT's trees as
*duplicate keys* of the frame's ``layers`` object, in wire order: ``tpkt``, ``cotp``, then —
when the COTP TSDU is complete — ``s7comm`` (or ``data`` for a TSDU no dissector takes:
S7comm-plus, protocol id 0x72). The reader keeps every pair in order (``object_pairs_hook``,
the Modbus helper's ``iter_packets``), so each ``s7comm`` key opens one PDU, and a following
``_ws.malformed`` belongs to it.

PDUs reassembled from several COTP DT TPDUs. A DT without the EOT bit is held by tshark's COTP
reassembly (its frame shows ``tpkt`` + ``cotp`` and nothing else); the DT with EOT completes the
TSDU, and that frame shows ``tpkt``, ``cotp``, then a ``cotp.segments`` tree (``cotp.segment``:
the frame of each DT, ``cotp.segment.count``), then the ``s7comm`` tree of the reassembled PDU.
So the PDU is attributed to the frame holding its last DT — the frame where its last byte
arrived — and ``WsPdu.cotp_segments`` lists the frames of its DTs. The same holds for a TPKT
split over TCP segments (tshark's TCP reassembly delivers it at the completing segment).

Direction: tshark does not tag S7comm requests and responses; it is taken here from the TCP
ports — to port 102 = request, from port 102 = response, otherwise None.

S7comm-plus fragments: a long S7comm-plus PDU travels as several TSDUs, each starting with
0x72 and its own 4-byte header, only the last with the trailer (``Tsdu.plus_whole`` tells them
apart); the walk counts each TSDU, like the MANIFEST's raw count and ICSNPP.

Userdata fragments (``s7comm.param.userdata.lastdataunit``): tshark reassembles the data of a
fragmented userdata response (e.g. a long SZL list) and dissects it — including its SZL id — only
in the last fragment's frame; earlier fragments show their header and parameter only.

tshark runs with an empty configuration directory, so a user's Wireshark profile cannot change
the output.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.dissectors.modbus.wireshark import _adds_bytes as adds_bytes
from tests.dissectors.modbus.wireshark import _endpoint as endpoint
from tests.dissectors.modbus.wireshark import _get as get
from tests.dissectors.modbus.wireshark import _walk as walk
from tests.dissectors.modbus.wireshark import stream_packets

ISO_TSAP_PORT = 102

#: Protocol trees requested from tshark (``-J``: each with all its children).
_TREES = "frame ip ipv6 tcp tpkt cotp cotp.segments s7comm data _ws.malformed"

#: COTP TPDU codes (``cotp.type``, the high nibble of the TPDU code byte).
COTP_TYPES: dict[int, str] = {
    0x0E: "CR",
    0x0D: "CC",
    0x0F: "DT",
    0x08: "DR",
    0x0C: "DC",
    0x07: "ER",
    0x01: "ED",
    0x02: "EA",
    0x06: "AK",
    0x05: "RJ",
}

S7COMM_ID = 0x32
S7COMM_PLUS_ID = 0x72

_RETRANSMISSION_FLAGS = (
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
)


@dataclass(frozen=True)
class WsPdu:
    """One S7comm PDU as tshark dissected it (None: tshark's tree does not hold the field)."""

    frame: int
    index: int  # position of the PDU within its frame, 0-based
    ts: str  # frame.time_epoch as tshark prints it
    stream: int | None  # tcp.stream
    src: str  # "ip:port"
    dst: str
    direction: str | None  # by TCP port 102 (see module doc)
    rosctr: int | None  # s7comm.header.rosctr
    pdu_reference: int | None  # s7comm.header.pduref
    function: int | None  # s7comm.param.func
    item_count: int | None  # s7comm.param.itemcount (the first in the PDU's tree)
    error_class: int | None  # s7comm.header.errcls
    error_code: int | None  # s7comm.header.errcod
    userdata_type: int | None  # s7comm.param.userdata.type (4 request, 8 response, 0 push)
    userdata_group: int | None  # s7comm.param.userdata.funcgroup
    userdata_subfunction: int | None  # s7comm.param.userdata.subfunc
    szl_id: int | None  # s7comm.data.userdata.szl_id (the first in the PDU's tree)
    param_error_code: int | None  # s7comm.param.errcod (userdata responses)
    last_data_unit: int | None  # s7comm.param.userdata.lastdataunit (0 = last, 1 = more)
    cotp_segments: tuple[int, ...]  # frames of the DT TPDUs reassembled into it; () for one DT
    malformed: bool  # a "_ws.malformed" tree followed this PDU's tree
    experts: tuple[str, ...]  # _ws.expert.message values inside this PDU's tree

    @property
    def reassembled(self) -> bool:
        """tshark reassembled this PDU from several COTP DT TPDUs."""
        return len(self.cotp_segments) > 1


@dataclass(frozen=True)
class Segment:
    """TCP facts of a printed frame with payload on port 102."""

    frame: int
    stream: int  # tcp.stream
    src: str  # "ip:port" of the sender
    dst: str
    seq: int  # tcp.seq (relative)
    payload: bytes  # tcp.payload
    retransmission: bool  # tshark flags it a (fast / spurious) retransmission


@dataclass
class WsCapture:
    """tshark's view of one capture."""

    path: Path
    pdus: dict[int, list[WsPdu]] = field(default_factory=dict)  # frame → S7comm PDUs in order
    #: Frames holding an ISO-on-TCP tree and a "_ws.malformed" tree (whichever PDU it followed).
    malformed_frames: set[int] = field(default_factory=set)
    #: frame → ``cotp.type`` of every COTP TPDU tshark shows in it, in order
    cotp_types: dict[int, tuple[int, ...]] = field(default_factory=dict)
    #: frame → first bytes of each complete COTP TSDU tshark hands to no dissector ("data"
    #: right after ``cotp`` / ``cotp.segments``): S7comm-plus when they start with 0x72
    cotp_data: dict[int, list[bytes]] = field(default_factory=dict)
    #: TCP facts of every printed frame with payload on port 102, by frame number
    segments: dict[int, Segment] = field(default_factory=dict)
    frames: int = 0  # frames tshark printed

    def iter_pdus(self) -> Iterator[WsPdu]:
        for frame in sorted(self.pdus):
            yield from self.pdus[frame]

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.pdus.values())

    def plus_per_frame(self) -> dict[int, int]:
        """frame → COTP TSDUs starting with 0x72 that tshark shows as undissected data."""
        out = {}
        for frame, heads in self.cotp_data.items():
            n = sum(1 for h in heads if h[:1] == bytes([S7COMM_PLUS_ID]))
            if n:
                out[frame] = n
        return out


def tshark_command(tshark: str, path: Path) -> list[str]:
    shown = f"tpkt || cotp || s7comm || (tcp.len > 0 && tcp.port == {ISO_TSAP_PORT})"
    return [tshark, "-n", "-r", str(path), "-Y", shown, "-T", "json", "-J", _TREES]


def _int(fields: dict[str, list[str]], name: str) -> int | None:
    values = fields.get(name)
    if not values:
        return None
    text = values[0]
    return int(text, 16) if text.startswith("0x") else int(text)


def _hex_bytes(text: str | None) -> bytes:
    return bytes.fromhex(text.replace(":", "")) if text else b""


def direction_by_port(srcport: int | None, dstport: int | None) -> str | None:
    """to port 102 = request, from port 102 = response (both or neither: None)."""
    if srcport is None or dstport is None:
        return None
    if dstport == ISO_TSAP_PORT and srcport != ISO_TSAP_PORT:
        return "request"
    if srcport == ISO_TSAP_PORT and dstport != ISO_TSAP_PORT:
        return "response"
    return None


def port_of(endpoint_text: str) -> int | None:
    """The port of an "ip:port" / "[ipv6]:port" endpoint."""
    _, _, port = endpoint_text.rpartition(":")
    return int(port) if port.isdigit() else None


def retransmitted_new_data(capture: WsCapture) -> set[int]:
    """Frames tshark flags as a (fast / spurious) retransmission and dissects no S7comm in,
    although the segment carries sequence numbers no earlier captured segment of its direction
    covered: its bytes were never seen before, yet tshark 4.0 does not hand them to TPKT
    (``s7comm_clean.pcap``: the client ACKs a server segment before its first copy is
    captured — "ACKed unseen segment" — and tshark calls the copy that follows a spurious
    retransmission, 12 times). The first segment of a direction counts as new."""
    covered: dict[tuple[int, str], list[tuple[int, int]]] = {}
    out = set()
    for frame in sorted(capture.segments):
        seg = capture.segments[frame]
        spans = covered.setdefault((seg.stream, seg.src), [])
        start, end = seg.seq, seg.seq + len(seg.payload)
        if (
            seg.retransmission
            and frame not in capture.pdus
            and frame not in capture.cotp_data
            and adds_bytes(spans, start, end)
        ):
            out.add(frame)
        if end > start:
            spans.append((start, end))
    return out


@dataclass
class _Building:
    fields: dict[str, list[str]] = field(default_factory=dict)
    cotp_segments: tuple[int, ...] = ()
    malformed: bool = False


_Pairs = list[tuple[str, Any]]


def parse_packets(packets: Iterator[_Pairs], capture: WsCapture) -> None:
    """Fill ``capture`` from tshark's JSON packets."""
    for packet in packets:
        layers = get(get(packet, "_source") or [], "layers") or []
        frame_fields: dict[str, list[str]] = {}
        tcp_fields: dict[str, list[str]] = {}
        ip_src = ip_dst = None
        srcport = dstport = None
        building: list[_Building] = []
        cotp_types: list[int] = []
        data_heads: list[bytes] = []
        segments: tuple[int, ...] = ()
        previous = ""
        malformed = False
        for key, tree in layers:
            if key == "frame" and isinstance(tree, list):
                frame_fields = {k: [v] for k, v in tree if isinstance(v, str)}
            elif key in ("ip", "ipv6") and isinstance(tree, list):
                ip_src = get(tree, f"{key}.src")  # the innermost IP header wins (tunnels)
                ip_dst = get(tree, f"{key}.dst")
            elif key == "tcp" and isinstance(tree, list):
                srcport = get(tree, "tcp.srcport")
                dstport = get(tree, "tcp.dstport")
                # the top-level TCP fields, and the analysis flags (walking the whole TCP tree
                # of every packet costs more than the S7comm trees)
                tcp_fields = {k: [v] for k, v in tree if isinstance(v, str)}
                analysis = get(tree, "tcp.analysis")
                if isinstance(analysis, list):
                    walk(analysis, tcp_fields)
            elif key == "cotp" and isinstance(tree, list):
                segments = ()
                kind = get(tree, "cotp.type")
                if kind is not None:
                    cotp_types.append(int(kind, 16))
            elif key == "cotp.segments" and isinstance(tree, list):
                seg_fields: dict[str, list[str]] = {}
                walk(tree, seg_fields)
                segments = tuple(int(v) for v in seg_fields.get("cotp.segment", []))
            elif key == "s7comm" and isinstance(tree, list):
                building.append(_Building(cotp_segments=segments))
                walk(tree, building[-1].fields)
                segments = ()
            elif key == "data" and previous in ("cotp", "cotp.segments") and isinstance(tree, list):
                data_heads.append(_hex_bytes(get(tree, "data.data"))[:8])
                segments = ()
            elif key == "_ws.malformed":
                malformed = True
                if building:
                    building[-1].malformed = True
            previous = key
        number = int(frame_fields["frame.number"][0])
        ts = frame_fields.get("frame.time_epoch", [""])[0]
        capture.frames += 1
        if malformed and (building or cotp_types):
            capture.malformed_frames.add(number)
        if cotp_types:
            capture.cotp_types[number] = tuple(cotp_types)
        if data_heads:
            capture.cotp_data[number] = data_heads
        src, dst = endpoint(ip_src, srcport), endpoint(ip_dst, dstport)
        stream = int(tcp_fields["tcp.stream"][0]) if "tcp.stream" in tcp_fields else None
        payload = tcp_fields.get("tcp.payload")
        if payload and stream is not None:
            capture.segments[number] = Segment(
                frame=number,
                stream=stream,
                src=src,
                dst=dst,
                seq=int(tcp_fields.get("tcp.seq", ["0"])[0]),
                payload=_hex_bytes(payload[0]),
                retransmission=any(flag in tcp_fields for flag in _RETRANSMISSION_FLAGS),
            )
        sport = int(srcport) if srcport is not None else None
        dport = int(dstport) if dstport is not None else None
        pdus = []
        for index, b in enumerate(building):
            f = b.fields
            pdus.append(
                WsPdu(
                    frame=number,
                    index=index,
                    ts=ts,
                    stream=stream,
                    src=src,
                    dst=dst,
                    direction=direction_by_port(sport, dport),
                    rosctr=_int(f, "s7comm.header.rosctr"),
                    pdu_reference=_int(f, "s7comm.header.pduref"),
                    function=_int(f, "s7comm.param.func"),
                    item_count=_int(f, "s7comm.param.itemcount"),
                    error_class=_int(f, "s7comm.header.errcls"),
                    error_code=_int(f, "s7comm.header.errcod"),
                    userdata_type=_int(f, "s7comm.param.userdata.type"),
                    userdata_group=_int(f, "s7comm.param.userdata.funcgroup"),
                    userdata_subfunction=_int(f, "s7comm.param.userdata.subfunc"),
                    szl_id=_int(f, "s7comm.data.userdata.szl_id"),
                    param_error_code=_int(f, "s7comm.param.errcod"),
                    last_data_unit=_int(f, "s7comm.param.userdata.lastdataunit"),
                    cotp_segments=b.cotp_segments,
                    malformed=b.malformed,
                    experts=tuple(f.get("_ws.expert.message", [])),
                )
            )
        if pdus:
            capture.pdus.setdefault(number, []).extend(pdus)


def run_tshark(tshark: str, path: Path) -> WsCapture:
    """Run tshark once over ``path`` and return its S7comm view per frame."""
    capture = WsCapture(path=Path(path))
    cmd = tshark_command(tshark, Path(path))
    stream_packets(cmd, lambda packets: parse_packets(packets, capture))
    return capture


@functools.cache
def cached_tshark(tshark: str, path: Path) -> WsCapture:
    """``run_tshark``, memoised: the conformance tests ask for the same capture several times."""
    return run_tshark(tshark, path)


# --- our own TPKT / COTP walk -----------------------------------------------------------------


@dataclass(frozen=True)
class Tsdu:
    """A complete COTP TSDU found by ``walk_tpkt``: the DT TPDUs up to the one with EOT."""

    frame: int  # the frame holding its last byte
    src: str
    dst: str
    head: bytes  # its first 16 bytes
    length: int
    dts: int  # how many DT TPDUs it was assembled from

    @property
    def protocol_id(self) -> int | None:
        return self.head[0] if self.head else None

    @property
    def direction(self) -> str | None:
        return direction_by_port(port_of(self.src), port_of(self.dst))

    def s7_header(self) -> tuple[int, int, int | None, int | None, int | None] | None:
        """(rosctr, pdu reference, function, error class, error code) read from an S7comm
        TSDU's header (10 bytes; 12 with the error fields of Ack / Ack-Data) and the first
        parameter byte; function None for User-Data (7) and without parameter."""
        h = self.head
        if len(h) < 10 or h[0] != S7COMM_ID:
            return None
        rosctr = h[1]
        size = 12 if rosctr in (2, 3) else 10
        errors = (h[10], h[11]) if rosctr in (2, 3) and len(h) >= 12 else (None, None)
        has_param = int.from_bytes(h[6:8]) > 0 and rosctr != 7 and len(h) > size
        function = h[size] if has_param else None
        return rosctr, int.from_bytes(h[4:6]), function, *errors

    @property
    def version(self) -> int | None:
        """The S7comm-plus protocol version (byte 1 of a TSDU starting with 0x72)."""
        return self.head[1] if len(self.head) > 1 else None

    @property
    def plus_whole(self) -> bool:
        """An S7comm-plus TSDU that is exactly header (4) + data length + trailer (4)."""
        return len(self.head) >= 4 and self.length == 8 + int.from_bytes(self.head[2:4])


@dataclass
class _Direction:
    next_seq: int | None = None
    buffer: bytearray = field(default_factory=bytearray)
    tsdu: bytearray = field(default_factory=bytearray)
    dts: int = 0
    pending: dict[int, Segment] = field(default_factory=dict)
    broken: bool = False  # bytes that are not TPKT: the rest of this direction is skipped


@dataclass
class Walk:
    tsdus: list[Tsdu] = field(default_factory=list)
    #: (src, dst) directions whose byte stream stopped parsing as TPKT, with the frame
    broken: dict[tuple[str, str], int] = field(default_factory=dict)
    #: directions whose stream has a hole no later segment fills, with the first waiting frame
    holes: dict[tuple[str, str], int] = field(default_factory=dict)

    def by_protocol(self, protocol_id: int) -> list[Tsdu]:
        return [t for t in self.tsdus if t.protocol_id == protocol_id]


def walk_tpkt(segments: dict[int, Segment]) -> Walk:
    """Reassemble each TCP direction from the segments' sequence numbers (bytes already seen
    are dropped; a segment after a hole waits until the hole is filled) and cut it into TPKTs
    (RFC 1006: version 3, length incl. the 4-byte header); the user data of COTP DT TPDUs
    (code 0xF0; LI, code, EOT/TPDU-NR) is collected until a DT with EOT closes the TSDU, which
    is attributed to the frame that delivered its last byte. Independent of tshark's dissectors
    and of ours: it only needs the TCP payloads."""
    out = Walk()
    states: dict[tuple[int, str], _Direction] = {}

    def feed(st: _Direction, seg: Segment, data: bytes, frame: int) -> None:
        if st.broken:
            return
        st.buffer += data
        buf = st.buffer
        pos = 0
        while len(buf) - pos >= 4:
            length = int.from_bytes(buf[pos + 2 : pos + 4])
            if buf[pos] != 3 or length < 7:
                st.broken = True
                out.broken.setdefault((seg.src, seg.dst), frame)
                break
            if len(buf) - pos < length:
                break
            tpdu = buf[pos + 4 : pos + length]
            pos += length
            li = tpdu[0]
            if len(tpdu) >= 3 and tpdu[1] & 0xF0 == 0xF0 and li >= 2:
                st.tsdu += tpdu[1 + li :]
                st.dts += 1
                if tpdu[2] & 0x80:
                    out.tsdus.append(
                        Tsdu(
                            frame=frame,
                            src=seg.src,
                            dst=seg.dst,
                            head=bytes(st.tsdu[:16]),
                            length=len(st.tsdu),
                            dts=st.dts,
                        )
                    )
                    st.tsdu.clear()
                    st.dts = 0
        del buf[:pos]

    for frame in sorted(segments):
        seg = segments[frame]
        st = states.setdefault((seg.stream, seg.src), _Direction())
        if st.next_seq is None:
            st.next_seq = seg.seq
        end = seg.seq + len(seg.payload)
        if end <= st.next_seq:
            continue  # every byte seen before
        if seg.seq > st.next_seq:
            st.pending[seg.seq] = seg
            continue
        feed(st, seg, seg.payload[st.next_seq - seg.seq :], frame)
        st.next_seq = end
        while True:
            ready = [s for s in st.pending.values() if s.seq <= st.next_seq]
            if not ready:
                break
            for s in sorted(ready, key=lambda s: s.seq):
                del st.pending[s.seq]
                s_end = s.seq + len(s.payload)
                if s_end > st.next_seq:
                    feed(st, s, s.payload[st.next_seq - s.seq :], frame)
                    st.next_seq = s_end
    for st in states.values():
        if st.pending:
            first = min(st.pending.values(), key=lambda s: s.frame)
            out.holes.setdefault((first.src, first.dst), first.frame)
    return out


@functools.cache
def cached_walk(tshark: str, path: Path) -> Walk:
    return walk_tpkt(cached_tshark(tshark, path).segments)
