"""The per-flow OPC UA session: UA TCP framing, secure channel headers, chunk reassembly,
request/response pairing, security posture, resynchronisation."""

from __future__ import annotations

import re
from hashlib import sha1
from struct import Struct
from typing import TYPE_CHECKING, Any

from otsentry.dissect.support import SkippedBytes
from otsentry.model import Direction

from . import events
from .constants import (
    CHUNK_TYPES,
    HEADER_LEN,
    MAX_CHUNK,
    MAX_CHUNKS,
    MAX_MESSAGE,
    MESSAGE_TYPES,
    MIN_CHUNK,
    POLICY_PREFIX,
    SECURE_TYPES,
    SIGNATURE_LENGTHS,
)
from .services import SERVICE_NAMES, decode_body

if TYPE_CHECKING:
    from otsentry.dissect.base import FlowContext
    from otsentry.model import Conn

Buffer = bytes | bytearray
Record = dict[str, Any]
Pending = tuple[Record, tuple[str, ...], int, int]

HEADER = Struct("<3sBI")  # message type, chunk type, size
U32 = Struct("<I")
I32 = Struct("<i")
U32X2 = Struct("<II")
HELLO = Struct("<IIIII")  # version, receive buffer, send buffer, max message, max chunks

_INVALID_CHUNK = ("opcua.invalid_chunk_size",)
_UNKNOWN_TYPE = ("opcua.unknown_message_type",)
_TOO_LARGE = ("opcua.message_too_large",)
_SEQUENCE_GAP = ("opcua.sequence_gap",)
_UNSOLICITED = ("opcua.unsolicited_response",)
_FLOODED = ("opcua.flooded",)
_ABORTED = ("opcua.chunk_aborted",)
_TRUNCATED = ("opcua.truncated",)
_NON_OPCUA = ("opcua.non_opcua_payload",)
_MAX_STRING = 4096
_INTERMEDIATE, _ABORT, _FINAL = ord("C"), ord("A"), ord("F")  # chunk types
_TYPE_TEXT = {mtype: mtype.decode() for mtype in MESSAGE_TYPES}
_PDU_BATCH = 256


#: where a chunk header may start: a message type followed by a chunk type (a lookahead, so
#: candidates may overlap); resync tests only these offsets instead of every byte
_CANDIDATE = re.compile(
    b"(?=(?:" + b"|".join(sorted(MESSAGE_TYPES)) + b")[" + bytes(sorted(CHUNK_TYPES)) + b"])"
)


def _plausible(data: Buffer, pos: int) -> bool:
    """Could ``data[pos:]`` start a UA TCP chunk: a known type, a chunk type, a sane size?"""
    if len(data) - pos < HEADER_LEN:
        return False
    mtype, ctype, size = HEADER.unpack_from(data, pos)
    return mtype in MESSAGE_TYPES and ctype in CHUNK_TYPES and MIN_CHUNK <= size <= MAX_CHUNK


