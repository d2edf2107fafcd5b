"""OPC UA binary conformance: our per-message dump (``otsentry.dissect.dump.iter_records``,
protocol ``opcua``) against tshark 4.0 and against ICSNPP's expected Zeek logs.

Captures: the lab captures ``pcaps/*opcua*.pcap`` and every shared capture whose
``MANIFEST.tsv`` column ``opcua_msgs`` is > 0 (``CAPTURES``). A capture whose MANIFEST notes say
"OPC UA on tcp/P" (48010, 12001) is read by tshark with ``-d tcp.port==P,opcua`` (``DECODE_AS``);
ours always runs *without* decode-as and must find those flows itself (its probe). Everything
skips when ../shared/pcaps or tshark is absent, and the tests that need our dump skip while no
OPC UA dissector is registered.

What a message is, and where it is attributed
---------------------------------------------
A message is what our dump reports as one record: HEL / ACK / ERR / RHE, or an OPN / MSG / CLO
message made of one or more chunks. tshark prints one ``opcua`` tree per chunk; the trees of
intermediate chunks (chunk type ``C``) hold only the transport and security headers, the final
chunk's tree (``F``) lists the chunk frames (``opcua.fragment``) and carries the service of the
reassembled body; an abort chunk (``A``) ends its message with an error code and reason. So on
tshark's side a message is every tree whose chunk type is not ``C``, at the frame tshark prints
it — the frame in which the last byte of the message's last chunk arrived, also when that chunk
is split over TCP segments (tshark's TCP reassembly delivers it at the completing segment).
Ours reports a message at the frame of its last chunk, so both name the same frame; a frame
holding only intermediate chunks holds no message on either side. In the corpus only
``pcaps/opcua_attacks.pcap`` has messages of several chunks (the HMI's trend ReadResponses,
three chunks each: frames 47, 56, 58 → one ReadResponse at 58);
``test_chunked_messages_attributed_like_tshark`` builds a capture (in a temporary directory) with
the other cases and pins tshark's view of it: chunks in three frames, a final chunk split over
two segments, two messages in one segment, an aborted message (tshark: chunk type ``A``, no
service; counted as a message).

How a message is compared with tshark (``ws_key`` / ``our_key``)
---------------------------------------------------------------
Per frame, the multiset of keys must be equal — every frame, every message:

  (direction, message_type, service_id, request_handle, service_result)

==================  ===========================================================================
ours                tshark
==================  ===========================================================================
direction           by TCP port: to the server port (4840 or the decode-as port) = request, from
                    it = response (tshark does not tag it)
message_type        ``opcua.transport.type``
service_id          ``opcua.servicenodeid.numeric`` (the binary encoding node id: 631
                    ReadRequest, 397 ServiceFault); None for HEL / ACK / ERR, aborts, and bodies
                    tshark cannot read (encrypted)
request_handle      ``opcua.RequestHandle``: the request header's, or the response header's
service_result      ``opcua.ServiceResult``: the response header's status code (responses only)
==================  ===========================================================================

``test_ids_equal_tshark`` pairs the messages of a frame in wire order and compares the secure
channel id (``opcua.transport.scid``), the request id (``opcua.security.rqid``) where both can
read it, and an OPN's security policy URI (``opcua.security.spu``).

Encrypted messages. tshark 4.0 cannot decrypt: an OPN with an asymmetric security policy other
than None and the MSG / CLO of a SignAndEncrypt channel show their clear headers and no named
service (``WsChunk.opaque``; tshark reads the ciphertext as a body, and the type id or request id
it prints for them are meaningless — see ``wireshark.py``). Both sides
then have no service fields, so the key compares direction and message type; the secure channel
id is compared as everywhere; the request id is not compared where ours flags ``encrypted`` or
tshark's message is opaque. ``test_encrypted_messages_flagged`` checks that ours flags
``encrypted`` on exactly the messages tshark cannot read (``open62541_client-server_encrypted``:
11, ``python_opcua-client-server_encrypted``: its two Basic256Sha256 OPNs — the python client's
MSGs are Sign-only and readable by both —, ``pcaps/opcua_secure.pcap``: 49, the SignAndEncrypt
channel and the OPNs of the Sign-only one).

What is left out of the per-frame comparison, and checked apart
---------------------------------------------------------------
* Frames tshark marks malformed (``_ws.malformed``; ``opc-ua-ap-method-wireshark-freeze.pcap``
  frame 42, the 5 224-byte CallRequest crafted to freeze old Wireshark versions, whose method
  call tshark gives up decoding): ours must flag an anomaly on a message of that frame or of
  that TCP connection.
* Segments tshark flags as a TCP (spurious / fast) retransmission and dissects nothing in,
  although they carry bytes no earlier segment of their direction covered
  (``wireshark.retransmitted_new_data``; ``opcua_with-gap*.pcap`` frames 26 and 30, which hold
  the middle and the end of a 13 990-byte CreateSessionResponse: tshark never completes that
  message). Only ours can decode there: every message of ours there must be new (no key and
  request id already seen in that flow direction), and a response must answer a request tshark
  shows earlier in the flow (same request id and request handle) that tshark never sees
  answered.

Every failure lists the first ``SHOW`` mismatching frames as "only tshark" / "only ours".

ICSNPP (``icsnpp_logs.py`` explains its logs): opcua_binary.log (one row per request/response
pair, split back into messages), opcua_binary_status_code_detail.log and the per-service logs of
the five traces with a baseline, including the no-handshake, data-gap and non-standard-port
ones. Compared per (client, server, direction, message type, service id, request handle);
status codes per (client, server, status code) and per-service log rows per (client, server,
direction, service id) — see ``test_icsnpp_logs_equal_ours`` for the normalisations. Where ICSNPP
and tshark disagree it is pinned exactly (``ICSNPP_STOPS``) and ours must equal one of them.
"""

