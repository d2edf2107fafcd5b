"""What Wireshark (tshark 4.0) says about each OPC UA binary message of a capture.

tshark runs once per capture with ``-T json -J "frame ip ipv6 tcp opcua _ws.malformed"`` and the
display filter ``opcua || (tcp.len > 0 && tcp.port in {4840, ...})``: every frame with an OPC UA
tree, plus every frame with TCP payload on an OPC UA port, whose TCP facts (``Segment``) tell why
tshark shows no OPC UA there (retransmission, a reassembly that never completes). The generic
JSON helpers come from the Modbus helper (``tests.dissectors.modbus.wireshark``): tshark's JSON
writes one ``"opcua"`` object per UA TCP chunk as *duplicate keys* of the frame's ``layers``
object, in wire order, so the reader keeps every pair (``object_pairs_hook``) and each ``opcua``
key is one chunk; a following ``_ws.malformed`` belongs to it.

Ports. tshark decodes OPC UA on tcp/4840 only; a capture on another port needs
``-d tcp.port==P,opcua`` (``decode_as``; MANIFEST notes "OPC UA on tcp/P"). tshark 4.0 has no
heuristic for it.

Chunks and messages. A UA Secure Conversation message (OPN, MSG, CLO) travels as one or more
chunks; the chunk type (``opcua.transport.chunk``) is ``C`` for an intermediate chunk, ``F`` for
the final one and ``A`` for an abort. tshark's JSON shows, per chunk, one ``opcua`` tree:

* an intermediate chunk (``C``) holds the transport and security headers only
  (``opcua.transport.type`` / ``.chunk`` / ``.size`` / ``.scid``, ``opcua.security.tokenid`` /
  ``.seq`` / ``.rqid``) and no service; the Info column says "Message fragment N";
* the final chunk (``F``) of a message of several chunks opens with an ``opcua.fragments`` tree
  (``opcua.fragment``: the frame of each chunk, ``opcua.fragment.count``,
  ``opcua.reassembled.length``), then its own headers, then the service of the *reassembled*
  body (``opcua.servicenodeid.numeric``, request / response header);
* an abort chunk (``A``) holds the headers and ``opcua.transport.error`` / ``.reason``.

A chunk split over TCP segments is delivered by tshark's TCP reassembly at the segment that
completes it (the earlier segments show ``tcp.segment_data`` only). So a message — what our dump
reports as one record — is a tree whose chunk type is not ``C`` (``WsChunk.is_message``):
HEL / ACK / ERR / RHE (always ``F``), the final chunk of an OPN / MSG / CLO, or an abort. It is
attributed to the frame tshark prints that tree in: the frame in which the last byte of the
message's last chunk arrived. ``C`` chunks stay in ``WsCapture.chunks`` (the tests check that ours
reports nothing at frames holding only those).

Fields of a message, all from its own tree, first occurrence in tree order:
``opcua.transport.type`` (message type), ``opcua.transport.scid`` (secure channel id; OPN / MSG /
CLO), ``opcua.security.spu`` (security policy URI; OPN only: the asymmetric header),
``opcua.security.rqid`` (request id), ``opcua.servicenodeid.numeric`` (the service's binary
encoding node id, e.g. 631 ReadRequest; see below), ``opcua.RequestHandle`` (the request
header's or, in a response, the response header's — both precede any other use of the field)
and ``opcua.ServiceResult`` (the response header's status code).

Encrypted bodies. tshark 4.0 cannot decrypt, and does not know a body is encrypted: for an
OPN with an asymmetric security policy other than None and for a MSG / CLO of a SignAndEncrypt
channel it shows the clear headers (type, chunk, size, secure channel id; the policy URI of an
OPN) and then reads the ciphertext as if it were plain: ``opcua.security.seq`` / ``.rqid`` are
meaningless values and the body's ``TypeId`` is whatever the bytes decode to — mostly an
encoding mask without a numeric id (Info "ServiceId 0"), but in ``pcaps/opcua_secure.pcap`` frame
43 a four-byte NodeId, namespace 231, id 57559 (Info "ServiceId 57559"). tshark names no service
for them: a body it can read gets a service subtree (``ReadRequest``...) next to the ``TypeId``.
So a message's ``service_id`` is tshark's numeric type id only where tshark names the service
(``WsChunk.type_id`` keeps the raw value), and ``WsChunk.opaque`` marks a final OPN / MSG / CLO
chunk with no named service and not malformed: a body tshark cannot read.

Direction: tshark does not tag requests and responses; it is taken from the TCP ports — to the
server port (4840 or a decode-as port) = request, from it = response, otherwise None.

tshark runs with an empty configuration directory, so a user's Wireshark profile cannot change
the output.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.dissectors.modbus.wireshark import Segment, stream_packets
from tests.dissectors.modbus.wireshark import _adds_bytes as adds_bytes
from tests.dissectors.modbus.wireshark import _endpoint as endpoint
from tests.dissectors.modbus.wireshark import _get as get
from tests.dissectors.modbus.wireshark import _walk as walk

OPCUA_PORT = 4840

#: Protocol trees requested from tshark (``-J``: each with all its children).
_TREES = "frame ip ipv6 tcp opcua _ws.malformed"

#: Message types of UA Secure Conversation (the ones with a secure channel and a body).
SECURE_TYPES = frozenset({"OPN", "MSG", "CLO"})

_RETRANSMISSION_FLAGS = (
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
)

_Pairs = list[tuple[str, Any]]


@dataclass(frozen=True)
class WsChunk:
    """One UA TCP chunk as tshark dissected it (None: its tree does not hold the field)."""

    frame: int
    index: int  # position of the chunk's tree within its frame, 0-based
    ts: str  # frame.time_epoch as tshark prints it
    stream: int | None  # tcp.stream
    src: str  # "ip:port"
    dst: str
    direction: str | None  # by the server port (see module doc)
    message_type: str | None  # opcua.transport.type: HEL ACK ERR RHE OPN MSG CLO
    chunk: str | None  # opcua.transport.chunk: F, C or A
    size: int | None  # opcua.transport.size
    secure_channel_id: int | None  # opcua.transport.scid
    security_policy_uri: str | None  # opcua.security.spu (OPN)
    token_id: int | None  # opcua.security.tokenid (MSG / CLO)
    sequence_number: int | None  # opcua.security.seq
    request_id: int | None  # opcua.security.rqid
    service_id: int | None  # opcua.servicenodeid.numeric, where tshark names the service
    type_id: int | None  # opcua.servicenodeid.numeric as printed (also for ciphertext)
    request_handle: int | None  # opcua.RequestHandle (first occurrence)
    service_result: int | None  # opcua.ServiceResult (first occurrence)
    error: int | None  # opcua.transport.error (ERR, abort chunk)
    reason: str | None  # opcua.transport.reason
    fragments: tuple[int, ...]  # opcua.fragment: frames of the chunks reassembled into it
    malformed: bool  # a "_ws.malformed" tree followed this chunk's tree
    experts: tuple[str, ...]  # _ws.expert.message values inside the chunk's tree

    @property
    def is_message(self) -> bool:
        """Does this tree stand for a whole message (see module doc)? Not for ``C`` chunks."""
        return self.chunk != "C"

    @property
    def opaque(self) -> bool:
        """A final OPN / MSG / CLO chunk tshark shows no service for: an encrypted body."""
        return (
            self.message_type in SECURE_TYPES
            and self.chunk == "F"
            and self.service_id is None
            and not self.malformed
        )


@dataclass
class WsCapture:
    """tshark's view of one capture."""

    path: Path
    decode_as: tuple[int, ...]
    #: frame → every OPC UA tree (chunk) tshark prints in it, in order
    chunks: dict[int, list[WsChunk]] = field(default_factory=dict)
    #: frames holding an OPC UA tree and a "_ws.malformed" tree
    malformed_frames: set[int] = field(default_factory=set)
    #: TCP facts of every printed frame with payload on an OPC UA port, by frame number
    segments: dict[int, Segment] = field(default_factory=dict)
    frames: int = 0  # frames tshark printed

    @functools.cached_property
    def messages(self) -> dict[int, list[WsChunk]]:
        """frame → the messages (trees that are not intermediate chunks) tshark shows there."""
        out: dict[int, list[WsChunk]] = {}
        for frame, chunks in self.chunks.items():
            whole = [c for c in chunks if c.is_message]
            if whole:
                out[frame] = whole
        return out

    def iter_messages(self) -> Iterator[WsChunk]:
        for frame in sorted(self.messages):
            yield from self.messages[frame]

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.messages.values())

    @property
    def server_ports(self) -> frozenset[int]:
        return frozenset({OPCUA_PORT, *self.decode_as})


