"""What Wireshark (tshark 4.0) says about each Modbus/TCP PDU of a capture.

tshark runs once per capture with ``-T json -J "frame ip ipv6 tcp mbtcp modbus data
_ws.malformed"`` and the display filter ``mbtcp || modbus || (tcp.len > 0 && tcp.port in
{502, ...})``: every frame with a Modbus tree, plus every frame with TCP payload on a Modbus
port, whose TCP facts (``Segment``) and undissected bytes (``data``) let the tests tell why tshark
shows no Modbus there (refused MBAP header, retransmission, unfinished reassembly).
Why JSON and not ``-T fields``: a TCP segment may carry several ADUs (``mb2.pcap`` has up to six)
and ``-T fields -E occurrence=a`` flattens each field over the whole frame, so optional fields
(``reference_num``, ``exception_code``, register lists) cannot be attributed to the ADU they came
from. tshark's JSON writes one ``"mbtcp"`` and one ``"modbus"`` object per ADU, in order, as
*duplicate keys* of the frame's ``layers`` object; the reader keeps every pair in order
(``object_pairs_hook``), so an ``mbtcp`` key opens a new PDU and the following ``modbus`` key
(and a following ``_ws.malformed``) belongs to it. Field values inside one PDU's tree are
collected in tree order, so the n-th ``modbus.regnum16`` pairs with the n-th
``modbus.regval_uint16``.

The output is streamed: tshark pretty-prints each packet as a top-level array element that opens
with a line ``"  {"`` and closes with ``"  }"`` / ``"  },"``, so each packet is parsed on its own
(the JSON of the largest shared capture is ~70 MB).

Direction: Wireshark classifies by TCP port only (``classify_mbtcp_packet``): source port is a
Modbus port and destination port is not → response; the reverse → query (request); otherwise it
cannot classify (``mbtcp.cannot_classify`` expert) and dissects no PDU body. The Modbus port is a
single-valued preference (``mbtcp.tcp.port``, default 502); ``-d tcp.port==5020,mbtcp`` alone makes
tshark decode the port but leave every PDU unclassified, so a decode-as port is also set as that
preference (and 502 kept decoded through ``-d``; its PDUs are then unclassified). Only one
decode-as port can be classified; a second one raises ValueError.

Register values are read with the preference ``modbus.mbus_register_format`` forced to UINT16 and
tshark runs with an empty configuration directory, so a user's Wireshark profile cannot change
the output.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODBUS_PORT = 502

#: Protocol trees requested from tshark (``-J``: each with all its children).
_TREES = "frame ip ipv6 tcp mbtcp modbus data _ws.malformed"

_Pairs = list[tuple[str, Any]]


@dataclass(frozen=True)
class WsPdu:
    """One Modbus/TCP ADU as tshark dissected it.

    Integer fields are None when tshark's tree for this ADU does not hold them. ``function_code``
    is ``modbus.func_code``, whose bitmask (0x7F) already clears the exception bit.
    """

    frame: int
    index: int  # position of the ADU within its frame, 0-based
    ts: str  # frame.time_epoch as tshark prints it
    src: str  # "ip:port"
    dst: str
    direction: str | None  # "request", "response", or None when tshark cannot classify
    transaction_id: int | None
    protocol_id: int | None
    length: int | None
    unit_id: int | None
    function_code: int | None
    exception_code: int | None
    reference_num: int | None
    read_reference_num: int | None
    write_reference_num: int | None
    word_cnt: int | None
    bit_cnt: int | None
    read_word_cnt: int | None
    write_word_cnt: int | None
    byte_cnt: int | None
    request_frame: int | None  # modbus.request_frame (responses tshark matched to a request)
    mei: int | None
    diagnostic_code: int | None
    registers: tuple[tuple[int, int], ...]  # (modbus.regnum16, modbus.regval_uint16) in order
    bits: tuple[tuple[int, int], ...]  # (modbus.bitnum, modbus.bitval) in order
    malformed: bool  # a "_ws.malformed" tree followed this ADU's trees
    experts: tuple[str, ...]  # _ws.expert.message values inside this ADU's trees

    @property
    def is_exception(self) -> bool:
        return self.exception_code is not None


@dataclass(frozen=True)
class Segment:
    """TCP facts of a printed frame (one to/from a Modbus port carrying payload)."""

    stream: int  # tcp.stream
    src: str  # "ip:port" of the sender
    dst: str
    seq: int  # tcp.seq (relative)
    length: int  # tcp.len
    retransmission: bool  # tshark flags it a (fast / spurious) retransmission
    #: tshark holds (part of) this segment for a reassembly that never completes: the frame
    #: shows ``tcp.segment_data`` and no ``tcp.reassembled_in``
    unfinished: bool = False


_RETRANSMISSION_FLAGS = (
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
)


@dataclass
class WsCapture:
    """tshark's view of one capture."""

    path: Path
    decode_as: tuple[int, ...]
    pdus: dict[int, list[WsPdu]] = field(default_factory=dict)  # frame number → ADUs in order
    #: Frames holding a Modbus/TCP tree and a "_ws.malformed" tree (whichever ADU it followed).
    malformed_frames: set[int] = field(default_factory=set)
    #: TCP payload of frames to/from a Modbus port that tshark handed to no Modbus dissector
    #: (its "data" layer): the Modbus/TCP dissector refused the segment (see
    #: ``tshark_rejects_mbap``).
    undissected: dict[int, bytes] = field(default_factory=dict)
    #: TCP facts of every printed frame with payload on a Modbus port, by frame number.
    segments: dict[int, Segment] = field(default_factory=dict)
    frames: int = 0  # frames tshark printed (holding mbtcp/modbus, or TCP payload on the port)

    def iter_pdus(self) -> Iterator[WsPdu]:
        for frame in sorted(self.pdus):
            yield from self.pdus[frame]

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.pdus.values())