from __future__ import annotations

import csv
import functools
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LAB_PCAPS, SHARED_PCAPS, capture_path, lab_pcaps
from tests.dissectors.opcua.icsnpp_logs import (
    BROWSE_SERVICE_TYPES,
    ICSNPP_REFERENCES,
    SERVICE_LOGS,
    SINGLE_TYPES,
    IcsnppReference,
    read_messages,
    read_service_log,
    read_status_codes,
)
from tests.dissectors.opcua.wireshark import (
    OPCUA_PORT,
    WsCapture,
    WsChunk,
    cached_tshark,
    retransmitted_new_data,
    run_tshark,
)

#: How many mismatching frames a failure prints.
SHOW = 15

# --- which captures ----------------------------------------------------------------------------

_PORT_NOTE = re.compile(r"OPC UA on tcp/(\d+)")


def _manifest_opcua() -> dict[str, tuple[int, ...]]:
    """Shared capture → the ports its MANIFEST notes say carry OPC UA besides 4840."""
    manifest = SHARED_PCAPS / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    col = header.index("opcua_msgs") if "opcua_msgs" in header else 9
    notes = header.index("notes") if "notes" in header else 10
    out = {}
    for row in rows[1:]:
        if len(row) > col and int(row[col] or 0) > 0:
            note = row[notes] if len(row) > notes else ""
            out[row[0]] = tuple(sorted({int(p) for p in _PORT_NOTE.findall(note)} - {OPCUA_PORT}))
    return out


def _capture_ids() -> tuple[list[str], dict[str, tuple[int, ...]]]:
    ids = [f"lab/{p.name}" for p in lab_pcaps() if "opcua" in p.name]
    shared = _manifest_opcua()
    ids += [f"shared/{rel}" for rel in sorted(shared)] if shared else ["shared/(absent)"]
    decode_as = {f"shared/{rel}": ports for rel, ports in shared.items() if ports}
    return ids, decode_as


CAPTURES, DECODE_AS = _capture_ids()


# --- our dump ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OurMsg:
    """The fields of one dump record the comparisons need."""

    frame: int
    index: int  # position among ours' records of that frame
    direction: str | None
    src: str
    dst: str
    message_type: str | None
    secure_channel_id: int | None
    security_policy_uri: str | None
    request_id: int | None
    service_id: int | None
    service: str | None
    request_handle: int | None
    service_result: int | None
    encrypted: bool
    anomalies: tuple[str, ...]

    @property
    def client_server(self) -> tuple[str, str]:
        return (self.dst, self.src) if self.direction == "response" else (self.src, self.dst)


@functools.cache
def our_messages(path: Path) -> tuple[OurMsg, ...]:
    """Our dump of ``path`` (OPC UA records, no decode-as), memoised."""
    from otsentry.dissect.dump import iter_records

    out: list[OurMsg] = []
    seen: Counter[int] = Counter()
    for rec in iter_records(path, protocols=("opcua",), decode_as=()):
        body = rec.get("opcua") or {}
        frame = int(rec["frame"])
        out.append(
            OurMsg(
                frame=frame,
                index=seen[frame],
                direction=rec.get("direction"),
                src=str(rec.get("src")),
                dst=str(rec.get("dst")),
                message_type=body.get("message_type"),
                secure_channel_id=body.get("secure_channel_id"),
                security_policy_uri=body.get("security_policy_uri"),
                request_id=body.get("request_id"),
                service_id=body.get("service_id"),
                service=body.get("service"),
                request_handle=body.get("request_handle"),
                service_result=body.get("service_result"),
                encrypted=bool(body.get("encrypted")),
                anomalies=tuple(body.get("anomalies") or ()),
            )
        )
        seen[frame] += 1
    return tuple(out)


def _by_frame(msgs: Iterable[OurMsg]) -> dict[int, list[OurMsg]]:
    frames: dict[int, list[OurMsg]] = {}
    for m in msgs:
        frames.setdefault(m.frame, []).append(m)
    return frames


def _load(capture: str, request: pytest.FixtureRequest, tshark: str) -> tuple[Path, WsCapture]:
    path = capture_path(capture, request)
    return path, cached_tshark(tshark, path, DECODE_AS.get(capture, ()))


# --- the message key ---------------------------------------------------------------------------

Key = tuple[str | None, str | None, int | None, int | None, int | None]


def ws_key(m: WsChunk) -> Key:
    return (m.direction, m.message_type, m.service_id, m.request_handle, m.service_result)


