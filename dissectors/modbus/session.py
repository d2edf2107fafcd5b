"""The per-flow Modbus/TCP session: MBAP framing, resynchronisation, request/response pairing."""

from __future__ import annotations

from struct import Struct
from typing import TYPE_CHECKING, Any

from otsentry.dissect.support import SkippedBytes
from otsentry.model import Direction, Envelope, Event

from . import events
from .constants import (
    EXCEPTION_BIT,
    EXCEPTIONS,
    FUNCTIONS,
    KNOWN_FUNCTIONS,
    KNOWN_RESPONSE_FUNCTIONS,
    MAX_MBAP_LENGTH,
    MBAP_LEN,
    RESERVED_FUNCTIONS,
    USER_DEFINED_FUNCTIONS,
    function_name,
)
from .events import ACTIONS, MERGED_BY_KEY, PROTOCOL
from .grammar import (
    BITS,
    INVALID_QUANTITY,
    MBAP,
    QUANTITY_LIMITS,
    REQUESTS,
    RESPONSES,
    U16,
    U16X2,
    Buffer,
    coils,
    decode_exception,
    decode_raw,
    decode_raw_response,
)

if TYPE_CHECKING:
    from otsentry.dissect.base import FlowContext
    from otsentry.model import Conn

Record = dict[str, Any]
#: a request waiting for its response: record, anomalies, ts, frame
Pending = tuple[Record, tuple[str, ...], int, int]

_MBAP = MBAP.unpack_from
#: the MBAP header and the function code
_MBAP_FC = Struct(">HHHBB").unpack_from
_U16X2 = U16X2.unpack_from
#: unpackers of 0-125 registers (a response's byte count is checked against its quantity first)
_REGISTERS = [Struct(f">{n}H").unpack_from for n in range(126)]
_TRANSACTION = Direction.TRANSACTION
NAMES: tuple[str, ...] = tuple(function_name(code) for code in range(128))
_DEFINED = frozenset((*FUNCTIONS, *RESERVED_FUNCTIONS, *USER_DEFINED_FUNCTIONS))
#: function codes a request may carry without an anomaly
VALID_REQUEST_CODES = frozenset(_DEFINED)
_INVALID_FC = ("modbus.invalid_function_code",)
_INVALID_PID = ("modbus.invalid_protocol_id",)
_INVALID_LENGTH = ("modbus.invalid_length",)
_UNSOLICITED = ("modbus.unsolicited_response",)
_FLOODED = ("modbus.flooded",)
_NON_MODBUS = ("modbus.non_modbus_payload",)
_PDU_BATCH = 256
#: the largest quantity of a read request by function code (1-4)
_READ_LIMITS = (
    0,
    *(QUANTITY_LIMITS[fc] for fc in range(1, 5)),
)  # PDUs counted locally before the flow's counter is updated


def _record(tid: int, unit: int, code: int) -> Record:
    """What every PDU record starts with."""
    return {"transaction_id": tid, "unit_id": unit, "function_code": code, "function": NAMES[code]}


def _plausible(data: Buffer, pos: int, from_client: bool) -> bool:
    """Could ``data[pos:]`` start an ADU with any function code (a scan sends unassigned ones):
    protocol id 0, a sane length, a code that is not 0 (nor an exception in a request)?"""
    if len(data) - pos < MBAP_LEN + 1:
        return False
    _tid, pid, length, _unit = _MBAP(data, pos)
    fc = data[pos + MBAP_LEN]
    return (
        pid == 0
        and 2 <= length <= MAX_MBAP_LENGTH
        and fc != 0
        and (fc < EXCEPTION_BIT or not from_client)
    )


