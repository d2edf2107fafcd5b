"""The per-flow S7 session: TPKT/COTP framing and segmentation, S7comm job/ack pairing,
S7comm-plus headers, connection setup (TSAPs), resynchronisation."""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING, Any

from otsentry.dissect.support import SkippedBytes
from otsentry.model import Direction, Envelope, Event

from . import events
from .constants import (
    COTP_CC,
    COTP_CR,
    COTP_DR,
    COTP_DT,
    COTP_ER,
    COTP_TYPES,
    DATA_SIZES_IN_BITS,
    MAX_TSDU,
    S7COMM_ID,
    S7COMM_PLUS_ID,
    TPKT_LEN,
    TPKT_VERSION,
)
from .grammar import (
    DATA_ITEM,
    MAX_VALUE_BYTES,
    READ_JOBS,
    RETURN_CODE_NAMES,
    TPKT,
    Buffer,
    decode_cotp_connect,
    decode_header,
    decode_job,
    read_job_seen,
    read_values,
)
from .plus import decode_plus, decode_plus_fragments
from .userdata import UserdataReassembly, decode_userdata

if TYPE_CHECKING:
    from otsentry.dissect.base import FlowContext
    from otsentry.model import Conn

Record = dict[str, Any]
#: a request waiting for its response: record, anomalies, ts, frame
Pending = tuple[Record, tuple[str, ...], int, int]

_MIN_TPKT = 7  # TPKT header + the shortest COTP header (DT: length, type, number)
_MAX_TPKT = 65_535
_INVALID_TPKT = ("s7comm.invalid_tpkt_length",)
_INVALID_COTP = ("s7comm.invalid_cotp_length",)
_UNSOLICITED = ("s7comm.unsolicited_ack",)
_FLOODED = ("s7comm.flooded",)
_NON_S7 = ("s7comm.non_s7_payload",)
_UNKNOWN_PROTOCOL = ("s7comm.unknown_protocol",)
_TSDU_OVERFLOW = ("s7comm.tsdu_too_long",)
#: TPKT (version, reserved, length), a COTP data unit with EOT, and the S7comm header's first
#: ten bytes; the constant bytes are compared at once
_TPKT_DT_S7 = Struct(">HH4sB2xHHH").unpack_from
_TPKT_V3 = TPKT_VERSION << 8  # version 3, reserved 0
_DT_EOT_S7 = bytes((2, COTP_DT, 0x80, S7COMM_ID))  # COTP length 2, DT, EOT, protocol id
_TRANSACTION = Direction.TRANSACTION
_DATA_ITEM = DATA_ITEM.unpack_from
_READ_VAR = events.FUNCTION_ACTIONS[0x04]
_PROTOCOL = events.PROTOCOL
#: added to a userdata PDU's reference in the open-request table (jobs and userdata are paired
#: apart)
_USERDATA_KEY = 0x10000
_PDU_BATCH = 256
_MAX_PLUS_PARTS = 64  # TSDUs of one fragmented S7comm-plus PDU kept before it is cut short
_SAMPLE = 32


#: read var ack data (item count and items, as bytes) → its decoded ``values``; the lists are
#: shared by the events that carry them, read-only like every emitted record
_ACK_VALUES: dict[bytes, list[Record]] = {}
_ACK_VALUES_MAX = 4096


def _ack_values(data: Buffer, off: int, end: int, count: int) -> list[Record] | None:
    """The values of the read var ack_data whose S7 header is at ``off``; None on an anomaly."""
    if count == 1 and end - off >= 18:
        # one item, the usual poll: decoded here as ``read_values`` would
        code, size, length = _DATA_ITEM(data, off + 14)
        nbytes = (length + 7) >> 3 if size in DATA_SIZES_IN_BITS else length
        if off + 18 + nbytes != end:
            return None
        stop = off + 18 + (nbytes if nbytes < MAX_VALUE_BYTES else MAX_VALUE_BYTES)
        return [
            {
                "return_code": code,
                "return_code_name": RETURN_CODE_NAMES[code],
                "transport_size": size,
                "length": length,
                "value": data[off + 18 : stop].hex(),
            }
        ]
    decoded: Record = {"item_count": count}
    if read_values(decoded, data, off + 14, end):
        return None
    values: list[Record] = decoded["values"]
    return values