def tshark_command(tshark: str, path: Path, decode_as: Sequence[int] = ()) -> list[str]:
    """The tshark command line for ``path`` (``decode_as``: extra TCP ports that are Modbus)."""
    ports = [p for p in dict.fromkeys(decode_as) if p != MODBUS_PORT]
    if len(ports) > 1:
        raise ValueError(
            f"tshark 4.0 classifies Modbus request/response on one port only, got {ports}"
        )
    cmd = [tshark, "-n", "-r", str(path)]
    cmd += ["-o", "modbus.mbus_register_format:UINT16"]
    if ports:
        cmd += ["-o", f"mbtcp.tcp.port:{ports[0]}"]
        for port in (ports[0], MODBUS_PORT):
            cmd += ["-d", f"tcp.port=={port},mbtcp"]
    port_set = ", ".join(str(p) for p in sorted({MODBUS_PORT, *ports}))
    shown = f"mbtcp || modbus || (tcp.len > 0 && tcp.port in {{{port_set}}})"
    cmd += ["-Y", shown, "-T", "json", "-J", _TREES]
    return cmd


def _iter_packets(lines: Iterator[str]) -> Iterator[_Pairs]:
    """Split tshark's pretty-printed JSON array into packets, each parsed keeping duplicates."""
    chunk: list[str] | None = None
    for line in lines:
        if chunk is None:
            if line.rstrip("\r\n") == "  {":
                chunk = [line]
            continue
        chunk.append(line)
        stripped = line.rstrip("\r\n")
        if stripped in ("  }", "  },"):
            text = "".join(chunk).rstrip().rstrip(",")
            chunk = None
            yield json.loads(text, object_pairs_hook=lambda pairs: pairs)
    if chunk is not None:
        raise ValueError("tshark JSON ended inside a packet")


def _get(pairs: _Pairs, key: str) -> Any:
    for k, v in pairs:
        if k == key:
            return v
    return None


def _walk(pairs: _Pairs, out: dict[str, list[str]]) -> None:
    """Collect every leaf field of a tree (in tree order) into ``out``."""
    for key, value in pairs:
        if isinstance(value, list):
            if value and all(isinstance(v, tuple) for v in value):
                _walk(value, out)
            else:  # a JSON array (tshark prints one for a few multi-valued fields)
                for v in value:
                    if isinstance(v, list):
                        _walk(v, out)
                    else:
                        out.setdefault(key, []).append(str(v))
        elif isinstance(value, str):
            out.setdefault(key, []).append(value)


def _int(fields: dict[str, list[str]], name: str) -> int | None:
    values = fields.get(name)
    if not values:
        return None
    text = values[0]
    return int(text, 16) if text.startswith("0x") else int(text)


def _ints(fields: dict[str, list[str]], name: str) -> list[int]:
    return [int(v, 16) if v.startswith("0x") else int(v) for v in fields.get(name, [])]


