"""Hostile captures built from raw bytes (Ethernet / IPv4 / TCP packed with ``struct``, written
as classic pcap) and a runner that replays one in a child process and reads its peak RSS.

Packing by hand keeps a million-packet capture to seconds; checksums are left zero (the decoder
never validates them). Every scenario is a function of its size, so the CI tests and
``benchmarks/hostile.py`` build the same traffic at different scales.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.ua.ua_binary import struct_to_binary

SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04
_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_RECORD = struct.Struct("<IIII")
_CLIENT_MAC = bytes.fromhex("02000000000a")
_SERVER_MAC = bytes.fromhex("020000000005")
#: the four-byte NodeId of ReadResponse_Encoding_DefaultBinary (ns 0, i=634)
_READ_RESPONSE = b"\x01\x00" + struct.pack("<H", 634)
T0 = 1_700_000_000 * 10**9  # first packet time, ns


def ip4(n: int) -> bytes:
    """An address in 10.0.0.0/8 numbered ``n`` (host part only)."""
    return struct.pack("!I", 0x0A000000 | (n & 0xFFFFFF))


def tcp_frame(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    data: bytes = b"",
) -> bytes:
    """One Ethernet II / IPv4 / TCP frame (no options, zero checksums)."""
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = _IP.pack(0x45, 0, 20 + len(tcp) + len(data), 0, 0x4000, 64, 6, 0, src, dst)
    return _ETH.pack(_SERVER_MAC, _CLIENT_MAC, 0x0800) + ip + tcp + data


def write_pcap(path: Path, records: Iterable[tuple[int, bytes]]) -> int:
    """Write ``(time ns, frame)`` records as a microsecond classic pcap; return the count."""
    n = 0
    with path.open("wb") as f:
        f.write(_PCAP_HEADER)
        out: list[bytes] = []
        for ts, frame in records:
            sec, ns = divmod(ts, 10**9)
            out.append(_RECORD.pack(sec, ns // 1000, len(frame), len(frame)))
            out.append(frame)
            n += 1
            if len(out) >= 20_000:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
    return n


def record_offsets(data: bytes) -> list[int]:
    """Offsets of the records of a little-endian classic pcap."""
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


class Conversation:
    """One TCP connection's packets with consistent sequence numbers."""

    def __init__(self, client: bytes, cport: int, server: bytes, sport: int) -> None:
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.cseq, self.sseq = 1000, 5000

    def handshake(self) -> list[bytes]:
        """SYN, SYN-ACK, ACK."""
        c, s = self.client, self.server
        out = [
            tcp_frame(c, s, self.cport, self.sport, self.cseq, 0, SYN),
            tcp_frame(s, c, self.sport, self.cport, self.sseq, self.cseq + 1, SYN | ACK),
        ]
        self.cseq += 1
        self.sseq += 1
        out.append(tcp_frame(c, s, self.cport, self.sport, self.cseq, self.sseq, ACK))
        return out

    def client_sends(self, data: bytes, seq: int | None = None) -> bytes:
        """A client segment; ``seq`` resends at an earlier sequence number."""
        at = self.cseq if seq is None else seq
        frame = tcp_frame(
            self.client, self.server, self.cport, self.sport, at, self.sseq, PSH | ACK, data
        )
        if seq is None:
            self.cseq += len(data)
        return frame

    def server_stream(self, data: bytes, mss: int = 1400) -> list[bytes]:
        """Server bytes in segments of at most ``mss`` bytes."""
        return [self.server_sends(data[i : i + mss]) for i in range(0, len(data), mss)]

    def server_sends(self, data: bytes) -> bytes:
        """A server segment."""
        frame = tcp_frame(
            self.server, self.client, self.sport, self.cport, self.sseq, self.cseq, PSH | ACK, data
        )
        self.sseq += len(data)
        return frame