def our_key(m: OurMsg) -> Key:
    return (m.direction, m.message_type, m.service_id, m.request_handle, m.service_result)


def show_key(key: Key) -> str:
    direction, kind, service, handle, result = key
    text = f"{(direction or '?')[:4]} {kind}"
    if service is not None:
        text += f" svc={service}"
    if handle is not None:
        text += f" handle={handle}"
    if result is not None:
        text += f" result=0x{result:08x}"
    return text


def _counter_text(c: Counter[Any], show: Callable[[Any], str] = str) -> str:
    return "; ".join(
        f"{show(k)}" + (f" x{n}" if n > 1 else "") for k, n in sorted(c.items(), key=repr)
    )


def excluded_frames(ws: WsCapture) -> set[int]:
    """Frames left out of the per-frame comparison (see module doc)."""
    return ws.malformed_frames | retransmitted_new_data(ws)


FrameDiff = list[tuple[int, Counter[Any], Counter[Any]]]


def frame_diff(ws: WsCapture, ours: Sequence[OurMsg], skip: set[int] | None = None) -> FrameDiff:
    """Frames (not excluded) whose key multisets differ: (frame, only tshark, only ours)."""
    mine = _by_frame(ours)
    skip = excluded_frames(ws) if skip is None else skip
    out: FrameDiff = []
    for frame in sorted(set(ws.messages) | set(mine)):
        if frame in skip:
            continue
        theirs = Counter(ws_key(m) for m in ws.messages.get(frame, []))
        ours_c = Counter(our_key(m) for m in mine.get(frame, []))
        if theirs != ours_c:
            out.append((frame, theirs - ours_c, ours_c - theirs))
    return out


def render_frame_diff(
    path: Path,
    diff: FrameDiff,
    totals: str,
    show: Callable[[Any], str] = show_key,
    left: str = "tshark",
) -> str:
    lines = [f"{path}: {len(diff)} frame(s) differ ({totals}); first {min(SHOW, len(diff))}:"]
    for frame, only_ref, only_ours in diff[:SHOW]:
        lines.append(f"  frame {frame}:")
        if only_ref:
            lines.append(f"    only {left}: {_counter_text(only_ref, show)}")
        if only_ours:
            pad = " " * max(1, len(left) - 3)
            lines.append(f"    only ours:{pad}{_counter_text(only_ours, show)}")
    return "\n".join(lines)


def _totals(ws: WsCapture, ours: Sequence[OurMsg]) -> str:
    return f"tshark {ws.total} messages, ours {len(ours)}"


# --- 1. per frame against tshark -----------------------------------------------------------------


@pytest.mark.parametrize("capture", CAPTURES)
def test_messages_per_frame_equal_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Per frame, the multiset of message keys (see module doc) equals tshark's."""
    path, ws = _load(capture, request, tshark)
    ours = our_messages(path)
    diff = frame_diff(ws, ours)
    assert not diff, render_frame_diff(path, diff, _totals(ws, ours))


