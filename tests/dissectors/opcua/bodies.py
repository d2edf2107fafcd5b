"""OPC UA message bodies out of captures, and what tshark 4.0 says about the same messages.

``message_bodies`` reads a capture with otsentry's own capture reader and decoder, puts each
direction of each TCP connection to the server port back together (in sequence order: a
retransmission adds only its new bytes; on a hole that never fills, the bytes after it are
searched for the next plausible chunk header), and walks the UA TCP chunks: for OPN / MSG / CLO
it takes the body after the 8-byte message header, the 4-byte secure channel id, the security
header (OPN: asymmetric — policy URI string, sender certificate and receiver thumbprint byte
strings; MSG / CLO: the 4-byte token id) and the 8-byte sequence header. The bodies of the
intermediate chunks (``C``) of a message are joined to the final chunk's (``F``); an abort chunk
(``A``) drops them. Connections whose OPN names a policy other than None are left out: their
bodies are ciphertext (or signed, with a signature of a length this helper does not work out).

A message is attributed to the frame in which the last byte of its final chunk arrived, as
tshark's TCP reassembly attributes it; ``Body.index`` numbers the messages completed in one
frame, in wire order.

``tshark_services`` runs tshark once (``-T json -J "frame opcua"``, empty configuration
directory) and lists, per frame in wire order, every OPC UA message with a decoded service:
``opcua.servicenodeid.numeric``, the header's ``opcua.RequestHandle`` and ``opcua.ServiceResult``
and the NodeIds of a Read request's NodesToRead / a Write request's NodesToWrite, as
``(namespace, kind, value)`` tuples (kind ``i``, ``s``, ``g``, ``b``; ``b`` as hex).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otsentry.capture import open_capture
from otsentry.decode import Decoder
from otsentry.dissectors.opcua.services import SERVICE_NAMES

OPCUA_PORT = 4840
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
_HEADER = struct.Struct("<3scI")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_TYPES = frozenset((b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"))
_MAX_CHUNK = 1 << 24

Pairs = list[tuple[str, Any]]
NodeKey = tuple[int, str, str]


@dataclass(frozen=True)
class Body:
    """One OPN / MSG / CLO message body: decode with ``decode_body(data, 0, len(data))``."""

    frame: int
    index: int
    flow: int
    from_client: bool
    message_type: str
    request_id: int
    data: bytes
    #: a Sign-only channel's message: a signature follows the body inside ``data``
    signed: bool = False


@dataclass
class _Direction:
    next_seq: int | None = None
    buf: bytearray = field(default_factory=bytearray)
    #: (buffer offset just past the bytes, frame that delivered them)
    spans: list[tuple[int, int]] = field(default_factory=list)
    resync: bool = False
    parts: dict[int, list[bytes]] = field(default_factory=dict)


@dataclass
class _Flow:
    number: int
    directions: dict[bool, _Direction] = field(
        default_factory=lambda: {True: _Direction(), False: _Direction()}
    )
    secured: bool = False


def _plausible(buf: bytes | bytearray, pos: int) -> bool:
    mtype, chunk, size = _HEADER.unpack_from(buf, pos)
    return mtype in _TYPES and chunk in (b"F", b"C", b"A") and 8 <= size <= _MAX_CHUNK


def _string(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n = _I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    return buf[pos : pos + n], pos + n


def _frame_at(spans: list[tuple[int, int]], offset: int) -> int:
    for end, frame in spans:
        if offset < end:
            return frame
    return spans[-1][1]


def _chunks(flow: _Flow, from_client: bool, out: list[tuple[int, Body]]) -> None:
    """Walk the whole chunks at the front of one direction's buffer."""
    d = flow.directions[from_client]
    buf, pos = d.buf, 0
    while len(buf) - pos >= 8:
        if not _plausible(buf, pos):
            if not d.resync:
                pos = len(buf)  # not OPC UA (or lost): drop what is there
                break
            pos += 1
            continue
        size = _HEADER.unpack_from(buf, pos)[2]
        if len(buf) - pos < size:
            break
        d.resync = False
        chunk = bytes(buf[pos : pos + size])
        frame = _frame_at(d.spans, pos + size - 1)
        pos += size
        body = _chunk_body(flow, chunk)
        if body is None:
            continue
        mtype, ctype, request_id, data = body
        if ctype == "C":
            d.parts.setdefault(request_id, []).append(data)
            continue
        parts = d.parts.pop(request_id, [])
        if ctype == "A":
            continue
        joined = b"".join([*parts, data])
        signed = flow.secured
        if signed and (mtype == "OPN" or not _plaintext(joined)):
            continue  # asymmetric OPN, or SignAndEncrypt: ciphertext
        body = Body(frame, 0, flow.number, from_client, mtype, request_id, joined, signed)
        out.append((frame, body))
    del buf[:pos]
    d.spans = [(end - pos, frame) for end, frame in d.spans if end > pos]