class ModbusSession:
    """Dissects both directions of one Modbus/TCP connection (see ``otsentry.dissect.base``)."""

    __slots__ = (
        "conn",
        "ctx",
        "junk",
        "max_open",
        "pdus",
        "pending",
        "resync_c",
        "resync_s",
        "timeout_ns",
        "trace",
    )

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.conn: Conn | None = None  # the flow's identity, fetched at the first event
        #: (transaction id << 8 | unit) → the request, oldest first
        self.pending: dict[int, Pending] = {}
        self.resync_c = self.resync_s = False
        #: non-Modbus bytes being skipped, per direction
        self.junk = SkippedBytes()
        self.max_open = ctx.max_open_transactions
        self.timeout_ns = ctx.transaction_timeout_ns
        self.trace = ctx.tracer
        self.pdus = 0  # parsed, not yet added to the flow's counter (batched: it is hot)

    # -- the dissector contract -----------------------------------------------------------
    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Consume one ADU (or skip junk); see ``otsentry.dissect.base``."""
        if self.resync_c if from_client else self.resync_s:
            return self._resync(data, start, from_client, ts)
        avail = len(data) - start
        if avail < MBAP_LEN + 1:
            if avail >= 6:
                pid0, short = U16X2.unpack_from(data, start + 2)
                if short < 2 and avail >= 6 + short:
                    if pid0:
                        return self._start_junk(data, start, from_client, ts)
                    return self._short_adu(data, start, short, from_client, ts)
            return avail - MBAP_LEN - 1
        tid: int
        pid: int
        length: int
        unit: int
        fc: int
        tid, pid, length, unit, fc = _MBAP_FC(data, start)
        size = 6 + length
        if not pid and 2 <= length <= MAX_MBAP_LENGTH:
            if avail < size:
                return avail - size
            if 0 < fc <= 4 and self.trace is None:
                # reads of coils, inputs and registers are nearly all the traffic: a short path
                # for the well-formed ones, recorded exactly as ``_request`` / ``_response``
                # and ``events.transaction`` would (the general path takes the rest)
                pending = self.pending
                key = tid << 8 | unit
                if from_client:
                    if length == 6:
                        if pending:
                            self._expire(key, ts)
                            if len(pending) >= self.max_open:
                                self._request(tid, unit, fc, data, start + 8, start + 12, ts, ())
                                return 12
                        address, quantity = _U16X2(data, start + 8)
                        pending[key] = (
                            {
                                "transaction_id": tid,
                                "unit_id": unit,
                                "function_code": fc,
                                "function": NAMES[fc],
                                "address": address,
                                "quantity": quantity,
                            },
                            () if 1 <= quantity <= _READ_LIMITS[fc] else INVALID_QUANTITY,
                            ts,
                            self.ctx.frame,
                        )
                        self.pdus += 1
                        if self.pdus >= _PDU_BATCH:
                            self.ctx.count_pdus(self.pdus)
                            self.pdus = 0
                        return 12
                else:
                    entry = pending.get(key)
                    if entry is not None and self._read_response(
                        key, entry, fc, length, data, start + 9, ts
                    ):
                        return size
            elif fc & EXCEPTION_BIT and length == 3 and not from_client and self.trace is None:
                # an exception response (a scan's unassigned codes, reads out of range)
                key = tid << 8 | unit
                entry = self.pending.get(key)
                if entry is not None and self._exception_response(
                    key, entry, fc, data[start + 8], ts
                ):
                    return size
            if from_client:
                self._request(tid, unit, fc, data, start + MBAP_LEN + 1, start + size, ts, ())
            else:
                self._response(tid, unit, fc, data, start + MBAP_LEN + 1, start + size, ts, ())
            return size
        if length < 2:
            if pid:
                return self._start_junk(data, start, from_client, ts)
            return self._short_adu(data, start, length, from_client, ts)
        known = KNOWN_FUNCTIONS if from_client else KNOWN_RESPONSE_FUNCTIONS
        if fc not in known or (pid and length > MAX_MBAP_LENGTH):
            return self._start_junk(data, start, from_client, ts)
        anomalies: tuple[str, ...] = _INVALID_PID if pid else _INVALID_LENGTH
        if pid and length > MAX_MBAP_LENGTH:
            anomalies += _INVALID_LENGTH
        if avail < size:
            return avail - size
        if from_client:
            self._request(tid, unit, fc, data, start + MBAP_LEN + 1, start + size, ts, anomalies)
        else:
            self._response(tid, unit, fc, data, start + MBAP_LEN + 1, start + size, ts, anomalies)
        return size

    def _read_response(
        self, key: int, entry: Pending, fc: int, length: int, data: Buffer, pos: int, ts: int
    ) -> bool:
        """A well-formed FC 1-4 response (byte count at ``pos - 1``) to the pending request
        ``entry`` of the same code, as ``_response`` and ``events.transaction`` would record
        it; False to fall back."""
        req = entry[0]
        if req["function_code"] != fc:
            return False
        quantity = req["quantity"]
        count = data[pos - 1]
        if length != 3 + count:
            return False
        if fc >= 3:
            if count != 2 * quantity:
                return False
            values: list[Any] = list(_REGISTERS[quantity](data, pos))
        elif count != (quantity + 7) >> 3:
            return False
        elif count == 2:
            values = [*BITS[data[pos]], *BITS[data[pos + 1]]]
            del values[quantity:]
        else:
            values = coils(data, pos, count, quantity)
        # the request's record, made for it alone and leaving the table, becomes the event's
        req["byte_count"] = count
        req["values"] = values
        self._transaction(key, entry, ACTIONS[fc], "success", ts)
        return True

    def _exception_response(
        self, key: int, entry: Pending, fc: int, exception: int, ts: int
    ) -> bool:
        """An exception response with a known code to the pending request ``entry`` of the
        same function, as ``_response`` and ``events.transaction`` would record it; False to
        fall back."""
        req = entry[0]
        code = fc & 0x7F
        name = EXCEPTIONS.get(exception)
        if req["function_code"] != code or code in MERGED_BY_KEY or name is None:
            return False
        # the request's record with the response's fields added (the response's others repeat
        # the request's), as ``req | resp`` would make it
        req["exception_code"] = exception
        req["exception"] = name
        self._transaction(key, entry, ACTIONS[code], "failure", ts)
        return True

    def _transaction(self, key: int, entry: Pending, action: str, outcome: str, ts: int) -> None:
        """A short path's response to the pending request ``entry`` (under ``key``), whose
        record holds the response's fields already: the request leaves the table, its record
        gets both frame numbers and becomes the transaction's event; the PDU is counted."""
        del self.pending[key]
        fields, anomalies, req_ts, req_frame = entry
        ctx = self.ctx
        fields["request_frame"] = req_frame
        fields["response_frame"] = ctx.frame
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            ctx.count_pdus(self.pdus)
            self.pdus = 0
        conn = self.conn
        if conn is None:
            conn = self.conn = ctx.conn
        ctx.emit(
            Event(
                Envelope(req_ts, conn, PROTOCOL, _TRANSACTION),
                action,
                fields,
                anomalies,
                outcome,
                ts - req_ts,
            )
        )

    def gap(self, from_client: bool, ts: int) -> None:
        """Bytes were lost: find the next MBAP header before decoding again."""
        self._flush_junk(from_client)
        if from_client:
            self.resync_c = True
        else:
            self.resync_s = True

    def close(self, ts: int) -> None:
        """Flush unanswered requests and pending junk as events."""
        self._flush_junk(True)
        self._flush_junk(False)
        if self.pdus:
            self.ctx.count_pdus(self.pdus)
            self.pdus = 0
        pending, self.pending = self.pending, {}
        conn = self.ctx.conn
        emit = self.ctx.emit
        for rec, anomalies, req_ts, frame in pending.values():
            emit(events.half(conn, rec, anomalies, req_ts, frame, Direction.REQUEST))

    # -- requests and responses -------------------------------------------------------------
    def _request(
        self,
        tid: int,
        unit: int,
        fc: int,
        data: Buffer,
        off: int,
        end: int,
        ts: int,
        anomalies: tuple[str, ...],
    ) -> None:
        ctx = self.ctx
        code = fc & 0x7F
        rec = _record(tid, unit, code)
        found = REQUESTS.get(code, decode_raw)(rec, data, off, end)
        if found:
            anomalies += tuple(a for a in found if a not in anomalies)
        if fc not in VALID_REQUEST_CODES:
            anomalies += _INVALID_FC
        frame = ctx.frame
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            ctx.count_pdus(self.pdus)
            self.pdus = 0
        if self.trace is not None:
            self.trace(ctx, "modbus", "request", rec, anomalies)
        pending = self.pending
        key = tid << 8 | unit
        if pending:
            self._expire(key, ts)
        if len(pending) >= self.max_open:
            oldest = next(iter(pending))
            old, old_anomalies, old_ts, old_frame = pending.pop(oldest)
            ctx.emit(
                events.half(
                    ctx.conn, old, old_anomalies + _FLOODED, old_ts, old_frame, Direction.REQUEST
                )
            )
        pending[key] = (rec, anomalies, ts, frame)

    def _expire(self, key: int, ts: int) -> None:
        """Emit the request a new one with the same key replaces, and requests timed out."""
        pending = self.pending
        ctx = self.ctx
        old = pending.pop(key, None)
        if old is not None:
            ctx.emit(events.half(ctx.conn, old[0], old[1], old[2], old[3], Direction.REQUEST))
        limit = ts - self.timeout_ns
        while pending:
            first = next(iter(pending))
            rec, anomalies, req_ts, frame = pending[first]
            if req_ts >= limit:
                break
            del pending[first]
            ctx.emit(events.half(ctx.conn, rec, anomalies, req_ts, frame, Direction.REQUEST))

    def _response(
        self,
        tid: int,
        unit: int,
        fc: int,
        data: Buffer,
        off: int,
        end: int,
        ts: int,
        anomalies: tuple[str, ...],
    ) -> None:
        ctx = self.ctx
        code = fc & 0x7F
        rec = _record(tid, unit, code)
        entry = self.pending.pop(tid << 8 | unit, None)
        req = entry[0] if entry is not None else None
        if fc & EXCEPTION_BIT:
            found = decode_exception(rec, data, off, end)
        else:
            found = RESPONSES.get(code, decode_raw_response)(rec, data, off, end, req)
            if fc not in VALID_REQUEST_CODES:
                found += _INVALID_FC
        if found:
            anomalies += tuple(a for a in found if a not in anomalies)
        if req is not None:
            if "address" not in rec and "address" in req:
                rec["address"] = req["address"]
                if "quantity" in req:
                    rec["quantity"] = req["quantity"]
        else:
            anomalies += _UNSOLICITED
        frame = ctx.frame
        self.pdus += 1
        if self.pdus >= _PDU_BATCH:
            ctx.count_pdus(self.pdus)
            self.pdus = 0
        if self.trace is not None:
            self.trace(ctx, "modbus", "response", rec, anomalies)
        if entry is None:
            ctx.emit(events.half(ctx.conn, rec, anomalies, ts, frame, Direction.RESPONSE))
        else:
            req_rec, req_anomalies, req_ts, req_frame = entry
            ctx.emit(
                events.transaction(
                    ctx.conn, req_rec, req_anomalies, req_ts, req_frame, rec, anomalies, ts, frame
                )
            )

    def truncated(self, data: bytes, from_client: bool, ts: int) -> None:
        """The connection ended inside an ADU: report what its header said."""
        if (self.resync_c if from_client else self.resync_s) or len(data) < MBAP_LEN:
            self.junk.count(from_client, len(data))
            return
        tid, pid, length, unit = _MBAP(data, 0)
        fields: Record = {
            "transaction_id": tid,
            "unit_id": unit,
            "length": length,
            "received_bytes": len(data),
        }
        if len(data) > MBAP_LEN:
            code = data[MBAP_LEN] & 0x7F
            fields["function_code"] = code
            fields["function"] = NAMES[code]
        anomalies = _INVALID_LENGTH + (_INVALID_PID if pid else ())
        ctx = self.ctx
        if self.trace is not None:
            direction = "request" if from_client else "response"
            self.trace(ctx, "modbus", direction, fields, anomalies)
        ctx.emit(
            events.malformed(
                ctx.conn, "modbus-truncated-adu", fields, anomalies, ts, ctx.frame, from_client
            )
        )

    # -- malformed input ----------------------------------------------------------------------
    def _short_adu(self, data: Buffer, start: int, length: int, from_client: bool, ts: int) -> int:
        """An MBAP header whose length cannot hold a function code (0 or 1)."""
        fields: Record = {"transaction_id": U16.unpack_from(data, start)[0], "length": length}
        if length == 1:
            fields["unit_id"] = data[start + 6]
        anomalies = _INVALID_LENGTH
        ctx = self.ctx
        if self.trace is not None:
            self.trace(ctx, "modbus", "request" if from_client else "response", fields, anomalies)
        ctx.emit(
            events.malformed(
                ctx.conn, "modbus-malformed-adu", fields, anomalies, ts, ctx.frame, from_client
            )
        )
        return 6 + length

    def _start_junk(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Bytes that are not an MBAP header: skip to the next plausible one."""
        if from_client:
            self.resync_c = True
        else:
            self.resync_s = True
        self.junk.start(from_client, data, start, ts, self.ctx.frame)
        return self._resync(data, start, from_client, ts)

    def _resync(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Skip to the next offset that starts a plausible ADU followed by another (or by the
        end of the bytes at hand); return the bytes skipped, or ask for more."""
        n = len(data)
        pos = start
        while True:
            # the protocol id (bytes 2-3) is zero: look for a zero pair two bytes in
            hit = data.find(b"\x00\x00", pos + 2)
            if hit < 0 or hit + 6 > n:
                break
            cand = hit - 2
            if _plausible(data, cand, from_client):
                nxt: int = cand + 6 + U16.unpack_from(data, cand + 4)[0]
                if nxt + MBAP_LEN + 1 > n or _plausible(data, nxt, from_client):
                    if cand > start:
                        self.junk.count(from_client, cand - start)
                        return cand - start
                    if nxt > n:
                        return n - nxt  # the whole candidate ADU first
                    # back in step
                    if from_client:
                        self.resync_c = False
                    else:
                        self.resync_s = False
                    self._flush_junk(from_client)
                    return self.parse(data, start, from_client, ts)
            pos = cand + 1
        # nothing yet: keep the last bytes, which may start a header
        return self.junk.skip_to_tail(from_client, start, n, MBAP_LEN + 1)

    def _flush_junk(self, from_client: bool) -> None:
        run = self.junk.take(from_client)
        if run is not None:
            fields, ts, frame, _why = run
            ctx = self.ctx
            ctx.emit(
                events.malformed(
                    ctx.conn,
                    "modbus-non-modbus-payload",
                    fields,
                    _NON_MODBUS,
                    ts,
                    frame,
                    from_client,
                )
            )