@dataclass
class _Building:
    fields: dict[str, list[str]] = field(default_factory=dict)
    has_mbtcp: bool = False
    malformed: bool = False


def _endpoint(ip: str | None, port: str | None) -> str:
    if ip and ":" in ip:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


def _direction(
    srcport: int | None, dstport: int | None, port: int, unclassified: bool
) -> str | None:
    if unclassified or srcport is None or dstport is None:
        return None
    if srcport == port and dstport != port:
        return "response"
    if dstport == port and srcport != port:
        return "request"
    return None


def parse_packets(packets: Iterator[_Pairs], capture: WsCapture) -> None:
    """Fill ``capture`` from tshark's JSON packets."""
    class_port = next((p for p in capture.decode_as if p != MODBUS_PORT), MODBUS_PORT)
    for packet in packets:
        layers = _get(_get(packet, "_source") or [], "layers") or []
        frame_fields: dict[str, list[str]] = {}
        ip_src = ip_dst = None
        srcport = dstport = None
        building: list[_Building] = []
        frame_malformed = False
        data_hex: str | None = None
        tcp_fields: dict[str, list[str]] = {}
        for key, tree in layers:
            if key == "frame" and isinstance(tree, list):
                _walk(tree, frame_fields)
            elif key in ("ip", "ipv6") and isinstance(tree, list):
                # the innermost IP header before TCP wins (tunnels)
                ip_src = _get(tree, f"{key}.src")
                ip_dst = _get(tree, f"{key}.dst")
            elif key == "tcp" and isinstance(tree, list):
                srcport = _get(tree, "tcp.srcport")
                tcp_fields = {}
                _walk(tree, tcp_fields)
                dstport = _get(tree, "tcp.dstport")
            elif key == "mbtcp":
                building.append(_Building(has_mbtcp=True))
                _walk(tree, building[-1].fields)
            elif key == "modbus":
                if not building or "modbus.func_code" in building[-1].fields:
                    building.append(_Building())
                _walk(tree, building[-1].fields)
            elif key == "data" and isinstance(tree, list) and not building:
                data_hex = _get(tree, "data.data")
            elif key == "_ws.malformed":
                frame_malformed = True
                if building:
                    building[-1].malformed = True
        number = int(frame_fields["frame.number"][0])
        ts = frame_fields.get("frame.time_epoch", [""])[0]
        capture.frames += 1
        if frame_malformed and building:
            capture.malformed_frames.add(number)
        if data_hex is not None and not building:
            capture.undissected[number] = bytes.fromhex(data_hex.replace(":", ""))
        if tcp_fields.get("tcp.len", ["0"])[0] != "0" and "tcp.stream" in tcp_fields:
            capture.segments[number] = Segment(
                stream=int(tcp_fields["tcp.stream"][0]),
                src=_endpoint(ip_src, srcport),
                dst=_endpoint(ip_dst, dstport),
                seq=int(tcp_fields.get("tcp.seq", ["0"])[0]),
                length=int(tcp_fields["tcp.len"][0]),
                retransmission=any(flag in tcp_fields for flag in _RETRANSMISSION_FLAGS),
                unfinished="tcp.segment_data" in tcp_fields
                and "tcp.reassembled_in" not in tcp_fields,
            )
        sport = int(srcport) if srcport is not None else None
        dport = int(dstport) if dstport is not None else None
        pdus: list[WsPdu] = []
        for index, b in enumerate(building):
            f = b.fields
            regnums, regvals = _ints(f, "modbus.regnum16"), _ints(f, "modbus.regval_uint16")
            bitnums, bitvals = _ints(f, "modbus.bitnum"), _ints(f, "modbus.bitval")
            pdus.append(
                WsPdu(
                    frame=number,
                    index=index,
                    ts=ts,
                    src=_endpoint(ip_src, srcport),
                    dst=_endpoint(ip_dst, dstport),
                    direction=_direction(sport, dport, class_port, "mbtcp.cannot_classify" in f),
                    transaction_id=_int(f, "mbtcp.trans_id"),
                    protocol_id=_int(f, "mbtcp.prot_id"),
                    length=_int(f, "mbtcp.len"),
                    unit_id=_int(f, "mbtcp.unit_id"),
                    function_code=_int(f, "modbus.func_code"),
                    exception_code=_int(f, "modbus.exception_code"),
                    reference_num=_int(f, "modbus.reference_num"),
                    read_reference_num=_int(f, "modbus.read_reference_num"),
                    write_reference_num=_int(f, "modbus.write_reference_num"),
                    word_cnt=_int(f, "modbus.word_cnt"),
                    bit_cnt=_int(f, "modbus.bit_cnt"),
                    read_word_cnt=_int(f, "modbus.read_word_cnt"),
                    write_word_cnt=_int(f, "modbus.write_word_cnt"),
                    byte_cnt=_int(f, "modbus.byte_cnt"),
                    request_frame=_int(f, "modbus.request_frame"),
                    mei=_int(f, "modbus.mei"),
                    diagnostic_code=_int(f, "modbus.diagnostic_code"),
                    registers=tuple(zip(regnums, regvals, strict=False)),
                    bits=tuple(zip(bitnums, bitvals, strict=False)),
                    malformed=b.malformed,
                    experts=tuple(f.get("_ws.expert.message", [])),
                )
            )
        if pdus:
            capture.pdus.setdefault(number, []).extend(pdus)


