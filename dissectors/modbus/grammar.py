"""Modbus PDU grammar: bytes → field records. Standard library only.

``decode_request`` / ``decode_response`` read the PDU data of one ADU, ``data[off:end]`` (``off``
is the first byte after the function code), into a record dict, and return the anomaly ids found.
A field that does not fit is left out, never guessed. Addresses are the protocol's 0-based
reference numbers, as Wireshark shows them; registers are unsigned 16-bit, coils booleans.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any

from .constants import (
    DEVICE_ID_OBJECTS,
    DIAGNOSTICS,
    EXCEPTIONS,
    MBAP_LEN,
    MEI_TYPES,
    READ_DEVICE_ID_CODES,
    UMAS_FUNCTIONS,
)

Buffer = bytes | bytearray
Record = dict[str, Any]
Anomalies = tuple[str, ...]

MBAP = Struct(">HHHB")  # transaction id, protocol id, length, unit id
U16 = Struct(">H")
U16X2 = Struct(">HH")
U16X3 = Struct(">HHH")
U16X4 = Struct(">HHHH")
_REGS: dict[int, Struct] = {n: Struct(f">{n}H") for n in range(126)}
#: each byte value as its eight coils, least significant bit first
BITS = [tuple(bool(b >> i & 1) for i in range(8)) for b in range(256)]

NONE: Anomalies = ()
INVALID_LENGTH: Anomalies = ("modbus.invalid_length",)
VALUE_MISMATCH: Anomalies = ("modbus.value_mismatch",)
BOTH: Anomalies = ("modbus.invalid_length", "modbus.value_mismatch")
INVALID_QUANTITY: Anomalies = ("modbus.invalid_quantity",)
INVALID_VALUE: Anomalies = ("modbus.invalid_value",)
INVALID_EXCEPTION: Anomalies = ("modbus.invalid_exception_code",)

#: valid quantity ranges of reads and multiple writes
QUANTITY_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125, 15: 1968, 16: 123}


def registers(data: Buffer, off: int, count: int) -> list[int]:
    """``count`` big-endian unsigned 16-bit registers from ``data[off:]``."""
    s = _REGS.get(count)
    if s is None:
        s = Struct(f">{count}H")
    return list(s.unpack_from(data, off))


def coils(data: Buffer, off: int, nbytes: int, count: int) -> list[bool]:
    """``count`` bits (least significant bit of the first byte first) from ``nbytes`` bytes."""
    out: list[bool] = []
    for b in data[off : off + nbytes]:
        out.extend(BITS[b])
    del out[count:]
    return out


def _check(size: int, want: int) -> Anomalies:
    return NONE if size == want else INVALID_LENGTH


def _mismatch(length_ok: bool, values_ok: bool) -> Anomalies:
    if length_ok:
        return NONE if values_ok else VALUE_MISMATCH
    return INVALID_LENGTH if values_ok else BOTH


def _words_or_hex(rec: Record, data: Buffer, off: int, end: int) -> None:
    """Diagnostic data: 16-bit words when the length is even, else hex."""
    n = end - off
    if n <= 0:
        return
    if n % 2 == 0:
        rec["values"] = registers(data, off, n // 2)
    else:
        rec["data"] = bytes(data[off:end]).hex()


# -- requests (client → server) ---------------------------------------------------------------
def _req_read(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    rec["address"], quantity = U16X2.unpack_from(data, off)
    rec["quantity"] = quantity
    anomalies = _check(end - off, 4)
    if not 1 <= quantity <= QUANTITY_LIMITS[rec["function_code"]]:
        anomalies += INVALID_QUANTITY
    return anomalies


def _req_write_single_coil(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    rec["address"], value = U16X2.unpack_from(data, off)
    rec["quantity"] = 1
    rec["values"] = [value == 0xFF00]
    anomalies = _check(end - off, 4)
    if value not in (0, 0xFF00):
        rec["raw_value"] = value
        anomalies += INVALID_VALUE
    return anomalies


def _req_write_single_register(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    rec["address"], value = U16X2.unpack_from(data, off)
    rec["quantity"] = 1
    rec["values"] = [value]
    return _check(end - off, 4)


def _req_empty(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    return _check(end - off, 0)


def _diagnostics(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 2:
        return INVALID_LENGTH
    sub = U16.unpack_from(data, off)[0]
    rec["sub_function"] = sub
    rec["sub_function_name"] = DIAGNOSTICS.get(sub, "reserved")
    _words_or_hex(rec, data, off + 2, end)
    # every defined sub-function carries one 16-bit data word, except return query data (any)
    return NONE if sub == 0 or end - off == 4 else INVALID_LENGTH


def _req_write_multiple_coils(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 5:
        return INVALID_LENGTH
    address, quantity = U16X2.unpack_from(data, off)
    count = data[off + 4]
    rec["address"], rec["quantity"], rec["byte_count"] = address, quantity, count
    have = min(count, end - off - 5)
    rec["values"] = coils(data, off + 5, have, min(quantity, have * 8))
    anomalies = _mismatch(end - off == 5 + count, count == (quantity + 7) // 8)
    if not 1 <= quantity <= QUANTITY_LIMITS[15]:
        anomalies += INVALID_QUANTITY
    return anomalies


def _req_write_multiple_registers(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 5:
        return INVALID_LENGTH
    address, quantity = U16X2.unpack_from(data, off)
    count = data[off + 4]
    rec["address"], rec["quantity"], rec["byte_count"] = address, quantity, count
    have = min(count, end - off - 5) // 2
    rec["values"] = registers(data, off + 5, have)
    anomalies = _mismatch(end - off == 5 + count, count == 2 * quantity)
    if not 1 <= quantity <= QUANTITY_LIMITS[16]:
        anomalies += INVALID_QUANTITY
    return anomalies


def _req_read_file_record(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    records = []
    pos, stop = off + 1, min(end, off + 1 + count)
    while pos + 7 <= stop:
        number, record, length = U16X3.unpack_from(data, pos + 1)
        records.append(
            {
                "reference_type": data[pos],
                "file_number": number,
                "record_number": record,
                "record_length": length,
            }
        )
        pos += 7
    rec["file_records"] = records
    ok = end - off == 1 + count and count % 7 == 0
    return NONE if ok else INVALID_LENGTH


def _write_file_records(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """FC 21 request and response (the response echoes the request)."""
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    records = []
    pos, stop = off + 1, min(end, off + 1 + count)
    while pos + 7 <= stop:
        number, record, length = U16X3.unpack_from(data, pos + 1)
        words = min(length, (stop - pos - 7) // 2)
        records.append(
            {
                "reference_type": data[pos],
                "file_number": number,
                "record_number": record,
                "record_length": length,
                "values": registers(data, pos + 7, words),
            }
        )
        pos += 7 + 2 * length
    rec["file_records"] = records
    return NONE if end - off == 1 + count and pos == stop else INVALID_LENGTH


def _mask_write(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """FC 22 request and response (the response echoes the request)."""
    if end - off < 6:
        return INVALID_LENGTH
    rec["address"], rec["and_mask"], rec["or_mask"] = U16X3.unpack_from(data, off)
    rec["quantity"] = 1
    return _check(end - off, 6)


def _req_read_write_multiple(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 9:
        return INVALID_LENGTH
    address, quantity, waddress, wquantity = U16X4.unpack_from(data, off)
    count = data[off + 8]
    rec["address"], rec["quantity"] = address, quantity
    rec["write_address"], rec["write_quantity"], rec["byte_count"] = waddress, wquantity, count
    rec["write_values"] = registers(data, off + 9, min(count, end - off - 9) // 2)
    anomalies = _mismatch(end - off == 9 + count, count == 2 * wquantity)
    if not 1 <= quantity <= 125 or not 1 <= wquantity <= 121:
        anomalies += INVALID_QUANTITY
    return anomalies


def _req_read_fifo(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 2:
        return INVALID_LENGTH
    rec["address"] = U16.unpack_from(data, off)[0]
    return _check(end - off, 2)


def _req_mei(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    mei = data[off]
    rec["mei_type"] = mei
    rec["mei"] = MEI_TYPES.get(mei, "reserved")
    if mei == 14:
        if end - off < 3:
            return INVALID_LENGTH
        code = data[off + 1]
        rec["read_device_id_code"] = code
        rec["read_device_id"] = READ_DEVICE_ID_CODES.get(code, "reserved")
        rec["object_id"] = data[off + 2]
        return _check(end - off, 3)
    if end - off > 1:
        rec["data"] = bytes(data[off + 1 : end]).hex()
    return NONE


def _umas(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """Schneider UMAS (FC 90): pairing key, UMAS function code (or return code), data."""
    if end - off < 2:
        return INVALID_LENGTH
    code = data[off + 1]
    rec["sub_function"] = code
    rec["sub_function_name"] = UMAS_FUNCTIONS.get(code, "unknown")
    rec["umas"] = {"pair_key": data[off], "function_code": code}
    if end - off > 2:
        rec["data"] = bytes(data[off + 2 : end]).hex()
    return NONE


def decode_raw(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """User-defined, reserved and unassigned codes: the data kept as hex."""
    if end > off:
        rec["data"] = bytes(data[off:end]).hex()
    return NONE


Decoder = Callable[[Record, Buffer, int, int], Anomalies]

REQUESTS: dict[int, Decoder] = {
    1: _req_read,
    2: _req_read,
    3: _req_read,
    4: _req_read,
    5: _req_write_single_coil,
    6: _req_write_single_register,
    7: _req_empty,
    8: _diagnostics,
    11: _req_empty,
    12: _req_empty,
    15: _req_write_multiple_coils,
    16: _req_write_multiple_registers,
    17: _req_empty,
    20: _req_read_file_record,
    21: _write_file_records,
    22: _mask_write,
    23: _req_read_write_multiple,
    24: _req_read_fifo,
    43: _req_mei,
    90: _umas,
}


def decode_request(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """Decode a request's PDU data into ``rec`` (which holds ``function_code``)."""
    return REQUESTS.get(rec["function_code"], decode_raw)(rec, data, off, end)