@pytest.mark.parametrize("capture", CAPTURES)
def test_message_total_equals_tshark(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Total messages are equal outside the excluded frames (malformed, retransmitted new
    bytes)."""
    path, ws = _load(capture, request, tshark)
    ours = our_messages(path)
    skip = excluded_frames(ws)
    theirs = sum(len(v) for f, v in ws.messages.items() if f not in skip)
    mine = sum(1 for m in ours if m.frame not in skip)
    by_type = Counter(m.message_type for m in ours)
    assert mine == theirs, (
        f"{path}: tshark {theirs} messages, ours {mine} (outside {len(skip)} excluded frames;"
        f" ours in all: {len(ours)}, by type {dict(by_type)})"
    )


def _show_msg(m: OurMsg) -> str:
    return f"{show_key(our_key(m))} anomalies={list(m.anomalies)}"


@pytest.mark.parametrize("capture", CAPTURES)
def test_malformed_frames_carry_anomalies(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Where tshark marks a frame malformed, ours flags an anomaly on a message of that frame or
    of that TCP connection."""
    path, ws = _load(capture, request, tshark)
    if not ws.malformed_frames:
        return
    ours = our_messages(path)
    mine = _by_frame(ours)
    missing = []
    for frame in sorted(ws.malformed_frames):
        here = mine.get(frame, [])
        if any(m.anomalies for m in here):
            continue
        flows = {frozenset((c.src, c.dst)) for c in ws.chunks.get(frame, [])}
        if any(m.anomalies for m in ours if frozenset((m.src, m.dst)) in flows):
            continue
        theirs = "; ".join(show_key(ws_key(c)) for c in ws.chunks.get(frame, []))
        mine_text = "; ".join(_show_msg(m) for m in here)
        missing.append(f"  frame {frame}: tshark [{theirs}] ours [{mine_text or 'no message'}]")
    assert not missing, (
        f"{path}: tshark-malformed frames without an anomaly of ours in the frame or the"
        " connection:\n" + "\n".join(missing[:SHOW])
    )


@pytest.mark.parametrize("capture", CAPTURES)
def test_retransmitted_new_bytes_only_ours_decodes(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Messages only ours decodes, stated explicitly: in segments tshark flags as
    retransmissions but which carry bytes never captured before (see module doc), every message
    of ours is new — not a second report of a key and request id seen earlier in that flow
    direction — and a response answers a request tshark shows earlier in the flow (same request
    id and handle) and never sees answered."""
    path, ws = _load(capture, request, tshark)
    frames = retransmitted_new_data(ws)
    if not frames:
        return
    ours = our_messages(path)
    answered = {
        (m.dst, m.src, m.request_id, m.request_handle)
        for m in ws.iter_messages()
        if m.direction == "response"
    }
    asked = {
        (m.src, m.dst, m.request_id, m.request_handle): m.frame
        for m in ws.iter_messages()
        if m.direction == "request"
    }
    problems = []
    for m in ours:
        if m.frame not in frames:
            continue
        before = {
            (ws_key(c), c.request_id)
            for c in ws.iter_messages()
            if c.frame < m.frame and (c.src, c.dst) == (m.src, m.dst)
        }
        before |= {
            (our_key(o), o.request_id)
            for o in ours
            if o.frame < m.frame and (o.src, o.dst) == (m.src, m.dst)
        }
        text = f"  frame {m.frame}: {show_key(our_key(m))} request_id={m.request_id}"
        if (our_key(m), m.request_id) in before:
            problems.append(f"{text}: reported again")
        if m.direction == "response":
            want = (m.dst, m.src, m.request_id, m.request_handle)
            if want not in asked or asked[want] > m.frame:
                problems.append(f"{text}: answers no earlier request tshark shows")
            elif want in answered:
                problems.append(f"{text}: tshark shows that request answered elsewhere")
    assert not problems, (
        f"{path}: messages ours decodes in retransmitted segments with new bytes"
        f" (frames {sorted(frames)}):\n" + "\n".join(problems[:SHOW])
    )


IdKey = tuple[str | None, str | None, int | None, int | None, str | None]


def _show_ids(k: IdKey) -> str:
    direction, kind, scid, rqid, spu = k
    text = f"{(direction or '?')[:4]} {kind} scid={scid} rqid={rqid}"
    return text + (f" spu={spu}" if spu is not None else "")


@pytest.mark.parametrize("capture", CAPTURES)
def test_ids_equal_tshark(capture: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Per frame, message by message in wire order: the secure channel id, the request id
    (not where ours flags ``encrypted`` or tshark cannot read the body: tshark's value is then
    read from ciphertext) and an OPN's security policy URI equal tshark's. Frames whose message
    count differs are left to ``test_messages_per_frame_equal_tshark``."""
    path, ws = _load(capture, request, tshark)
    mine = _by_frame(our_messages(path))
    skip = excluded_frames(ws)
    diff: FrameDiff = []
    for frame, theirs in sorted(ws.messages.items()):
        here = mine.get(frame, [])
        if frame in skip or len(here) != len(theirs):
            continue
        a: Counter[IdKey] = Counter()
        b: Counter[IdKey] = Counter()
        for t, o in zip(theirs, here, strict=True):
            readable = not (t.opaque or o.encrypted)
            spu = t.security_policy_uri if t.message_type == "OPN" else None
            a[
                (
                    t.direction,
                    t.message_type,
                    t.secure_channel_id,
                    t.request_id if readable else None,
                    spu,
                )
            ] += 1
            b[
                (
                    o.direction,
                    o.message_type,
                    o.secure_channel_id,
                    o.request_id if readable else None,
                    o.security_policy_uri if o.message_type == "OPN" else None,
                )
            ] += 1
        if a != b:
            diff.append((frame, a - b, b - a))
    assert not diff, render_frame_diff(path, diff, "secure channel / request ids", _show_ids)


@pytest.mark.parametrize("capture", CAPTURES)
def test_encrypted_messages_flagged(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """Ours flags ``encrypted`` on exactly the messages whose body tshark cannot read (a final
    OPN / MSG / CLO chunk without a service, not malformed), frame by frame in wire order, and
    reports no service fields for them."""
    path, ws = _load(capture, request, tshark)
    mine = _by_frame(our_messages(path))
    skip = excluded_frames(ws)
    problems = []
    for frame in sorted(set(ws.messages) | set(mine)):
        if frame in skip:
            continue
        theirs, here = ws.messages.get(frame, []), mine.get(frame, [])
        opaque = [t.opaque for t in theirs]
        flagged = [o.encrypted for o in here]
        if opaque == flagged or not (any(opaque) or any(flagged)):
            continue
        a = "; ".join(show_key(ws_key(t)) for t in theirs)
        b = "; ".join(show_key(our_key(o)) for o in here)
        problems.append(
            f"  frame {frame}: tshark opaque {opaque} [{a}], ours encrypted {flagged} [{b}]"
        )
    for o in (o for msgs in mine.values() for o in msgs):
        if o.encrypted and (o.service_id, o.request_handle, o.service_result) != (None,) * 3:
            problems.append(f"  frame {o.frame}: encrypted but {show_key(our_key(o))}")
    assert not problems, f"{path}: encrypted messages:\n" + "\n".join(problems[:SHOW])


@pytest.mark.parametrize("capture", sorted(DECODE_AS) or ["(none)"])
def test_probe_finds_opcua_tshark_needs_decode_as_for(
    capture: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """OPC UA on a non-standard port: tshark sees none of it without ``-d``, ours finds every
    message without decode-as (its probe), with the per-frame keys tshark gives *with* ``-d``."""
    if capture == "(none)":
        pytest.skip("no capture with OPC UA on another port")
    path = capture_path(capture, request)
    plain = cached_tshark(tshark, path, ())
    forced = cached_tshark(tshark, path, DECODE_AS[capture])
    assert forced.total > 0, f"{path}: tshark finds no OPC UA even with decode-as"
    assert plain.total == 0, f"{path}: tshark decodes {plain.total} messages without decode-as"
    probed = our_messages(path)
    diff = frame_diff(forced, probed)
    assert not diff, render_frame_diff(path, diff, _totals(forced, probed))


@pytest.mark.parametrize(
    "name", sorted(p.name for p in lab_pcaps() if "opcua" not in p.name) or ["(none)"]
)
def test_no_opcua_in_other_lab_captures(name: str, tshark: str) -> None:
    """Negative control: the lab's Modbus / S7comm captures hold no OPC UA, for tshark nor ours
    (whose probe looks at every flow)."""
    path = LAB_PCAPS / name
    if not path.is_file():
        pytest.skip("no non-OPC UA lab capture")
    assert cached_tshark(tshark, path, ()).total == 0
    assert our_messages(path) == ()


# --- 2. chunked messages (a capture built here) -------------------------------------------------

_NONE_POLICY = b"http://opcfoundation.org/UA/SecurityPolicy#None"


def _pcap(frames: Sequence[bytes]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f)
    return b"".join(out)


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _tcp_frame(src: int, dst: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    """Ethernet / IPv4 / TCP between 10.0.0.5:50212 (client) and 10.0.0.9:4840 (server);
    ``src``/``dst`` are ports. The TCP checksum stays 0 (neither side validates it)."""
    ips = {50212: bytes([10, 0, 0, 5]), OPCUA_PORT: bytes([10, 0, 0, 9])}
    tcp = struct.pack("!HHIIBBHHH", src, dst, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0, 64, 6, 0, ips[src], ips[dst]
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    macs = {50212: b"\x02\x00\x00\x00\x00\x05", OPCUA_PORT: b"\x02\x00\x00\x00\x00\x09"}
    return macs[dst] + macs[src] + b"\x08\x00" + ip + tcp + payload


def _ua_string(value: bytes | None) -> bytes:
    return struct.pack("<i", -1) if value is None else struct.pack("<i", len(value)) + value


def _chunk(kind: bytes, chunk: bytes, body: bytes) -> bytes:
    return kind + chunk + struct.pack("<I", 8 + len(body)) + body


def _msg(chunk: bytes, seq: int, request_id: int, body: bytes) -> bytes:
    """A MSG chunk of secure channel 5, token 1."""
    return _chunk(b"MSG", chunk, struct.pack("<IIII", 5, 1, seq, request_id) + body)


def _type_id(numeric: int) -> bytes:
    return b"\x01\x00" + struct.pack("<H", numeric)  # four-byte NodeId, namespace 0


def _request_header(handle: int) -> bytes:
    # null authentication token, timestamp, handle, return diagnostics, audit id, timeout hint,
    # no additional header
    return b"\x00\x00" + struct.pack("<qIIiI", 0, handle, 0, -1, 10000) + b"\x00\x00\x00"


def _response_header(handle: int, result: int) -> bytes:
    # timestamp, handle, service result, no diagnostics, empty string table, no additional header
    return struct.pack("<qII", 0, handle, result) + b"\x00" + struct.pack("<i", 0) + b"\x00\x00\x00"


def _read_request(handle: int, nodes: int) -> bytes:
    items = b"".join(
        b"\x01\x00"
        + struct.pack("<HI", 2000 + i, 13)
        + _ua_string(None)
        + b"\x00\x00"
        + _ua_string(None)
        for i in range(nodes)
    )
    body = _request_header(handle) + struct.pack("<dIi", 0.0, 2, nodes) + items
    return _type_id(631) + body


def _read_response(handle: int, values: int, result: int = 0) -> bytes:
    data = b"".join(b"\x01\x06" + struct.pack("<i", i) for i in range(values))
    body = _response_header(handle, result) + struct.pack("<i", values) + data
    return _type_id(634) + body + struct.pack("<i", 0)


def chunked_capture() -> bytes:
    """One connection (HEL, ACK, OPN pair, then chunked MSGs); the frame numbers the test pins
    are noted per segment."""
    url = b"opc.tcp://10.0.0.9:4840"
    sizes = struct.pack("<IIIII", 0, 65536, 65536, 0, 0)
    hel = _chunk(b"HEL", b"F", sizes + _ua_string(url))
    ack = _chunk(b"ACK", b"F", sizes)
    asym = _ua_string(_NONE_POLICY) + _ua_string(None) + _ua_string(None)
    opn_req = _chunk(
        b"OPN",
        b"F",
        struct.pack("<I", 0)
        + asym
        + struct.pack("<II", 1, 1)
        + _type_id(446)
        + _request_header(1)
        + struct.pack("<IIIiI", 0, 0, 1, -1, 600000),
    )
    opn_res = _chunk(
        b"OPN",
        b"F",
        struct.pack("<I", 5)
        + asym
        + struct.pack("<II", 1, 1)
        + _type_id(449)
        + _response_header(1, 0)
        + struct.pack("<IIIqI", 0, 5, 1, 0, 600000)
        + _ua_string(b""),
    )
    frames: list[bytes] = []
    seq = {50212: 1000, OPCUA_PORT: 5000}

    def send(src: int, data: bytes, flags: int = 0x18) -> None:
        dst = OPCUA_PORT if src == 50212 else 50212
        frames.append(_tcp_frame(src, dst, seq[src], seq[dst], flags, data))
        seq[src] += len(data) or (1 if flags & 0x02 else 0)

    send(50212, b"", 0x02)  # 1 SYN
    send(OPCUA_PORT, b"", 0x12)  # 2 SYN-ACK
    send(50212, b"", 0x10)  # 3 ACK
    send(50212, hel)  # 4
    send(OPCUA_PORT, ack)  # 5
    send(50212, opn_req)  # 6
    send(OPCUA_PORT, opn_res)  # 7
    body = _read_request(7, 40)
    send(50212, _msg(b"C", 2, 3, body[:200]))  # 8  intermediate chunk
    send(50212, _msg(b"C", 3, 3, body[200:400]))  # 9  intermediate chunk
    send(50212, _msg(b"F", 4, 3, body[400:]))  # 10 final chunk: ReadRequest handle 7
    body = _read_response(7, 40)
    final = _msg(b"F", 3, 3, body[150:])
    send(OPCUA_PORT, _msg(b"C", 2, 3, body[:150]) + final[:20])  # 11 chunk + final's start
    send(OPCUA_PORT, final[20:])  # 12 the final chunk completes: ReadResponse handle 7
    send(50212, _msg(b"F", 5, 4, _read_request(8, 1)) + _msg(b"F", 6, 5, _read_request(9, 1)))  # 13
    send(
        OPCUA_PORT,
        _msg(b"F", 4, 4, _read_response(8, 1)) + _msg(b"F", 5, 5, _read_response(9, 1, 0x80340000)),
    )  # 14 two responses, the second BadNodeIdUnknown
    send(50212, _msg(b"C", 7, 6, _read_request(10, 40)[:200]))  # 15 intermediate chunk
    send(50212, _msg(b"A", 8, 6, struct.pack("<I", 0x80000000) + _ua_string(b"aborted")))  # 16
    return _pcap(frames)


#: tshark's view of ``chunked_capture``: frame → (chunk types, fragment frames of the final
#: chunk) of every OPC UA tree in it.
CHUNKED_TSHARK_VIEW: dict[int, list[tuple[str, tuple[int, ...]]]] = {
    4: [("F", ())],
    5: [("F", ())],
    6: [("F", ())],
    7: [("F", ())],
    8: [("C", ())],
    9: [("C", ())],
    10: [("F", (8, 9, 10))],
    11: [("C", ())],
    12: [("F", (11, 12))],
    13: [("F", ()), ("F", ())],
    14: [("F", ()), ("F", ())],
    15: [("C", ())],
    16: [("A", ())],
}


def test_chunked_messages_attributed_like_tshark(tmp_path: Path, tshark: str) -> None:
    """tshark's view of chunked messages (see module doc) is as pinned, and ours reports the
    same messages at the same frames: none where only intermediate chunks arrive, the
    reassembled service at the frame completing the final chunk, the abort at its frame."""
    path = tmp_path / "opcua_chunks.pcap"
    path.write_bytes(chunked_capture())
    ws = run_tshark(tshark, path)
    view = {f: [(c.chunk or "?", c.fragments) for c in chunks] for f, chunks in ws.chunks.items()}
    assert view == CHUNKED_TSHARK_VIEW
    reassembled = {f: [ws_key(m) for m in ms] for f, ms in ws.messages.items() if f in (10, 12)}
    assert reassembled == {
        10: [("request", "MSG", 631, 7, None)],
        12: [("response", "MSG", 634, 7, 0)],
    }
    assert [ws_key(m) for m in ws.messages[16]] == [("request", "MSG", None, None, None)]
    ours = our_messages(path)
    diff = frame_diff(ws, ours, skip=set())
    assert not diff, render_frame_diff(path, diff, _totals(ws, ours))


# --- 3. ICSNPP expected logs ---------------------------------------------------------------------

#: (client, server, direction, message type, service id, request handle)
MKey = tuple[str, str, str | None, str | None, int | None, int | None]
#: (client, server, status code) of a response header
SKey = tuple[str, str, int]
#: (client, server, direction, service id) of a per-service log row
VKey = tuple[str, str, str | None, int | None]

#: Service ids the per-service logs count (SERVICE_LOGS and the browse log).
LOGGED_SERVICES = frozenset(
    {sid for pair in SERVICE_LOGS.values() for sid in pair if sid is not None}
    | set(BROWSE_SERVICE_TYPES.values())
)


class _Message:
    """What the ICSNPP projection needs of a tshark or ours message."""

    def __init__(self, m: WsChunk | OurMsg) -> None:
        self.frame = m.frame
        self.direction = m.direction
        self.client, self.server = (m.dst, m.src) if m.direction == "response" else (m.src, m.dst)
        single = m.message_type in SINGLE_TYPES
        self.message_type = m.message_type
        self.service_id = None if single else m.service_id
        self.request_handle = None if single else m.request_handle
        self.service_result = m.service_result


def project(messages: Iterable[WsChunk | OurMsg]) -> dict[str, Counter[Any]]:
    """tshark's or ours' messages on the three ICSNPP views: ``messages`` (MKey), ``status``
    (SKey: responses carrying a service result), ``services`` (VKey: services a per-service log
    counts; close_session logs requests only)."""
    out: dict[str, Counter[Any]] = {
        "messages": Counter(),
        "status": Counter(),
        "services": Counter(),
    }
    for raw in messages:
        m = _Message(raw)
        out["messages"][
            (m.client, m.server, m.direction, m.message_type, m.service_id, m.request_handle)
        ] += 1
        if m.direction == "response" and m.service_result is not None:
            out["status"][(m.client, m.server, m.service_result)] += 1
        if m.service_id in LOGGED_SERVICES:
            out["services"][(m.client, m.server, m.direction, m.service_id)] += 1
    return out


def icsnpp_counts(ref: IcsnppReference, root: Path) -> dict[str, Counter[Any]]:
    """ICSNPP's baseline on the same three views. An absent per-service log counts as one with
    no rows (Zeek creates a log file at its first write)."""
    out: dict[str, Counter[Any]] = {}
    out["messages"] = Counter(
        (m.orig, m.resp, m.direction, m.message_type, m.service_id, m.request_handle)
        for m in read_messages(root / ref.messages_log)
    )
    out["status"] = Counter(
        (r.orig, r.resp, r.status_code)
        for r in read_status_codes(root / ref.status_log)
        if r.source_str == "ResponseHeader"
    )
    out["services"] = Counter(
        (r.orig, r.resp, r.direction, r.service_id)
        for log in ref.service_logs(root)
        for r in read_service_log(root / log)
    )
    return out


@dataclass(frozen=True)
class IcsnppStop:
    """Where ICSNPP stops parsing a connection (see ``icsnpp_logs``): every message tshark
    shows in it after ``last_frame`` is missing from ICSNPP, on every view, and nothing else
    differs; ``missing`` gives how many, per view."""

    client: str
    server: str
    last_frame: int  # the last frame of the connection whose message ICSNPP logs
    missing: dict[str, int]


#: In both data-gap traces ICSNPP stops after frame 10 (the CreateSessionRequest, request id 2,
#: handle 1000001) of 192.168.11.33:60952 → 192.168.11.34:4840, whose response tshark never
#: completes either: tshark has 166 more messages there — 82 responses with a service result
#: (all Good) and, in the per-service logs' services, 31 Read pairs and the ActivateSession,
#: CreateSubscription and CreateMonitoredItems pairs (68).
_GAP_STOP = IcsnppStop(
    "192.168.11.33:60952",
    "192.168.11.34:4840",
    10,
    {"messages": 166, "status": 82, "services": 68},
)
ICSNPP_STOPS: dict[str, IcsnppStop] = {
    "icsnpp/icsnpp-opcua-binary/tests/traces/opcua_with-gap.pcap": _GAP_STOP,
    "icsnpp/icsnpp-opcua-binary/tests/traces/opcua_with-gap_with-handshake.pcap": _GAP_STOP,
}

ICSNPP_CAPTURES = sorted(ICSNPP_REFERENCES)

Disagreement = dict[tuple[str, Any], tuple[int, int]]


def expected_disagreement(rel: str, ws: WsCapture) -> Disagreement:
    """The pinned ICSNPP / tshark disagreement of ``rel``: (view, key) → (ICSNPP, tshark)."""
    if rel not in ICSNPP_STOPS:
        return {}
    stop = ICSNPP_STOPS[rel]
    theirs = project(ws.iter_messages())
    later = project(
        m
        for m in ws.iter_messages()
        if m.frame > stop.last_frame
        and (_Message(m).client, _Message(m).server) == (stop.client, stop.server)
    )
    return {
        (view, k): (theirs[view][k] - n, theirs[view][k])
        for view, counts in later.items()
        for k, n in counts.items()
    }


def _icsnpp_case(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> tuple[Path, IcsnppReference, WsCapture, dict[str, Counter[Any]], dict[str, Counter[Any]]]:
    root: Path = request.getfixturevalue("shared_dir")
    ref = ICSNPP_REFERENCES[rel]
    path = root / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    ws = cached_tshark(tshark, path, ref.decode_as)
    return path, ref, ws, icsnpp_counts(ref, root), project(ws.iter_messages())


def _show(key: Any) -> str:
    return " ".join("-" if v is None else str(v) for v in key)


@pytest.mark.parametrize("rel", ICSNPP_CAPTURES)
def test_icsnpp_and_tshark_disagree_only_where_documented(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """ICSNPP's logs and tshark agree on every view, except exactly as pinned in
    ``ICSNPP_STOPS``."""
    path, _ref, ws, icsnpp, theirs = _icsnpp_case(rel, request, tshark)
    found = {
        (view, k): (icsnpp[view][k], theirs[view][k])
        for view in icsnpp
        for k in set(icsnpp[view]) | set(theirs[view])
        if icsnpp[view][k] != theirs[view][k]
    }
    expected = expected_disagreement(rel, ws)
    per_view = Counter[str]()
    for (view, _k), (a, b) in expected.items():
        per_view[view] += b - a
    stop = ICSNPP_STOPS.get(rel)
    assert dict(per_view) == (stop.missing if stop else {}), f"{path}: {dict(per_view)}"
    unexplained = {k: v for k, v in found.items() if expected.get(k) != v}
    missing = {k: v for k, v in expected.items() if found.get(k) != v}
    assert not unexplained and not missing, (
        f"{path}: ICSNPP vs tshark (ICSNPP count, tshark count)\n  not pinned:\n"
        + "\n".join(
            f"    {view}: {_show(k)}: {v}"
            for (view, k), v in sorted(unexplained.items(), key=repr)[:SHOW]
        )
        + "\n  pinned but not found:\n"
        + "\n".join(
            f"    {view}: {_show(k)}: {v}"
            for (view, k), v in sorted(missing.items(), key=repr)[:SHOW]
        )
    )


@pytest.mark.parametrize("rel", ICSNPP_CAPTURES)
def test_icsnpp_logs_equal_ours(rel: str, request: pytest.FixtureRequest, tshark: str) -> None:
    """Per view and key, ICSNPP's count equals ours. Normalisations (all explicit):

    * messages — (client, server, direction, message type, service id, request handle):
      ICSNPP's pair rows are split into their request (``req_*``) and response (``res_*``)
      sides; HEL is a request, ACK / ERR responses, with no service and no handle on every side.
      client/server: ICSNPP's connection originator/responder; ours: request src→dst,
      response dst→src.
    * status — (client, server, status code): ICSNPP's status_code_detail rows whose
      ``source_str`` is ``ResponseHeader`` (one per response, Good included) against ours'
      ``service_result`` of every response that has one; a status row cannot be tied to its
      message (the baseline strips the link column), hence per connection.
    * services — (client, server, direction, service id): the rows of the per-service logs
      counted one per message (``icsnpp_logs.SERVICE_LOGS`` and the browse log by its
      ``browse_service_type``), against ours' messages of those services; CloseSession
      responses are not logged by ICSNPP and not counted on either side.
    * Where ICSNPP and tshark disagree (``ICSNPP_STOPS``) ours must equal one of them.
    * Messages ours decodes in retransmitted segments with new bytes (see the module doc) are
      missing from ICSNPP too: ours' count may exceed ICSNPP's by exactly those messages
      (``opcua_with-gap*.pcap``: the CreateSessionResponse at frame 30).
    """
    path, ref, ws, icsnpp, _theirs = _icsnpp_case(rel, request, tshark)
    disputed = expected_disagreement(rel, ws)
    ours = our_messages(path)
    mine = project(ours)
    only_ours_frames = retransmitted_new_data(ws)
    mine_new = project(m for m in ours if m.frame in only_ours_frames)
    problems = []
    for view, rows in icsnpp.items():
        for key in sorted(set(rows) | set(mine[view]), key=repr):
            got, new = mine[view][key], mine_new[view][key]
            want = disputed.get((view, key), (rows[key],))
            if got in want or got - new in want:
                continue
            refs = f"ICSNPP {want[0]}" + (f", tshark {want[1]}" if len(want) > 1 else "")
            problems.append(f"  {view}: {_show(key)}: {refs}, ours {got}")
    assert not problems, (
        f"{path} vs {ref.baseline}: {len(problems)} key(s) differ; first {SHOW}:\n"
        + "\n".join(problems[:SHOW])
    )


@pytest.mark.parametrize("rel", ICSNPP_CAPTURES)
def test_icsnpp_service_names_equal_ours(
    rel: str, request: pytest.FixtureRequest, tshark: str
) -> None:
    """ICSNPP's service names (``req_identifier_str`` / ``res_identifier_str``) are ours'
    ``service`` for the same service id."""
    path, ref, _ws, _icsnpp, _theirs = _icsnpp_case(rel, request, tshark)
    root: Path = request.getfixturevalue("shared_dir")
    theirs = {
        (m.service_id, m.service_name)
        for m in read_messages(root / ref.messages_log)
        if m.service_id is not None
    }
    mine = {(m.service_id, m.service) for m in our_messages(path) if m.service_id is not None}
    ids = {sid for sid, _ in theirs} & {sid for sid, _ in mine}
    differ = sorted(
        (sid, sorted(n for s, n in theirs if s == sid), sorted(str(n) for s, n in mine if s == sid))
        for sid in ids
        if {n for s, n in theirs if s == sid} != {n for s, n in mine if s == sid}
    )
    assert ids, f"{path}: no service id in common with {ref.baseline}"
    assert not differ, f"{path}: service names (id, ICSNPP, ours): {differ}"