def _plaintext(body: bytes) -> bool:
    """Does a secured channel's body start with the four-byte NodeId of a service encoding?
    (Sign-only: plaintext followed by a signature; ciphertext does not look like that.)"""
    return (
        len(body) >= 4
        and body[0] == 0x01
        and body[1] == 0
        and struct.unpack_from("<H", body, 2)[0] in SERVICE_NAMES
    )


def _chunk_body(flow: _Flow, chunk: bytes) -> tuple[str, str, int, bytes] | None:
    """(message type, chunk type, request id, body) of an OPN / MSG / CLO chunk."""
    mtype = chunk[:3].decode("ascii")
    ctype = chunk[3:4].decode("ascii")
    if mtype not in ("OPN", "MSG", "CLO"):
        return None
    try:
        pos = 12
        if mtype == "OPN":
            policy, pos = _string(chunk, pos)
            _cert, pos = _string(chunk, pos)
            _thumb, pos = _string(chunk, pos)
            if policy is not None and policy.decode("utf-8", "replace") != POLICY_NONE:
                flow.secured = True
        else:
            pos += 4  # token id
        _sequence, request_id = struct.unpack_from("<II", chunk, pos)
    except struct.error:
        return None
    return mtype, ctype, request_id, chunk[pos + 8 :]


def _feed(flow: _Flow, from_client: bool, seq: int, payload: bytes, frame: int) -> None:
    d = flow.directions[from_client]
    if d.next_seq is None:
        d.next_seq = seq
    delta = (seq - d.next_seq) & 0xFFFFFFFF
    if delta >= 0x80000000:  # starts before what we have: keep only the new tail
        skip = 0x100000000 - delta
        if skip >= len(payload):
            return
        payload = payload[skip:]
        seq = d.next_seq
    elif delta > 0:  # a hole: what is buffered will never complete
        d.buf.clear()
        d.spans.clear()
        d.parts.clear()
        d.resync = True
    d.buf += payload
    d.spans.append((len(d.buf), frame))
    d.next_seq = (seq + len(payload)) & 0xFFFFFFFF


def message_bodies(path: Path, port: int = OPCUA_PORT) -> list[Body]:
    """Every plaintext OPN / MSG / CLO message body of the connections to ``port``."""
    decoder = Decoder()
    flows: dict[tuple[bytes, int, bytes], _Flow] = {}
    found: list[tuple[int, Body]] = []
    with open_capture(path) as reader:
        for number, (ts, linktype, data) in enumerate(reader, start=1):
            pkt = decoder.decode(linktype, data, ts)
            if pkt is None:
                continue
            (src, sport, dst, dport, _vlan, proto), _flags, seq, payload, _mac = pkt
            if proto != 6 or not payload or port not in (sport, dport):
                continue
            from_client = dport == port
            key = (src, sport, dst) if from_client else (dst, dport, src)
            flow = flows.get(key)
            if flow is None:
                flow = flows[key] = _Flow(len(flows))
            _feed(flow, from_client, seq, bytes(payload), number)
            _chunks(flow, from_client, found)
    found.sort(key=lambda item: item[0])
    out: list[Body] = []
    counts: dict[int, int] = {}
    for frame, body in found:
        index = counts.get(frame, 0)
        counts[frame] = index + 1
        out.append(replace(body, index=index))
    return out


# -- tshark ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WsService:
    """One OPC UA message with a decoded service, as tshark shows it."""

    frame: int
    index: int
    service_id: int
    request_handle: int | None
    service_result: int | None
    nodes: tuple[NodeKey, ...] | None  # Read / Write requests
    timestamp: str | None


def _iter_packets(lines: Iterator[str]) -> Iterator[Pairs]:
    chunk: list[str] | None = None
    for line in lines:
        if chunk is None:
            if line.rstrip("\r\n") == "  {":
                chunk = [line]
            continue
        chunk.append(line)
        if line.rstrip("\r\n") in ("  }", "  },"):
            text = "".join(chunk).rstrip().rstrip(",")
            chunk = None
            yield json.loads(text, object_pairs_hook=lambda pairs: pairs)


def _get(pairs: Pairs, key: str) -> Any:
    for k, v in pairs:
        if k == key:
            return v
    return None