# -- responses (server → client); ``req`` is the matched request record or None -----------------
def _resp_bits(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    have = min(count, end - off - 1)
    quantity = req.get("quantity") if req is not None else None
    bits = have * 8 if quantity is None else min(quantity, have * 8)
    rec["values"] = coils(data, off + 1, have, bits)
    values_ok = quantity is None or count == (quantity + 7) // 8
    return _mismatch(end - off == 1 + count, values_ok)


def _resp_registers(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    rec["values"] = registers(data, off + 1, min(count, end - off - 1) // 2)
    quantity = req.get("quantity") if req is not None else None
    values_ok = count % 2 == 0 if quantity is None else count == 2 * quantity
    return _mismatch(end - off == 1 + count, values_ok)


def _resp_echo(decode: Decoder) -> Callable[[Record, Buffer, int, int, Record | None], Anomalies]:
    def echo(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
        return decode(rec, data, off, end)

    return echo


def _resp_write_multiple(
    rec: Record, data: Buffer, off: int, end: int, req: Record | None
) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    rec["address"], rec["quantity"] = U16X2.unpack_from(data, off)
    return _check(end - off, 4)


def _resp_exception_status(
    rec: Record, data: Buffer, off: int, end: int, req: Record | None
) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    rec["values"] = [data[off]]
    return _check(end - off, 1)


def _resp_event_counter(
    rec: Record, data: Buffer, off: int, end: int, req: Record | None
) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    rec["status"], rec["event_count"] = U16X2.unpack_from(data, off)
    return _check(end - off, 4)


def _resp_event_log(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 7:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    rec["status"], rec["event_count"], rec["message_count"] = U16X3.unpack_from(data, off + 1)
    rec["events"] = list(data[off + 7 : min(end, off + 1 + count)])
    return NONE if end - off == 1 + count and count >= 6 else INVALID_LENGTH


def _resp_server_id(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    body = bytes(data[off + 1 : min(end, off + 1 + count)])
    if body:
        server_id, run = body[:-1], body[-1]
        rec["server_id"] = server_id.hex()
        rec["run_indicator"] = "on" if run == 0xFF else "off" if run == 0 else run
        text = server_id.decode("latin-1").strip("\x00 ")
        if text and text.isprintable():
            rec["server_id_text"] = text
    return _check(end - off, 1 + count)


def _resp_read_file_record(
    rec: Record, data: Buffer, off: int, end: int, req: Record | None
) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    count = data[off]
    rec["byte_count"] = count
    records = []
    pos, stop = off + 1, min(end, off + 1 + count)
    while pos + 2 <= stop:
        length = data[pos]
        if length < 1:
            break
        words = min(length - 1, stop - pos - 2) // 2
        records.append({"reference_type": data[pos + 1], "values": registers(data, pos + 2, words)})
        pos += 1 + length
    rec["file_records"] = records
    return NONE if end - off == 1 + count and pos == stop else INVALID_LENGTH


def _resp_fifo(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 4:
        return INVALID_LENGTH
    count, fifo = U16X2.unpack_from(data, off)
    rec["byte_count"], rec["fifo_count"] = count, fifo
    rec["values"] = registers(data, off + 4, min(fifo, (end - off - 4) // 2))
    return _mismatch(end - off == 2 + count, count == 2 + 2 * fifo and fifo <= 31)


def _resp_mei(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    if end - off < 1:
        return INVALID_LENGTH
    mei = data[off]
    rec["mei_type"] = mei
    rec["mei"] = MEI_TYPES.get(mei, "reserved")
    if mei != 14:
        if end - off > 1:
            rec["data"] = bytes(data[off + 1 : end]).hex()
        return NONE
    if end - off < 6:
        return INVALID_LENGTH
    code = data[off + 1]
    rec["read_device_id_code"] = code
    rec["read_device_id"] = READ_DEVICE_ID_CODES.get(code, "reserved")
    rec["conformity_level"] = data[off + 2]
    rec["more_follows"] = data[off + 3] == 0xFF
    rec["next_object_id"] = data[off + 4]
    count = data[off + 5]
    objects: dict[str, str] = {}
    pos = off + 6
    for _ in range(count):
        if pos + 2 > end:
            break
        oid, length = data[pos], data[pos + 1]
        if pos + 2 + length > end:
            pos = end + 1
            break
        name = DEVICE_ID_OBJECTS.get(oid, f"object_{oid:#04x}")
        objects[name] = bytes(data[pos + 2 : pos + 2 + length]).decode("latin-1")
        pos += 2 + length
    rec["objects"] = objects
    return NONE if pos == end and len(objects) == count else INVALID_LENGTH


def _resp_umas(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    anomalies = _umas(rec, data, off, end)
    if req is not None and "sub_function" in req and "umas" in rec:
        # a UMAS response carries a return code (0xFE ok / 0xFD error) where the request had
        # the UMAS function: keep the request's function, the code as the response status
        rec["umas"]["return_code"] = rec["umas"].pop("function_code")
        rec["sub_function"] = req["sub_function"]
        rec["sub_function_name"] = req["sub_function_name"]
    return anomalies


ResponseDecoder = Callable[[Record, Buffer, int, int, Record | None], Anomalies]

RESPONSES: dict[int, ResponseDecoder] = {
    1: _resp_bits,
    2: _resp_bits,
    3: _resp_registers,
    4: _resp_registers,
    5: _resp_echo(_req_write_single_coil),
    6: _resp_echo(_req_write_single_register),
    7: _resp_exception_status,
    8: _resp_echo(_diagnostics),
    11: _resp_event_counter,
    12: _resp_event_log,
    15: _resp_write_multiple,
    16: _resp_write_multiple,
    17: _resp_server_id,
    20: _resp_read_file_record,
    21: _resp_echo(_write_file_records),
    22: _resp_echo(_mask_write),
    23: _resp_registers,
    24: _resp_fifo,
    43: _resp_mei,
    90: _resp_umas,
}


def decode_raw_response(
    rec: Record, data: Buffer, off: int, end: int, req: Record | None
) -> Anomalies:
    return decode_raw(rec, data, off, end)


def decode_response(rec: Record, data: Buffer, off: int, end: int, req: Record | None) -> Anomalies:
    """Decode a normal (non-exception) response's PDU data into ``rec``."""
    return RESPONSES.get(rec["function_code"], decode_raw_response)(rec, data, off, end, req)


def decode_exception(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """An exception response: one exception code byte."""
    if end - off < 1:
        return INVALID_LENGTH
    code = data[off]
    rec["exception_code"] = code
    name = EXCEPTIONS.get(code)
    rec["exception"] = name if name is not None else "unknown"
    anomalies = _check(end - off, 1)
    return anomalies if name is not None else anomalies + INVALID_EXCEPTION


def looks_like_mbap(data: Buffer, pos: int, valid_codes: frozenset[int]) -> bool:
    """Could ``data[pos:]`` start an ADU: protocol id 0, sane length, a known function code?"""
    if len(data) - pos < MBAP_LEN + 1:
        return False
    _tid, pid, length, _unit = MBAP.unpack_from(data, pos)
    return pid == 0 and 2 <= length <= 254 and data[pos + MBAP_LEN] in valid_codes