def tshark_command(tshark: str, path: Path, decode_as: Sequence[int] = ()) -> list[str]:
    """The tshark command line for ``path`` (``decode_as``: extra TCP ports that are OPC UA)."""
    ports = sorted({OPCUA_PORT, *decode_as})
    cmd = [tshark, "-n", "-r", str(path)]
    for port in ports:
        if port != OPCUA_PORT:
            cmd += ["-d", f"tcp.port=={port},opcua"]
    shown = f"opcua || (tcp.len > 0 && tcp.port in {{{', '.join(map(str, ports))}}})"
    return [*cmd, "-Y", shown, "-T", "json", "-J", _TREES]


def direction_by_port(
    srcport: int | None, dstport: int | None, server_ports: frozenset[int]
) -> str | None:
    """to a server port = request, from one = response (both or neither: None)."""
    if srcport is None or dstport is None:
        return None
    if dstport in server_ports and srcport not in server_ports:
        return "request"
    if srcport in server_ports and dstport not in server_ports:
        return "response"
    return None


def _int(fields: dict[str, list[str]], name: str) -> int | None:
    values = fields.get(name)
    if not values or values[0] == "":
        return None
    text = values[0]
    return int(text, 16) if text.startswith("0x") else int(text)


def _str(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


@dataclass
class _Building:
    fields: dict[str, list[str]] = field(default_factory=dict)
    names_service: bool = False
    malformed: bool = False


def _names_service(tree: _Pairs) -> bool:
    """Does an ``opcua`` tree name its service: its body object ("OpcUa Service : Encodeable
    Object" / "Message : Encodeable Object") holds a subtree besides the ``TypeId``?"""
    for key, value in tree:
        if key.endswith(": Encodeable Object") and isinstance(value, list):
            return any(not k.startswith("TypeId") for k, _ in value)
    return False


def parse_packets(packets: Iterator[_Pairs], capture: WsCapture) -> None:
    """Fill ``capture`` from tshark's JSON packets."""
    server_ports = capture.server_ports
    for packet in packets:
        layers = get(get(packet, "_source") or [], "layers") or []
        frame_fields: dict[str, list[str]] = {}
        tcp_fields: dict[str, list[str]] = {}
        ip_src = ip_dst = None
        srcport = dstport = None
        building: list[_Building] = []
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
                # the top-level TCP fields and the analysis flags (walking the whole TCP tree
                # of every packet costs more than the OPC UA trees)
                tcp_fields = {k: [v] for k, v in tree if isinstance(v, str)}
                analysis = get(tree, "tcp.analysis")
                if isinstance(analysis, list):
                    walk(analysis, tcp_fields)
            elif key == "opcua" and isinstance(tree, list):
                building.append(_Building(names_service=_names_service(tree)))
                walk(tree, building[-1].fields)
            elif key == "_ws.malformed":
                malformed = True
                if building:
                    building[-1].malformed = True
        number = int(frame_fields["frame.number"][0])
        ts = frame_fields.get("frame.time_epoch", [""])[0]
        capture.frames += 1
        if malformed and building:
            capture.malformed_frames.add(number)
        src, dst = endpoint(ip_src, srcport), endpoint(ip_dst, dstport)
        stream = int(tcp_fields["tcp.stream"][0]) if "tcp.stream" in tcp_fields else None
        if tcp_fields.get("tcp.len", ["0"])[0] != "0" and stream is not None:
            capture.segments[number] = Segment(
                stream=stream,
                src=src,
                dst=dst,
                seq=int(tcp_fields.get("tcp.seq", ["0"])[0]),
                length=int(tcp_fields["tcp.len"][0]),
                retransmission=any(flag in tcp_fields for flag in _RETRANSMISSION_FLAGS),
                unfinished="tcp.segment_data" in tcp_fields
                and "tcp.reassembled_in" not in tcp_fields,
            )
        sport = int(srcport) if srcport is not None else None
        dport = int(dstport) if dstport is not None else None
        direction = direction_by_port(sport, dport, server_ports)
        chunks = []
        for index, b in enumerate(building):
            f = b.fields
            chunks.append(
                WsChunk(
                    frame=number,
                    index=index,
                    ts=ts,
                    stream=stream,
                    src=src,
                    dst=dst,
                    direction=direction,
                    message_type=_str(f, "opcua.transport.type"),
                    chunk=_str(f, "opcua.transport.chunk"),
                    size=_int(f, "opcua.transport.size"),
                    secure_channel_id=_int(f, "opcua.transport.scid"),
                    security_policy_uri=_str(f, "opcua.security.spu"),
                    token_id=_int(f, "opcua.security.tokenid"),
                    sequence_number=_int(f, "opcua.security.seq"),
                    request_id=_int(f, "opcua.security.rqid"),
                    service_id=_int(f, "opcua.servicenodeid.numeric") if b.names_service else None,
                    type_id=_int(f, "opcua.servicenodeid.numeric"),
                    request_handle=_int(f, "opcua.RequestHandle"),
                    service_result=_int(f, "opcua.ServiceResult"),
                    error=_int(f, "opcua.transport.error"),
                    reason=_str(f, "opcua.transport.reason"),
                    fragments=tuple(int(v) for v in f.get("opcua.fragment", [])),
                    malformed=b.malformed,
                    experts=tuple(f.get("_ws.expert.message", [])),
                )
            )
        if chunks:
            capture.chunks.setdefault(number, []).extend(chunks)


def run_tshark(tshark: str, path: Path, decode_as: Sequence[int] = ()) -> WsCapture:
    """Run tshark once over ``path`` and return its OPC UA chunks per frame."""
    capture = WsCapture(path=Path(path), decode_as=tuple(sorted(set(decode_as))))
    cmd = tshark_command(tshark, Path(path), decode_as)
    stream_packets(cmd, lambda packets: parse_packets(packets, capture))
    return capture


@functools.cache
def cached_tshark(tshark: str, path: Path, decode_as: tuple[int, ...] = ()) -> WsCapture:
    """``run_tshark``, memoised: the conformance tests ask for the same capture several times."""
    return run_tshark(tshark, path, decode_as)


def retransmitted_new_data(capture: WsCapture) -> set[int]:
    """Frames tshark flags as a (fast / spurious) retransmission and dissects no OPC UA in,
    although the segment carries sequence numbers no earlier captured segment of its direction
    covered: its bytes were never seen before, yet tshark 4.0 does not add them to its TCP
    reassembly. ``opcua_with-gap*.pcap``: the client ACKs server bytes before they are captured,
    so tshark calls frames 26 and 30 — the 8th and the last of the ten segments of a 13 990-byte
    CreateSessionResponse — spurious retransmissions; the response never completes in tshark
    (its other segments stay in a reassembly that never ends). The first segment of a direction
    counts as new."""
    covered: dict[tuple[int, str], list[tuple[int, int]]] = {}
    out = set()
    for frame in sorted(capture.segments):
        seg = capture.segments[frame]
        spans = covered.setdefault((seg.stream, seg.src), [])
        start, end = seg.seq, seg.seq + seg.length
        if seg.retransmission and frame not in capture.chunks and adds_bytes(spans, start, end):
            out.add(frame)
        if end > start:
            spans.append((start, end))
    return out