def _string(data: Buffer, pos: int, end: int) -> tuple[str | None, int]:
    """A UA String (Int32 length, -1 for null); returns (text, next offset)."""
    if pos + 4 > end:
        raise IndexError
    n = I32.unpack_from(data, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    if pos + n > end:
        raise IndexError
    return bytes(data[pos : pos + min(n, _MAX_STRING)]).decode("utf-8", "replace"), pos + n


def _bytestring(data: Buffer, pos: int, end: int) -> tuple[bytes | None, int]:
    if pos + 4 > end:
        raise IndexError
    n = I32.unpack_from(data, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    if pos + n > end:
        raise IndexError
    return bytes(data[pos : pos + n]), pos + n


class _Direction:
    """Per-direction state: chunks of messages being assembled, the last sequence number."""

    __slots__ = ("chunks", "last_sequence", "resync", "synced")

    def __init__(self) -> None:
        #: (message type, request id or channel) → [first record, body parts, bytes, count]
        self.chunks: dict[tuple[bytes, int], list[Any]] = {}
        self.last_sequence = -1
        self.resync = False
        self.synced = True  # False after a gap: the next sequence number may jump


class OpcUaSession:
    """Dissects both directions of one UA TCP connection."""

    __slots__ = (
        "channel",
        "conn",
        "ctx",
        "dirs",
        "hello",
        "junk",
        "limits",
        "max_open",
        "pdus",
        "pending",
        "reported",
        "timeout_ns",
        "trace",
    )

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.conn: Conn | None = None
        self.dirs = {True: _Direction(), False: _Direction()}
        #: request id → the request waiting for its response, oldest first
        self.pending: dict[int, Pending] = {}
        #: the HEL waiting for its ACK / ERR
        self.hello: Pending | None = None
        #: what the handshake and the OPN said: policy, mode, thumbprints, channel id
        self.channel: Record = {}
        #: negotiated limits (0: none): max message size, max chunk count, per direction
        self.limits: dict[bool, tuple[int, int]] = {True: (0, 0), False: (0, 0)}
        self.junk = SkippedBytes()
        #: the (policy, mode) last given to the asset inventory
        self.reported: tuple[str, str] | None = None
        self.max_open = ctx.max_open_transactions
        self.timeout_ns = ctx.transaction_timeout_ns
        self.trace = ctx.tracer
        self.pdus = 0

    # -- the dissector contract -----------------------------------------------------------
    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Consume one chunk (or skip junk); see ``otsentry.dissect.base``."""
        state = self.dirs[from_client]
        if state.resync:
            return self._resync(data, start, from_client, ts)
        avail = len(data) - start
        if avail < HEADER_LEN:
            return avail - HEADER_LEN
        mtype: bytes
        ctype: int
        size: int
        mtype, ctype, size = HEADER.unpack_from(data, start)
        if mtype not in MESSAGE_TYPES or ctype not in CHUNK_TYPES:
            return self._start_junk(data, start, from_client, ts, _UNKNOWN_TYPE)
        if not MIN_CHUNK <= size <= MAX_CHUNK:
            return self._start_junk(data, start, from_client, ts, _INVALID_CHUNK)
        if avail < size:
            return avail - size
        end = start + size
        try:
            if mtype in SECURE_TYPES:
                self._secure(mtype, ctype, data, start, end, from_client, ts, state)
            else:
                self._connection(mtype, data, start, end, from_client, ts)
        except (IndexError, UnicodeDecodeError):
            fields = {"message_type": mtype.decode(), "size": size}
            self._malformed("opcua-malformed-chunk", fields, _TRUNCATED, from_client, ts)
        return size

    def gap(self, from_client: bool, ts: int) -> None:
        """Bytes were lost: drop half-built messages, find the next chunk header."""
        state = self.dirs[from_client]
        self._flush_junk(from_client)
        state.chunks.clear()
        state.resync = True
        state.synced = False

    def truncated(self, data: bytes, from_client: bool, ts: int) -> None:
        """The connection ended inside a chunk."""
        if self.dirs[from_client].resync or not _plausible(data, 0):
            return
        mtype, _ctype, size = HEADER.unpack_from(data, 0)
        fields = {"message_type": mtype.decode(), "size": size, "received_bytes": len(data)}
        self._malformed("opcua-truncated-chunk", fields, _TRUNCATED, from_client, ts)

    def close(self, ts: int) -> None:
        """Flush unanswered requests, pending junk and the message count."""
        self._flush_junk(True)
        self._flush_junk(False)
        if self.pdus:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0
        conn = self._conn()
        pending, self.pending = self.pending, {}
        if self.hello is not None:
            pending[-1] = self.hello
            self.hello = None
        for rec, anomalies, req_ts, frame in pending.values():
            self.ctx.emit(events.half(conn, rec, anomalies, req_ts, frame, Direction.REQUEST))

    # -- HEL / ACK / ERR / RHE ---------------------------------------------------------------
    def _connection(
        self, mtype: bytes, data: Buffer, start: int, end: int, from_client: bool, ts: int
    ) -> None:
        rec: Record = {"message_type": mtype.decode()}
        pos = start + HEADER_LEN
        if mtype in (b"HEL", b"ACK"):
            if pos + HELLO.size > end:  # the fixed fields must lie inside the chunk
                raise IndexError
            version, receive, send, max_message, max_chunks = HELLO.unpack_from(data, pos)
            rec.update(
                protocol_version=version,
                receive_buffer_size=receive,
                send_buffer_size=send,
                max_message_size=max_message,
                max_chunk_count=max_chunks,
            )
            if mtype == b"HEL":
                rec["endpoint_url"], _ = _string(data, pos + 20, end)
                # what the client can take limits what the server sends, and vice versa
                self.limits[False] = (max_message, max_chunks)
            else:
                self.limits[True] = (max_message, max_chunks)
        elif mtype == b"ERR":
            if pos + 4 > end:
                raise IndexError
            code = U32.unpack_from(data, pos)[0]
            rec["error"] = code
            rec["error_name"] = events.status_name(code)
            rec["reason"], _ = _string(data, pos + 4, end)
        else:  # RHE: a server dialling out (reverse connect)
            rec["server_uri"], pos = _string(data, pos, end)
            rec["endpoint_url"], _ = _string(data, pos, end)
        self._count()
        frame = self.ctx.frame
        self._trace(rec, (), from_client)
        if mtype == b"HEL":
            self.hello = (rec, (), ts, frame)
        elif mtype in (b"ACK", b"ERR") and self.hello is not None:
            req, req_anomalies, req_ts, req_frame = self.hello
            self.hello = None
            self.ctx.emit(
                events.transaction(
                    self._conn(), req, req_anomalies, req_ts, req_frame, rec, (), ts, frame
                )
            )
        else:
            direction = Direction.REQUEST if from_client else Direction.RESPONSE
            self.ctx.emit(events.half(self._conn(), rec, (), ts, frame, direction))

    # -- OPN / MSG / CLO ----------------------------------------------------------------------
    def _secure(
        self,
        mtype: bytes,
        ctype: int,
        data: Buffer,
        start: int,
        end: int,
        from_client: bool,
        ts: int,
        state: _Direction,
    ) -> None:
        pos = start + HEADER_LEN
        encrypted = False
        head: Record
        if mtype == b"OPN":
            if pos + 4 > end:  # the header fields below must lie inside the chunk
                raise IndexError
            channel_id = U32.unpack_from(data, pos)[0]
            pos += 4
            head = {"message_type": "OPN", "secure_channel_id": channel_id}
            policy, pos = _string(data, pos, end)
            cert, pos = _bytestring(data, pos, end)
            receiver, pos = _bytestring(data, pos, end)
            head["security_policy_uri"] = policy
            if cert:
                head["sender_certificate_thumbprint"] = sha1(cert).hexdigest()
            if receiver:
                head["receiver_certificate_thumbprint"] = receiver.hex()
            self._learn_policy(policy, head, from_client)
            # with a policy, the OPN's sequence header and body are asymmetrically encrypted
            encrypted = policy is not None and policy != "" and not policy.endswith("#None")
        else:
            if pos + 8 > end:  # channel id and token id must lie inside the chunk
                raise IndexError
            channel_id, token_id = U32X2.unpack_from(data, pos)
            pos += 8
            head = {
                "message_type": _TYPE_TEXT[mtype],
                "secure_channel_id": channel_id,
                "token_id": token_id,
            }
            channel = self.channel
            if channel:
                uri = channel.get("security_policy_uri")
                if uri:
                    head["security_policy_uri"] = uri
                policy = channel.get("security_policy")
                encrypted = (
                    policy is not None and policy != "None" and self._encrypted(data, pos, end)
                )
        anomalies: tuple[str, ...] = ()
        if encrypted:
            head["encrypted"] = True
            key = (mtype, channel_id)
            body_start = body_end = pos
        else:
            if pos + 8 > end:  # no room left in the chunk for its sequence header
                raise IndexError
            sequence, request_id = U32X2.unpack_from(data, pos)
            head["sequence_number"] = sequence
            head["request_id"] = request_id
            wrapped = sequence < 1024 and state.last_sequence > 0xFFFFFC00
            last = state.last_sequence
            if last >= 0 and state.synced and sequence != last + 1 and not wrapped:
                anomalies = _SEQUENCE_GAP
            state.last_sequence = sequence
            state.synced = True
            # a Sign-only chunk ends with the symmetric signature (none without a policy)
            channel = self.channel
            signature = (
                SIGNATURE_LENGTHS.get(channel.get("security_policy", "None"), 0) if channel else 0
            )
            body_start, body_end = pos + 8, end - signature
            if body_end < body_start:
                body_end = end
            if ctype == _FINAL and not state.chunks:  # a whole message in one chunk
                self._message(head, anomalies, data, body_start, body_end, from_client, ts)
                return
            key = (mtype, request_id)
        self._chunk(key, ctype, head, anomalies, data, body_start, body_end, from_client, ts)

    def _chunk(
        self,
        key: tuple[bytes, int],
        ctype: int,
        head: Record,
        anomalies: tuple[str, ...],
        data: Buffer,
        body_start: int,
        body_end: int,
        from_client: bool,
        ts: int,
    ) -> None:
        """Assemble a message from its chunks ('C' intermediate, 'F' final, 'A' abort)."""
        chunks = self.dirs[from_client].chunks
        part = chunks.get(key)
        if ctype == _INTERMEDIATE:
            if part is None:
                part = chunks[key] = [head, [], 0, 0, anomalies]
            part[1].append(bytes(data[body_start:body_end]))
            part[2] += body_end - body_start
            part[3] += 1
            max_message, max_chunks = self.limits[from_client]
            too_big = part[2] > MAX_MESSAGE or part[3] > (max_chunks or MAX_CHUNKS)
            if too_big or (max_message and part[2] > max_message):
                del chunks[key]
                fields = {**head, "chunk_count": part[3], "body_bytes": part[2]}
                self._malformed("opcua-message-too-large", fields, _TOO_LARGE, from_client, ts)
            return
        if ctype == _ABORT:
            if part is not None:
                del chunks[key]
            fields = {**head, "chunk_count": (part[3] if part else 0) + 1}
            self._malformed("opcua-chunk-abort", fields, _ABORTED, from_client, ts)
            return
        if part is not None:  # the final chunk of a multi-chunk message
            del chunks[key]
            parts = part[1]
            parts.append(bytes(data[body_start:body_end]))
            body: Buffer = b"".join(parts)
            rec = dict(part[0])
            rec["chunk_count"] = part[3] + 1
            anomalies = part[4] + tuple(a for a in anomalies if a not in part[4])
            self._message(rec, anomalies, body, 0, len(body), from_client, ts)
        else:
            rec = head
            self._message(rec, anomalies, data, body_start, body_end, from_client, ts)

    def _message(
        self,
        rec: Record,
        anomalies: tuple[str, ...],
        data: Buffer,
        start: int,
        end: int,
        from_client: bool,
        ts: int,
    ) -> None:
        """A whole OPN / MSG / CLO message: decode the service, pair, emit."""
        if not rec.get("encrypted"):
            # the chunk's header fields carry no security_mode: one there came from the body
            _, found = decode_body(data, start, end, rec)
            if found:
                anomalies += tuple(a for a in found if a not in anomalies)
            if rec["message_type"] == "OPN" and "security_mode" in rec and from_client:
                self.channel["security_mode"] = rec["security_mode"]
        if self.channel:
            rec["channel"] = self.channel
        self.pdus += 1  # (_count(), inline)
        if self.pdus >= _PDU_BATCH:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0
        frame = self.ctx.frame
        if self.trace is not None:
            self._trace(rec, anomalies, from_client)
        request_id = rec.get("request_id")
        if request_id is None:  # encrypted: no request id to pair by
            direction = Direction.REQUEST if from_client else Direction.RESPONSE
            security = self._security_news()
            self.ctx.emit(events.half(self._conn(), rec, anomalies, ts, frame, direction, security))
        elif from_client:
            self._request(request_id, rec, anomalies, ts, frame)
        else:
            self._response(request_id, rec, anomalies, ts, frame)

    def _security_news(self) -> Record | None:
        """The security used on this flow's channel, once, when policy and mode are known."""
        channel = self.channel
        mode = channel.get("security_mode")
        policy = channel.get("security_policy")
        if not mode or not policy or self.reported == (policy, mode):
            return None
        self.reported = (policy, mode)
        return {"security_used": [f"{policy}/{mode}"]}

    def _request(
        self, key: int, rec: Record, anomalies: tuple[str, ...], ts: int, frame: int
    ) -> None:
        pending = self.pending
        old = pending.pop(key, None)
        if old is not None:
            self.ctx.emit(events.half(self._conn(), *old, Direction.REQUEST))
        limit = ts - self.timeout_ns
        while pending:
            first = next(iter(pending))
            entry = pending[first]
            if entry[2] >= limit and len(pending) < self.max_open:
                break
            del pending[first]
            extra = _FLOODED if entry[2] >= limit else ()
            self.ctx.emit(
                events.half(
                    self._conn(), entry[0], entry[1] + extra, entry[2], entry[3], Direction.REQUEST
                )
            )
        pending[key] = (rec, anomalies, ts, frame)

    def _response(
        self, key: int, rec: Record, anomalies: tuple[str, ...], ts: int, frame: int
    ) -> None:
        entry = self.pending.pop(key, None)
        if entry is None:
            self.ctx.emit(
                events.half(
                    self._conn(), rec, anomalies + _UNSOLICITED, ts, frame, Direction.RESPONSE
                )
            )
            return
        req, req_anomalies, req_ts, req_frame = entry
        self.ctx.emit(
            events.transaction(
                self._conn(),
                req,
                req_anomalies,
                req_ts,
                req_frame,
                rec,
                anomalies,
                ts,
                frame,
                self._security_news(),
            )
        )

    # -- security posture ----------------------------------------------------------------------
    def _learn_policy(self, policy: str | None, head: Record, from_client: bool) -> None:
        channel = self.channel
        if policy:
            channel["security_policy_uri"] = policy
            channel["security_policy"] = policy.removeprefix(POLICY_PREFIX)
            if channel["security_policy"] == "None":
                channel["security_mode"] = "None"
        key = "client_certificate_thumbprint" if from_client else "server_certificate_thumbprint"
        if "sender_certificate_thumbprint" in head:
            channel[key] = head["sender_certificate_thumbprint"]

    def _encrypted(self, data: Buffer, pos: int, end: int) -> bool:
        """Is this MSG / CLO body encrypted? With no policy, or where the body begins with the
        four-byte NodeId of a known service encoding right after the sequence header, it is
        plaintext (Sign-only); ciphertext does not look like that (a 1 in 2^24 coincidence)."""
        policy = self.channel.get("security_policy")
        if policy in (None, "None"):
            return False
        type_at = pos + 8
        if type_at + 4 > end:
            return True
        plain = (
            data[type_at] == 0x01
            and data[type_at + 1] == 0
            and (data[type_at + 2] | data[type_at + 3] << 8) in SERVICE_NAMES
        )
        if plain:
            self.channel.setdefault("security_mode", "Sign")
        else:
            self.channel["security_mode"] = "SignAndEncrypt"
        return not plain

    # -- helpers ------------------------------------------------------------------------------
    def _count(self) -> None:
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0

    def _trace(self, rec: Record, anomalies: tuple[str, ...], from_client: bool) -> None:
        if self.trace is not None:
            direction = "request" if from_client else "response"
            self.trace(self.ctx, "opcua", direction, rec, anomalies)

    def _conn(self) -> Conn:
        conn = self.conn
        if conn is None:
            conn = self.conn = self.ctx.conn
        return conn

    def _malformed(
        self, action: str, fields: Record, anomalies: tuple[str, ...], from_client: bool, ts: int
    ) -> None:
        self._trace(fields, anomalies, from_client)
        self.ctx.emit(
            events.malformed(
                self._conn(), action, fields, anomalies, ts, self.ctx.frame, from_client
            )
        )

    # -- junk and resynchronisation ---------------------------------------------------------
    def _start_junk(
        self,
        data: Buffer,
        start: int,
        from_client: bool,
        ts: int,
        why: tuple[str, ...],
    ) -> int:
        self.dirs[from_client].resync = True
        self.junk.start(from_client, data, start, ts, self.ctx.frame, why)
        return self._resync(data, start, from_client, ts)

    def _resync(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Skip to the next plausible chunk header followed by another (or by the end)."""
        n = len(data)
        for candidate in _CANDIDATE.finditer(data, start):
            pos = candidate.start()
            if pos + HEADER_LEN > n:
                break
            if _plausible(data, pos):
                nxt: int = pos + HEADER.unpack_from(data, pos)[2]
                if nxt + HEADER_LEN > n or _plausible(data, nxt):
                    if pos > start:
                        self.junk.count(from_client, pos - start)
                        return pos - start
                    if nxt > n:
                        return n - nxt
                    self.dirs[from_client].resync = False
                    self._flush_junk(from_client)
                    return self.parse(data, start, from_client, ts)
        return self.junk.skip_to_tail(from_client, start, n, HEADER_LEN)

    def _flush_junk(self, from_client: bool) -> None:
        run = self.junk.take(from_client)
        if run is not None:
            fields, ts, frame, why = run
            action = "opcua-non-opcua-payload"
            anomalies = _NON_OPCUA + why
            self.ctx.emit(
                events.malformed(self._conn(), action, fields, anomalies, ts, frame, from_client)
            )