def _plausible_tpkt(data: Buffer, pos: int) -> bool:
    """Could ``data[pos:]`` start a TPKT carrying COTP: version 3, reserved 0, sane lengths?"""
    if len(data) - pos < _MIN_TPKT:
        return False
    version, reserved, length = TPKT.unpack_from(data, pos)
    li = data[pos + 4]
    return (
        version == TPKT_VERSION
        and reserved == 0
        and length >= _MIN_TPKT
        and 2 <= li <= length - TPKT_LEN - 1
        and (data[pos + 5] & 0xF0) in COTP_TYPES
    )


class S7Session:
    """Dissects both directions of one ISO-on-TCP (RFC 1006) connection carrying S7."""

    __slots__ = (
        "conn",
        "connection",
        "ctx",
        "junk",
        "max_open",
        "pdus",
        "pending",
        "plus_c",
        "plus_s",
        "resync_c",
        "resync_s",
        "timeout_ns",
        "trace",
        "tsdu_c",
        "tsdu_s",
        "userdata_parts",
    )

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.conn: Conn | None = None
        #: pdu reference (| ``_USERDATA_KEY`` for userdata) → the job or userdata request,
        #: oldest first
        self.pending: dict[int, Pending] = {}
        self.resync_c = self.resync_s = False
        #: user data of DT TPDUs without EOT, per direction, until the EOT
        self.tsdu_c = bytearray()
        self.tsdu_s = bytearray()
        #: TSDUs of an S7comm-plus PDU whose last part (with the trailer) has not come yet
        self.plus_c: list[bytes] = []
        self.plus_s: list[bytes] = []
        #: userdata answers split over several PDUs (SZL lists, block lists), until the last
        self.userdata_parts = UserdataReassembly()
        self.junk = SkippedBytes()
        #: what COTP connection setup said: TSAPs, connection type (pg / op), rack, slot
        self.connection: Record = {}
        self.max_open = ctx.max_open_transactions
        self.timeout_ns = ctx.transaction_timeout_ns
        self.trace = ctx.tracer
        self.pdus = 0

    # -- the dissector contract -----------------------------------------------------------
    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Consume one TPKT (or skip junk); see ``otsentry.dissect.base``."""
        if self.resync_c if from_client else self.resync_s:
            return self._resync(data, start, from_client, ts)
        avail = len(data) - start
        length: int
        if avail >= 24 and self.trace is None:
            # the commonest TPKT: one whole S7comm PDU in one COTP data unit, in one unpack
            vr, length, head, rosctr, ref, plen, dlen = _TPKT_DT_S7(data, start)
            if (
                vr == _TPKT_V3
                and head == _DT_EOT_S7
                and length <= avail
                and not (self.tsdu_c if from_client else self.tsdu_s)
                and self._read_var(data, start + 7, start + length, ts, rosctr, ref, plen, dlen)
            ):
                return length
        if avail < TPKT_LEN:
            return avail - TPKT_LEN
        version, reserved, length = TPKT.unpack_from(data, start)
        if version != TPKT_VERSION or reserved != 0 or length < _MIN_TPKT:
            return self._start_junk(data, start, from_client, ts)
        if avail < length:
            return avail - length
        end = start + length
        li = data[start + 4]
        kind = data[start + 5] & 0xF0
        off = start + 4
        if kind == COTP_DT and li == 2:
            payload = start + 7
            if data[start + 6] & 0x80:  # EOT: the last (often only) TPDU of an S7 PDU
                tsdu = self.tsdu_c if from_client else self.tsdu_s
                if tsdu:
                    tsdu += data[payload:end]
                    whole = bytes(tsdu)
                    tsdu.clear()
                    self._tsdu(whole, 0, len(whole), from_client, ts)
                else:
                    self._tsdu(data, payload, end, from_client, ts)
            else:
                self._segment(data, payload, end, from_client, ts)
            return length
        if li + 1 > length - TPKT_LEN or li < 2:
            self._malformed(
                "s7comm-malformed-tpdu",
                {"tpkt_length": length, "cotp_length": li},
                _INVALID_COTP,
                from_client,
                ts,
            )
            return length
        if kind in (COTP_CR, COTP_CC, COTP_DR, COTP_ER):
            self._connect(kind, data, off, end, from_client, ts)
        elif kind == COTP_DT:  # a DT with an unusual header length (class 1-4 options)
            self._tsdu(data, off + 1 + li, end, from_client, ts)
        return length

    def gap(self, from_client: bool, ts: int) -> None:
        """Bytes were lost: drop a half-built S7 PDU, find the next TPKT header."""
        self._flush_junk(from_client)
        if from_client:
            self.tsdu_c.clear()
            self.plus_c.clear()
            self.resync_c = True
        else:
            self.tsdu_s.clear()
            self.plus_s.clear()
            self.resync_s = True

    def truncated(self, data: bytes, from_client: bool, ts: int) -> None:
        """The connection ended inside a TPKT."""
        if (self.resync_c if from_client else self.resync_s) or len(data) < TPKT_LEN:
            return
        version, _res, length = TPKT.unpack_from(data, 0)
        if version == TPKT_VERSION:
            fields = {"tpkt_length": length, "received_bytes": len(data)}
            self._malformed("s7comm-truncated-tpkt", fields, _INVALID_TPKT, from_client, ts)

    def close(self, ts: int) -> None:
        """Flush unanswered requests, pending junk and the PDU count."""
        self._flush_junk(True)
        self._flush_junk(False)
        if self.pdus:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0
        pending, self.pending = self.pending, {}
        conn = self._conn()
        for rec, anomalies, req_ts, frame in pending.values():
            self.ctx.emit(events.half(conn, rec, anomalies, req_ts, frame, Direction.REQUEST))

    # -- COTP ----------------------------------------------------------------------------------
    def _segment(self, data: Buffer, off: int, end: int, from_client: bool, ts: int) -> None:
        """A DT TPDU without EOT: keep its user data until the last one arrives."""
        tsdu = self.tsdu_c if from_client else self.tsdu_s
        if len(tsdu) + end - off > MAX_TSDU:
            tsdu.clear()
            fields = {"tsdu_bytes": MAX_TSDU}
            self._malformed("s7comm-malformed-tpdu", fields, _TSDU_OVERFLOW, from_client, ts)
            return
        tsdu += data[off:end]

    def _connect(
        self, kind: int, data: Buffer, off: int, end: int, from_client: bool, ts: int
    ) -> None:
        """Connection request / confirm, disconnect, error: one event each, and the TSAPs of a
        request are remembered for every later event of the flow."""
        rec: Record = {"cotp_type": kind, "cotp_type_name": COTP_TYPES[kind]}
        anomalies = decode_cotp_connect(rec, data, off, end, kind)
        if kind == COTP_CR:
            for key in ("src_tsap", "dst_tsap", "connection_type", "rack", "slot"):
                if key in rec:
                    self.connection[key] = rec[key]
        if self.trace is not None:
            self.trace(self.ctx, "cotp", "request" if from_client else "response", rec, anomalies)
        action = "s7comm-cotp-" + COTP_TYPES[kind].replace("_", "-")
        self.ctx.emit(
            events.cotp(self._conn(), action, rec, anomalies, ts, self.ctx.frame, from_client)
        )

    # -- S7 PDUs ---------------------------------------------------------------------------------
    def _tsdu(self, data: Buffer, off: int, end: int, from_client: bool, ts: int) -> None:
        """One whole S7 PDU: S7comm (0x32) or S7comm-plus (0x72)."""
        if off >= end:
            return
        proto = data[off]
        if proto == S7COMM_ID and end - off >= 10:
            self._s7comm(data, off, end, from_client, ts)
        elif proto == S7COMM_PLUS_ID:
            self._plus(data, off, end, from_client, ts)
        else:
            fields = {"protocol_id": proto, "sample": bytes(data[off : off + _SAMPLE]).hex()}
            anomalies = _UNKNOWN_PROTOCOL if proto != S7COMM_ID else ("s7comm.invalid_length",)
            self._malformed("s7comm-unknown-protocol", fields, anomalies, from_client, ts)

    def _count(self) -> None:
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0

    def _s7comm(self, data: Buffer, off: int, end: int, from_client: bool, ts: int) -> None:
        rec: Record = {}
        poff, doff, anomalies = decode_header(rec, data, off, end)
        rosctr = rec["rosctr"]
        if rosctr == 7:
            found = decode_userdata(
                rec, data, poff, doff - poff, doff, end - doff, self.userdata_parts
            )
        elif rosctr in (1, 3):
            found = decode_job(rec, data, poff, doff, end)
        else:
            found = ()
        if found:
            anomalies += tuple(a for a in found if a not in anomalies)
        ctx = self.ctx
        frame = ctx.frame
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            ctx.count_pdus(self.pdus)
            self.pdus = 0
        if self.connection:
            rec["connection"] = self.connection
        if self.trace is not None:
            direction = "request" if from_client else "response"
            self.trace(ctx, "s7comm", direction, rec, anomalies)
        key = rec["pdu_reference"] | _USERDATA_KEY if rosctr == 7 else rec["pdu_reference"]
        if rosctr == 1 or (rosctr == 7 and rec.get("userdata_type") == 4):
            self._request(key, rec, anomalies, ts, frame)
        elif rosctr in (2, 3) or (rosctr == 7 and rec.get("userdata_type") == 8):
            self._response(key, rec, anomalies, ts, frame)
        else:  # push (cyclic data, alarms) and anything unknown: one event on its own
            direction = Direction.REQUEST if from_client else Direction.RESPONSE
            ctx.emit(events.half(self._conn(), rec, anomalies, ts, frame, direction))

    def _read_var(
        self,
        data: Buffer,
        off: int,
        end: int,
        ts: int,
        rosctr: int,
        ref: int,
        plen: int,
        dlen: int,
    ) -> bool:
        """A short path for what polling HMIs send most: a read var job whose items were seen
        before, and its ack_data (the S7 header at ``off`` already unpacked). Records exactly
        what ``_s7comm`` records; False to fall back."""
        if end - off < 14:
            return False
        pending = self.pending
        if rosctr == 1:
            if dlen or off + 10 + plen != end or data[off + 10] != 0x04:
                return False
            template = READ_JOBS.get(bytes(data[off + 10 : end]))
            if template is not None:
                rec = template.copy()
            else:
                seen = read_job_seen(data, off + 10, end)
                if seen is None:
                    return False
                rec = seen
            rec["pdu_reference"] = ref
            if self.connection:
                rec["connection"] = self.connection
            self.pdus += 1
            if pending or self.pdus >= _PDU_BATCH:
                self._request(ref, rec, (), ts, self.ctx.frame)
            else:  # nothing waiting (an HMI waits for each answer): nothing to expire
                pending[ref] = (rec, (), ts, self.ctx.frame)
            return True
        if rosctr != 3 or plen != 2 or off + 12 + plen + dlen != end or data[off + 12] != 0x04:
            return False
        entry = pending.get(ref)
        if entry is None or data[off + 10]:  # no job waiting, or an error class
            return False
        req, req_anomalies, req_ts, req_frame = entry
        if req.get("function") != 0x04 or req.get("connection") is not (self.connection or None):
            return False
        count = data[off + 13]
        # the ack's data items (and their count), as bytes: polls answer the same values again
        # and again, so their decoded form is looked up rather than built
        key_bytes = bytes(data[off + 13 : end])
        values = _ACK_VALUES.get(key_bytes)
        if values is None:
            values = _ack_values(data, off, end, count)
            if values is None:
                return False  # an anomaly: the general path records it
            if len(_ACK_VALUES) >= _ACK_VALUES_MAX:
                _ACK_VALUES.clear()
            _ACK_VALUES[key_bytes] = values
        # the event's fields are the job's with the ack's added: what ``events.transaction``
        # makes of the two records, written into the job's record (made for this job alone and
        # about to leave the open-request table)
        ctx = self.ctx
        fields = req
        fields["error_class"] = 0
        fields["error_code"] = data[off + 11]
        fields["item_count"] = count
        fields["values"] = values
        self.pdus += 1
        del pending[ref]
        fields["response_rosctr"] = 3
        fields["request_frame"] = req_frame
        fields["response_frame"] = ctx.frame
        conn = self.conn
        if conn is None:
            conn = self.conn = ctx.conn
        ctx.emit(
            Event(
                Envelope(req_ts, conn, _PROTOCOL, _TRANSACTION),
                _READ_VAR,
                fields,
                req_anomalies,
                "success",
                ts - req_ts,
            )
        )
        return True

    def _plus(self, data: Buffer, off: int, end: int, from_client: bool, ts: int) -> None:
        """One S7comm-plus TSDU: traced on its own; a PDU sent as several TSDUs (only the last
        has the trailer) becomes one event when its last part arrives."""
        parts = self.plus_c if from_client else self.plus_s
        rec, anomalies = decode_plus(data, off, end, continuation=bool(parts))
        ctx = self.ctx
        self._count()
        if self.trace is not None:
            direction = "request" if from_client else "response"
            self.trace(ctx, "s7comm-plus", direction, rec, anomalies)
        fragment = rec.get("fragment")
        if fragment in ("first", "inner") and len(parts) < _MAX_PLUS_PARTS:
            parts.append(bytes(data[off:end]))
            return
        if parts:
            parts.append(bytes(data[off:end]))
            rec, anomalies = decode_plus_fragments(parts)
            parts.clear()
        if self.connection:
            rec["connection"] = self.connection
        ctx.emit(events.plus(self._conn(), rec, anomalies, ts, ctx.frame, from_client))

    def _request(
        self, key: int, rec: Record, anomalies: tuple[str, ...], ts: int, frame: int
    ) -> None:
        if self.pdus >= _PDU_BATCH:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0
        pending = self.pending
        ctx = self.ctx
        old = pending.pop(key, None)
        if old is not None:
            ctx.emit(events.half(self._conn(), *old, Direction.REQUEST))
        limit = ts - self.timeout_ns
        while pending:
            first = next(iter(pending))
            entry = pending[first]
            if entry[2] >= limit and len(pending) < self.max_open:
                break
            del pending[first]
            flood = entry[2] >= limit  # evicted for room, not for age
            extra = _FLOODED if flood else ()
            ctx.emit(
                events.half(
                    self._conn(), entry[0], entry[1] + extra, entry[2], entry[3], Direction.REQUEST
                )
            )
        pending[key] = (rec, anomalies, ts, frame)

    def _response(
        self, key: int, rec: Record, anomalies: tuple[str, ...], ts: int, frame: int
    ) -> None:
        entry = self.pending.pop(key, None)
        ctx = self.ctx
        if entry is None:
            ctx.emit(
                events.half(
                    self._conn(), rec, anomalies + _UNSOLICITED, ts, frame, Direction.RESPONSE
                )
            )
            return
        req, req_anomalies, req_ts, req_frame = entry
        ctx.emit(
            events.transaction(
                self._conn(), req, req_anomalies, req_ts, req_frame, rec, anomalies, ts, frame
            )
        )

    def _conn(self) -> Conn:
        conn = self.conn
        if conn is None:
            conn = self.conn = self.ctx.conn
        return conn

    # -- malformed input ----------------------------------------------------------------------
    def _malformed(
        self,
        action: str,
        fields: Record,
        anomalies: tuple[str, ...],
        from_client: bool,
        ts: int,
    ) -> None:
        ctx = self.ctx
        if self.trace is not None:
            direction = "request" if from_client else "response"
            self.trace(ctx, "s7comm", direction, fields, anomalies)
        ctx.emit(
            events.malformed(self._conn(), action, fields, anomalies, ts, ctx.frame, from_client)
        )

    def _start_junk(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        if from_client:
            self.resync_c = True
        else:
            self.resync_s = True
        self.junk.start(from_client, data, start, ts, self.ctx.frame)
        return self._resync(data, start, from_client, ts)

    def _resync(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Skip to the next plausible TPKT followed by another (or by the end of the bytes)."""
        n = len(data)
        pos = start
        while True:
            hit = data.find(b"\x03\x00", pos)
            if hit < 0 or hit + _MIN_TPKT > n:
                break
            if _plausible_tpkt(data, hit):
                nxt: int = hit + TPKT.unpack_from(data, hit)[2]
                if nxt + _MIN_TPKT > n or _plausible_tpkt(data, nxt):
                    if hit > start:
                        self.junk.count(from_client, hit - start)
                        return hit - start
                    if nxt > n:
                        return n - nxt
                    if from_client:
                        self.resync_c = False
                    else:
                        self.resync_s = False
                    self._flush_junk(from_client)
                    return self.parse(data, start, from_client, ts)
            pos = hit + 1
        return self.junk.skip_to_tail(from_client, start, n, _MIN_TPKT)

    def _flush_junk(self, from_client: bool) -> None:
        run = self.junk.take(from_client)
        if run is not None:
            fields, ts, frame, _why = run
            self.ctx.emit(
                events.malformed(
                    self._conn(), "s7comm-non-s7-payload", fields, _NON_S7, ts, frame, from_client
                )
            )