def tshark_rejects_mbap(payload: bytes) -> bool:
    """Would tshark 4.0's Modbus/TCP dissector refuse a segment starting with ``payload``?

    ``dissect_mbtcp`` returns 0 (not Modbus: the bytes stay "data") unless the segment holds at
    least 8 bytes, the protocol id is 0 and the MBAP length is at least 2. A refused segment is
    not dissected at all, so ADUs after a bad one in the same segment are not seen either.
    """
    return len(payload) < 8 or payload[2:4] != b"\0\0" or int.from_bytes(payload[4:6]) < 2


def retransmitted_new_data(capture: WsCapture) -> set[int]:
    """Frames tshark flags as a (fast / spurious) retransmission and dissects no Modbus in,
    although the segment carries sequence numbers no earlier captured segment of its direction
    covered: its bytes were never seen before, yet tshark 4.0 does not hand them to the Modbus
    dissector (``mb2.pcap`` frame 1131 overlaps a 12-byte query and adds 48 bytes, four
    queries; ``modbusBig.pcap`` frame 3150 re-sends a response whose first copy was not
    captured; in the fuzzed ``fuzz-72.pcap`` one far-off sequence number makes tshark call every
    later response of that direction a retransmission). The first segment of a direction
    counts as new."""
    covered: dict[tuple[int, str], list[tuple[int, int]]] = {}
    out = set()
    for frame in sorted(capture.segments):
        seg = capture.segments[frame]
        spans = covered.setdefault((seg.stream, seg.src), [])
        start, end = seg.seq, seg.seq + seg.length
        if seg.retransmission and frame not in capture.pdus and _adds_bytes(spans, start, end):
            out.add(frame)
        if end > start:
            spans.append((start, end))
    return out


def _adds_bytes(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    """Does [start, end) hold a byte none of ``spans`` covers?"""
    pos = start
    for a, b in sorted(spans):
        if a > pos:
            break
        pos = max(pos, b)
        if pos >= end:
            return False
    return pos < end


def stream_packets(cmd: list[str], consume: Callable[[Iterator[_Pairs]], None]) -> None:
    """Run a ``tshark -T json`` command with an empty configuration directory and hand its
    packets, one at a time, to ``consume``; a failing tshark raises with its stderr."""
    with (
        tempfile.TemporaryDirectory(prefix="ws-config-") as confdir,
        tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as errfile,
    ):
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": confdir}
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=errfile,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
        ) as proc:
            assert proc.stdout is not None
            try:
                consume(_iter_packets(iter(proc.stdout)))
            except BaseException:
                proc.kill()
                raise
            rc = proc.wait()
        errfile.seek(0)
        stderr = errfile.read()
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({rc}): {stderr.strip()}")


def run_tshark(tshark: str, path: Path, decode_as: Sequence[int] = ()) -> WsCapture:
    """Run tshark once over ``path`` and return its Modbus PDUs per frame."""
    capture = WsCapture(path=Path(path), decode_as=tuple(decode_as))
    cmd = tshark_command(tshark, Path(path), decode_as)
    stream_packets(cmd, lambda packets: parse_packets(packets, capture))
    return capture


@functools.cache
def cached_tshark(tshark: str, path: Path, decode_as: tuple[int, ...] = ()) -> WsCapture:
    """``run_tshark``, memoised: the conformance tests ask for the same capture several times."""
    return run_tshark(tshark, path, decode_as)