def timed(
    frames: Iterable[bytes], step_ns: int = 1000, start: int = T0
) -> Iterator[tuple[int, bytes]]:
    """Give frames increasing times ``step_ns`` apart."""
    for i, frame in enumerate(frames):
        yield start + i * step_ns, frame


# -- scenarios ---------------------------------------------------------------------------------
def syn_flood(path: Path, sources: int) -> int:
    """One SYN to port 502 from each of ``sources`` addresses, 10 µs apart."""
    server = ip4(5)
    frames = (
        tcp_frame(ip4(0x100000 + i), server, 1024 + i % 60000, 502, i * 7919, 0, SYN)
        for i in range(sources)
    )
    return write_pcap(path, timed(frames, 10_000))


def modbus_read(tid: int, unit: int = 1, address: int = 0) -> bytes:
    """A Read Holding Registers (10) request ADU."""
    return struct.pack("!HHHBBHH", tid, 0, 6, unit, 3, address, 10)


def open_transactions(path: Path, requests: int, flows: int, step_ns: int = 1000) -> int:
    """``requests`` Modbus requests over ``flows`` connections, none ever answered, every
    transaction id distinct within its flow (ids wrap at 65536)."""
    convs = [Conversation(ip4(0x200000 + i), 40000 + i % 20000, ip4(5), 502) for i in range(flows)]

    def frames() -> Iterator[bytes]:
        for conv in convs:
            yield from conv.handshake()
        for i in range(requests):
            yield convs[i % flows].client_sends(modbus_read((i // flows) & 0xFFFF))

    return write_pcap(path, timed(frames(), step_ns))


def conflicting_retransmissions(path: Path, requests: int = 30) -> int:
    """A Modbus connection whose requests (all for address 0) are sent along with copies carrying
    other bytes at the same sequence numbers, then answered. Request ``tid`` by ``tid % 3``:
    0 resent whole as a request for address 999; 1 sent as two segments overlapping by 3 bytes,
    the overlap differing; 2 sent out of order, its tail first, then a conflicting copy of the
    tail (address 999), then its head."""
    conv = Conversation(ip4(10), 40000, ip4(5), 502)
    out = conv.handshake()
    for tid in range(1, requests + 1):
        seq = conv.cseq
        req, other = modbus_read(tid, address=0), modbus_read(tid, address=999)
        if tid % 3 == 0:
            out.append(conv.client_sends(req))
            out.append(conv.client_sends(other, seq=seq))
        elif tid % 3 == 1:
            out.append(conv.client_sends(req[:6]))
            out.append(conv.client_sends(b"\xee\xee\xee" + req[6:], seq=seq + 3))
        else:
            out.append(conv.client_sends(req[6:], seq=seq + 6))
            out.append(conv.client_sends(other[6:], seq=seq + 6))
            out.append(conv.client_sends(req[:6], seq=seq))
        conv.cseq = seq + len(req)
        values = struct.pack("!BB", 3, 20) + bytes(20)
        out.append(conv.server_sends(struct.pack("!HHHB", tid, 0, 1 + len(values), 1) + values))
    return write_pcap(path, timed(out, 1_000_000))


def _ua_chunk(mtype: bytes, body: bytes, size: int | None = None) -> bytes:
    return mtype + b"F" + struct.pack("<I", 8 + len(body) if size is None else size) + body


def _ua_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def huge_opcua_claim(path: Path, megabytes: int) -> int:
    """A client HEL then a MSG header claiming 0xFFFFFFF0 bytes, followed by ``megabytes`` MB of
    filler in 1400-byte segments (the claimed message never completes)."""
    conv = Conversation(ip4(20), 40001, ip4(6), 4840)
    hel = struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + _ua_string("opc.tcp://plc:4840")
    out = [*conv.handshake(), conv.client_sends(_ua_chunk(b"HEL", hel))]
    ack = struct.pack("<IIIII", 0, 65536, 65536, 1 << 24, 1)
    out.append(conv.server_sends(_ua_chunk(b"ACK", ack)))
    out.append(conv.client_sends(_ua_chunk(b"MSG", struct.pack("<IIII", 1, 1, 1, 1), 0xFFFFFFF0)))
    filler = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes
    frames = iter(out)
    segments = megabytes * 1_000_000 // len(filler)

    def gen() -> Iterator[bytes]:
        yield from frames
        for _ in range(segments):
            yield conv.client_sends(filler)

    return write_pcap(path, timed(gen(), 10_000))


def _read_response_body(value: bytes) -> bytes:
    """A ReadResponse carrying one DataValue whose Variant encoding is ``value``."""
    head = _READ_RESPONSE
    header = struct_to_binary(ua.ResponseHeader())
    # Results: one DataValue with a value (mask 0x01); DiagnosticInfos: none
    return head + header + struct.pack("<i", 1) + b"\x01" + value + struct.pack("<i", 0)


def nested_variant(depth: int) -> bytes:
    """A Variant that is an array of one Variant, ``depth`` levels deep, ending in an Int32."""
    return b"".join(b"\x98" + struct.pack("<i", 1) for _ in range(depth)) + b"\x06\x07\x00\x00\x00"


def nested_extension_objects(depth: int) -> bytes:
    """A Variant holding an ExtensionObject whose binary body is again a Variant, ``depth`` deep
    (an unknown type id: a decoder that follows it must still stop)."""
    out = b"\x06\x07\x00\x00\x00"
    for _ in range(depth):
        body = b"\x16" + b"\x01\x00\x41\x01" + b"\x01" + struct.pack("<i", len(out)) + out
        out = body
    return out


def nested_diagnostic_infos(depth: int) -> bytes:
    """A DiagnosticInfo whose InnerDiagnosticInfo (mask 0x40) chain is ``depth`` long."""
    return b"".join(b"\x40" for _ in range(depth)) + b"\x00"


def deep_opcua(path: Path, depth: int) -> int:
    """A plaintext OPC UA session (HEL/ACK, OPN None, a Read) whose responses nest ``depth``
    deep: Variant arrays, ExtensionObjects in Variants, and an InnerDiagnosticInfo chain."""
    conv = Conversation(ip4(30), 40002, ip4(7), 4840)
    out = conv.handshake()
    hel = struct.pack("<IIIII", 0, 1 << 24, 1 << 24, 0, 0) + _ua_string("opc.tcp://plc:4840")
    out.append(conv.client_sends(_ua_chunk(b"HEL", hel)))
    out.append(
        conv.server_sends(_ua_chunk(b"ACK", struct.pack("<IIIII", 0, 1 << 24, 1 << 24, 0, 0)))
    )
    policy = _ua_string("http://opcfoundation.org/UA/SecurityPolicy#None")
    asym = policy + struct.pack("<ii", -1, -1)
    opn_req = struct_to_binary(ua.OpenSecureChannelRequest())  # TypeId included
    out.append(
        conv.client_sends(
            _ua_chunk(b"OPN", struct.pack("<I", 0) + asym + struct.pack("<II", 1, 1) + opn_req)
        )
    )
    opn_resp = ua.OpenSecureChannelResponse()
    opn_resp.Parameters.SecurityToken.ChannelId = 9
    opn_resp.Parameters.SecurityToken.TokenId = 1
    opn_body = struct_to_binary(opn_resp)
    out.append(
        conv.server_sends(
            _ua_chunk(b"OPN", struct.pack("<I", 9) + asym + struct.pack("<II", 1, 1) + opn_body)
        )
    )
    read = ua.ReadRequest()
    rv = ua.ReadValueId()
    rv.NodeId = ua.NodeId(2258, 0)  # type: ignore[arg-type]  # Server_ServerStatus_CurrentTime
    rv.AttributeId = 13  # Value
    read.Parameters.NodesToRead = [rv]
    read_body = struct_to_binary(read)
    values = [nested_variant(depth), nested_extension_objects(depth)]
    seq = 2
    for rid, value in enumerate(values, start=2):
        out.append(
            conv.client_sends(_ua_chunk(b"MSG", struct.pack("<IIII", 9, 1, seq, rid) + read_body))
        )
        out.extend(
            conv.server_stream(
                _ua_chunk(b"MSG", struct.pack("<IIII", 9, 1, seq, rid) + _read_response_body(value))
            )
        )
        seq += 1
    # a response whose DiagnosticInfos array holds one InnerDiagnosticInfo chain
    rid = 2 + len(values)
    out.append(
        conv.client_sends(_ua_chunk(b"MSG", struct.pack("<IIII", 9, 1, seq, rid) + read_body))
    )
    head = _READ_RESPONSE
    diag = (
        head
        + struct_to_binary(ua.ResponseHeader())
        + struct.pack("<i", 0)
        + struct.pack("<i", 1)
        + nested_diagnostic_infos(depth)
    )
    out.extend(conv.server_stream(_ua_chunk(b"MSG", struct.pack("<IIII", 9, 1, seq, rid) + diag)))
    return write_pcap(path, timed(out, 1_000_000))


def flip_bytes(data: bytes, flips: int, rng: random.Random) -> bytes:
    """``data`` (a classic pcap) with ``flips`` random bytes of packet data replaced; the file and
    record headers are left intact."""
    spans = []
    for off in record_offsets(data):
        length = struct.unpack_from("<I", data, off + 8)[0]
        if length:
            spans.append((off + 16, length))
    out = bytearray(data)
    for _ in range(flips):
        start, length = rng.choice(spans)
        out[start + rng.randrange(length)] ^= rng.randrange(1, 256)
    return bytes(out)


# -- running -----------------------------------------------------------------------------------
@dataclass
class Run:
    """A finished ``otsentry replay``: exit code, streams, peak RSS (MB), stats.json, events."""

    rc: int
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float
    out: Path

    @property
    def stats(self) -> dict[str, Any]:
        """The run's stats.json."""
        loaded: dict[str, Any] = json.loads((self.out / "stats.json").read_text())
        return loaded

    def events(self) -> Iterator[dict[str, Any]]:
        """The protocol records of events.ndjson."""
        with (self.out / "events.ndjson").open() as f:
            for line in f:
                yield json.loads(line)


def limits_config(directory: Path, **limits: float) -> Path:
    """A config file setting ``limits`` (and nothing else)."""
    path = directory / "otsentry.yaml"
    lines = ["limits:", *(f"  {k}: {v}" for k, v in limits.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


#: runs the command line in the child and, at exit, writes the child's peak RSS (kB) to the file
#: named by its first argument. VmHWM is the peak of this program's own memory map;
#: ``getrusage``'s ru_maxrss is not, as it keeps the peak of the forked parent before ``exec``
#: (the test worker's, not the replay's).
_CHILD = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)
def _peak():
    with open('/proc/self/status') as f:
        kb = next(line.split()[1] for line in f if line.startswith('VmHWM'))
    with open(peak_file, 'w') as f:
        f.write(kb)
atexit.register(_peak)
sys.argv[0] = 'otsentry'
runpy.run_module('otsentry', run_name='__main__')
"""


def replay(capture: Path, out: Path, *args: str | Path, config: Path | None = None) -> Run:
    """Run ``otsentry replay`` on ``capture`` in a child process; its own peak RSS is read from
    ``/proc/self/status`` as it exits."""
    peak_file = out.parent / f".{out.name}.peak"
    cmd = [sys.executable, "-c", _CHILD, str(peak_file), "replay", str(capture)]
    cmd += ["--out", str(out), "--quiet"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += [str(a) for a in args]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    peak_kb = int(peak_file.read_text())
    return Run(done.returncode, done.stdout, done.stderr, peak_kb / 1024, seconds, out)