def _find(pairs: Pairs, prefix: str) -> Pairs | None:
    """The first subtree (depth first) whose label starts with ``prefix``."""
    for k, v in pairs:
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            if k.startswith(prefix):
                return v
            inner = _find(v, prefix)
            if inner is not None:
                return inner
    return None


def _find_suffix(pairs: Pairs, suffix: str) -> Pairs | None:
    """The first subtree (depth first) whose label ends with ``suffix``: the service of a MSG
    ("OpcUa Service : Encodeable Object") or of an OPN / CLO ("Message : Encodeable Object")."""
    for k, v in pairs:
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            if k.endswith(suffix):
                return v
            inner = _find_suffix(v, suffix)
            if inner is not None:
                return inner
    return None


def _first(pairs: Pairs, key: str) -> str | None:
    """The first leaf ``key`` in tree order."""
    for k, v in pairs:
        if k == key and isinstance(v, str):
            return v
        if isinstance(v, list) and v and isinstance(v[0], tuple):
            inner = _first(v, key)
            if inner is not None:
                return inner
    return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text, 16) if text.startswith("0x") else int(text)


def ws_node(pairs: Pairs) -> NodeKey:
    """A NodeId subtree of tshark's → (namespace, kind, value)."""
    mask = _int(_get(pairs, "opcua.nodeid.encodingmask")) or 0
    ns = _int(_get(pairs, "opcua.nodeid.nsindex")) or 0
    kind = mask & 0x0F
    if kind in (0, 1, 2):
        return ns, "i", str(_int(_get(pairs, "opcua.nodeid.numeric")))
    if kind == 3:
        return ns, "s", _get(pairs, "opcua.nodeid.string") or ""
    if kind == 4:
        return ns, "g", (_get(pairs, "opcua.nodeid.guid") or "").lower()
    return ns, "b", (_get(pairs, "opcua.nodeid.bytestring") or "").replace(":", "").lower()


def node_key(text: str) -> NodeKey:
    """Our NodeId text → (namespace, kind, value), as :func:`ws_node` builds it."""
    ns = 0
    if text.startswith("ns="):
        head, text = text.split(";", 1)
        ns = int(head[3:])
    kind, value = text.split("=", 1)
    if kind == "b":
        value = base64.b64decode(value).hex()
    return ns, kind, value


def _nodes(service: Pairs) -> tuple[NodeKey, ...] | None:
    array = _find(service, "NodesToRead:") or _find(service, "NodesToWrite:")
    if array is None:
        return None
    nodes = []
    for k, v in array:
        if k.startswith("[") and isinstance(v, list):
            node = _find(v, "NodeId:")
            if node is not None:
                nodes.append(ws_node(node))
    return tuple(nodes)


def _services(packet: Pairs) -> Iterator[tuple[int, Pairs]]:
    layers = _get(_get(packet, "_source"), "layers")
    frame = int(_get(_get(layers, "frame"), "frame.number"))
    for key, tree in layers:
        if key == "opcua" and isinstance(tree, list):
            service = _find_suffix(tree, "Encodeable Object")
            if service is not None and _first(service, "opcua.servicenodeid.numeric"):
                yield frame, service


def _parse(lines: Iterator[str]) -> list[WsService]:
    out: list[WsService] = []
    counts: dict[int, int] = {}
    for packet in _iter_packets(lines):
        for frame, service in _services(packet):
            index = counts.get(frame, 0)
            counts[frame] = index + 1
            out.append(
                WsService(
                    frame,
                    index,
                    int(_first(service, "opcua.servicenodeid.numeric") or 0),
                    _int(_first(service, "opcua.RequestHandle")),
                    _int(_first(service, "opcua.ServiceResult")),
                    _nodes(service),
                    _first(service, "opcua.Timestamp"),
                )
            )
    return out


@functools.cache
def tshark_services(tshark: str, path: Path, port: int = OPCUA_PORT) -> tuple[WsService, ...]:
    """What tshark dissects as OPC UA services in ``path`` (``port``: decode-as when not 4840)."""
    cmd = [tshark, "-n", "-r", str(path)]
    if port != OPCUA_PORT:
        cmd += ["-d", f"tcp.port=={port},opcua"]
    cmd += ["-Y", "opcua", "-T", "json", "-J", "frame opcua"]
    with tempfile.TemporaryDirectory(prefix="ws-config-") as confdir:
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": confdir}
        done = subprocess.run(
            cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", env=env
        )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return tuple(_parse(iter(done.stdout.splitlines(keepends=True))))
