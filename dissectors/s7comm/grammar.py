"""S7comm grammar: COTP TPDU headers and S7comm (0x32) PDUs → field records. Standard library only.

Functions read ``data[off:end]`` and fill a record dict; they return anomaly ids. A field that
does not fit is left out, never guessed.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

from .constants import (
    AREAS,
    BLOCK_TYPES,
    CONNECTION_TYPES,
    COTP_CC,
    COTP_CR,
    COTP_DR,
    COTP_ER,
    DATA_SIZES_IN_BITS,
    ERROR_CLASSES,
    FILESYSTEMS,
    FUNCTIONS,
    PI_SERVICES,
    RETURN_CODES,
    ROSCTR,
    TRANSPORT_SIZES,
)

Buffer = bytes | bytearray
Record = dict[str, Any]
Anomalies = tuple[str, ...]

TPKT = Struct(">BBH")  # version, reserved, length
U16 = Struct(">H")
U16X2 = Struct(">HH")
U32 = Struct(">I")
HEADER = Struct(">BBHHHH")  # protocol id, rosctr, redundancy id, pdu reference, param, data
DATA_ITEM = Struct(">BBH")  # return code, transport size, length
_DATA_ITEM = DATA_ITEM.unpack_from
#: return code names by code (every byte value)
RETURN_CODE_NAMES = [RETURN_CODES.get(code, "unknown") for code in range(256)]

NONE: Anomalies = ()
INVALID_LENGTH: Anomalies = ("s7comm.invalid_length",)
ITEM_COUNT_MISMATCH: Anomalies = ("s7comm.item_count_mismatch",)
UNKNOWN_FUNCTION: Anomalies = ("s7comm.unknown_function",)
UNKNOWN_ROSCTR: Anomalies = ("s7comm.unknown_rosctr",)
MAX_ITEMS = 256  # items decoded per PDU (a PDU of 960 bytes holds at most ~80)
MAX_VALUE_BYTES = 64  # bytes of a written or read value kept (as hex)


def tsap_text(value: int) -> str:
    """A TSAP as Wireshark shows it: ``0x0102``."""
    return f"0x{value:04x}"


def decode_cotp_connect(rec: Record, data: Buffer, off: int, end: int, kind: int) -> Anomalies:
    """CR / CC / DR / ER: references, class, TSAPs, TPDU size, reason."""
    if end - off < 6:
        return ("s7comm.invalid_cotp_length",)
    rec["dst_ref"], rec["src_ref"] = U16X2.unpack_from(data, off + 2)
    if kind == COTP_DR:
        if end - off >= 7:
            rec["reason"] = data[off + 6]
        return NONE
    if kind == COTP_ER:
        rec["cause"] = data[off + 4]
        return NONE
    if kind not in (COTP_CR, COTP_CC) or end - off < 7:
        return NONE
    rec["class"] = data[off + 6] >> 4
    pos = off + 7
    while pos + 2 <= end:
        code, length = data[pos], data[pos + 1]
        value = data[pos + 2 : pos + 2 + length]
        if len(value) < length:
            return ("s7comm.invalid_cotp_length",)
        if code == 0xC0 and length == 1:
            rec["tpdu_size"] = 1 << value[0]
        elif code in (0xC1, 0xC2) and length == 2:
            tsap = U16.unpack_from(value)[0]
            rec["src_tsap" if code == 0xC1 else "dst_tsap"] = tsap_text(tsap)
            if code == 0xC2:
                rec["connection_type"] = CONNECTION_TYPES.get(value[0], f"0x{value[0]:02x}")
                rec["rack"], rec["slot"] = value[1] >> 5, value[1] & 0x1F
        pos += 2 + length
    return NONE


def decode_header(rec: Record, data: Buffer, off: int, end: int) -> tuple[int, int, Anomalies]:
    """The S7comm header (10 bytes, 12 with an error for ack / ack_data): fills rosctr,
    pdu_reference, error class and code; returns (parameter offset, data offset, anomalies)."""
    _pid, rosctr, _red, ref, plen, dlen = HEADER.unpack_from(data, off)
    rec["rosctr"] = rosctr
    rec["rosctr_name"] = ROSCTR.get(rosctr, "unknown")
    rec["pdu_reference"] = ref
    hlen = 12 if rosctr in (2, 3) else 10
    anomalies = NONE if rosctr in ROSCTR else UNKNOWN_ROSCTR
    if hlen == 12:
        if end - off < 12:
            return end, end, anomalies + INVALID_LENGTH
        cls, code = data[off + 10], data[off + 11]
        rec["error_class"], rec["error_code"] = cls, code
        if cls:
            rec["error"] = ERROR_CLASSES.get(cls, "unknown")
    param = off + hlen
    if param + plen + dlen != end:
        anomalies += INVALID_LENGTH
    return param, min(param + plen, end), anomalies


# -- job / ack_data parameters ---------------------------------------------------------------
def _setup(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    if end - off < 8:
        return INVALID_LENGTH
    rec["max_amq_calling"], rec["max_amq_called"] = U16X2.unpack_from(data, off + 2)
    rec["pdu_size"] = U16.unpack_from(data, off + 6)[0]
    return NONE


def _var_items(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """Read / write var job parameter: the item count and every S7ANY item's address."""
    if end - off < 2:
        return INVALID_LENGTH
    count = data[off + 1]
    rec["item_count"] = count
    items: list[Record] = []
    pos = off + 2
    anomalies = NONE
    while pos < end and len(items) < MAX_ITEMS:
        if pos + 2 > end or data[pos] != 0x12:
            anomalies = INVALID_LENGTH
            break
        spec_len = data[pos + 1]
        nxt = pos + 2 + spec_len
        if nxt > end:
            anomalies = INVALID_LENGTH
            break
        syntax = data[pos + 2]
        item: Record = {"syntax_id": syntax}
        if syntax == 0x10 and spec_len >= 10:  # S7ANY
            size = data[pos + 3]
            length, db = U16X2.unpack_from(data, pos + 4)
            area = data[pos + 8]
            address = data[pos + 9] << 16 | data[pos + 10] << 8 | data[pos + 11]
            item.update(
                transport_size=size,
                transport_size_name=TRANSPORT_SIZES.get(size, "unknown"),
                length=length,
                db=db,
                area=area,
                area_name=AREAS.get(area, "unknown"),
                byte=address >> 3,
                bit=address & 7,
            )
        items.append(item)
        pos = nxt
    rec["items"] = items
    if len(items) != count and not anomalies:
        anomalies = ITEM_COUNT_MISMATCH
    return anomalies


#: a polling HMI sends the same read/write var parameter again and again: its decoded items,
#: keyed by the parameter bytes (the lists are shared between records: read-only)
_ITEMS_CACHE: dict[bytes, tuple[int, list[Record], Anomalies]] = {}
_ITEMS_CACHE_MAX = 4096


def _cached_var_items(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    key = bytes(data[off:end])
    hit = _ITEMS_CACHE.get(key)
    if hit is None:
        anomalies = _var_items(rec, data, off, end)
        if "item_count" in rec:
            if len(_ITEMS_CACHE) >= _ITEMS_CACHE_MAX:
                _ITEMS_CACHE.clear()
            _ITEMS_CACHE[key] = (rec["item_count"], rec["items"], anomalies)
        return anomalies
    rec["item_count"], rec["items"], anomalies = hit
    return anomalies


#: read var parameters seen before without anomaly → the job record they make (but its reference)
READ_JOBS: dict[bytes, Record] = {}


def read_job_seen(data: Buffer, off: int, end: int) -> Record | None:
    """A copy of the record of a read var job whose parameter ``data[off:end]`` was decoded
    before without anomaly; the caller adds the PDU reference. None if not seen."""
    key = bytes(data[off:end])
    template = READ_JOBS.get(key)
    if template is None:
        hit = _ITEMS_CACHE.get(key)
        if hit is None or hit[2]:
            return None
        if len(READ_JOBS) >= _ITEMS_CACHE_MAX:
            READ_JOBS.clear()
        template = READ_JOBS[key] = {
            "rosctr": 1,
            "rosctr_name": "job",
            "pdu_reference": 0,
            "function": 0x04,
            "function_name": "read_var",
            "item_count": hit[0],
            "items": hit[1],
        }
    return template.copy()


def read_values(rec: Record, data: Buffer, off: int, end: int) -> Anomalies:
    """A read var ack_data's data items into ``rec['values']``."""
    return _data_items(rec, data, off, end, rec["item_count"], "values")


def _data_items(
    rec: Record, data: Buffer, off: int, end: int, count: int | None, key: str
) -> Anomalies:
    """Read var ack_data / write var job data: per item return code, size and value."""
    items: list[Record] = []
    pos = off
    anomalies = NONE
    unpack = _DATA_ITEM
    while pos + 4 <= end and len(items) < MAX_ITEMS:
        code, size, length = unpack(data, pos)
        nbytes = (length + 7) >> 3 if size in DATA_SIZES_IN_BITS else length
        start = pos + 4
        items.append(
            {
                "return_code": code,
                "return_code_name": RETURN_CODE_NAMES[code],
                "transport_size": size,
                "length": length,
                "value": data[start : min(start + nbytes, start + MAX_VALUE_BYTES, end)].hex(),
            }
        )
        pos = start + nbytes
        if nbytes & 1 and pos < end:
            pos += 1  # fill byte after an odd-length item that is not the last
    if pos not in (end, end + 1) and not anomalies:
        anomalies = INVALID_LENGTH
    rec[key] = items
    if count is not None and len(items) != count:
        anomalies += ITEM_COUNT_MISMATCH
    return anomalies


def _digits(text: str) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also accepts latin-1's superscripts)."""
    return text.isascii() and text.isdigit()


def _file_name(rec: Record, data: Buffer, pos: int, end: int) -> int:
    """A block file name (``_0A00001P``): its length byte at ``pos``; returns the next offset."""
    if pos >= end:
        return end
    length = data[pos]
    raw = bytes(data[pos + 1 : min(pos + 1 + length, end)])
    name = raw.decode("latin-1")
    rec["filename"] = name
    if len(name) >= 9 and name[0] == "_":
        rec["block_type"] = BLOCK_TYPES.get(name[1:3], name[1:3])
        if _digits(name[3:8]):
            rec["block_number"] = int(name[3:8])
            rec["block"] = f"{rec['block_type']}{rec['block_number']}"
        rec["filesystem"] = FILESYSTEMS.get(name[8], name[8])
    return pos + 1 + length


def _download(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    """Request download / download block / download ended (job: the block's file name)."""
    if end - off < 2:
        return INVALID_LENGTH if job else NONE  # an ack may carry the function alone
    rec["status"] = data[off + 1]
    if job and end - off >= 9:
        pos = _file_name(rec, data, off + 8, end)
        if rec["function"] == 0x1A and pos + 14 <= end:
            # part 2: length, unknown char, load memory length and MC7 length (6 ASCII digits)
            lengths = bytes(data[pos + 2 : pos + 14]).decode("latin-1")
            if _digits(lengths[:6].strip()):
                rec["load_memory_length"] = int(lengths[:6])
            if _digits(lengths[6:].strip()):
                rec["mc7_length"] = int(lengths[6:])
    return NONE


def _upload(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    """Start upload / upload / end upload: upload id, and the file name of a start."""
    if end - off < 2:
        return INVALID_LENGTH if job else NONE  # an ack may carry the function alone
    rec["status"] = data[off + 1]
    if end - off >= 8:
        rec["upload_id"] = U32.unpack_from(data, off + 4)[0]
    fn = rec["function"]
    if fn == 0x1D and job and end - off >= 9:
        _file_name(rec, data, off + 8, end)
    elif fn == 0x1D and not job and end - off >= 9:
        length = data[off + 8]
        text = bytes(data[off + 9 : min(off + 9 + length, end)]).decode("latin-1")
        if _digits(text.strip()):
            rec["block_length"] = int(text)
    return NONE


def _pi_service(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    """PI service: the service name (``_INSE``, ``P_PROGRAM``…) and its argument block."""
    if not job or end - off < 11:
        return NONE if not job else INVALID_LENGTH
    plen = U16.unpack_from(data, off + 8)[0]
    block = bytes(data[off + 10 : min(off + 10 + plen, end)])
    pos = off + 10 + plen
    if pos >= end:
        return INVALID_LENGTH
    slen = data[pos]
    service = bytes(data[pos + 1 : min(pos + 1 + slen, end)]).decode("latin-1")
    rec["pi_service"] = service
    rec["pi_service_name"] = PI_SERVICES.get(service, "nc_service" if service[:3] == "_N_" else "")
    if service in ("_INSE", "_DELE") and len(block) >= 2:
        count = block[0]
        names = [block[2 + 8 * i : 10 + 8 * i].decode("latin-1") for i in range(min(count, 64))]
        rec["pi_blocks"] = [n for n in names if n]
        blocks = []
        for name in rec["pi_blocks"]:
            entry: Record = {"block_type": BLOCK_TYPES.get(name[:2], name[:2])}
            if _digits(name[2:7]):
                entry["block_number"] = int(name[2:7])
                entry["block"] = f"{entry['block_type']}{entry['block_number']}"
            if len(name) >= 8:
                entry["filesystem"] = FILESYSTEMS.get(name[7], name[7])
            blocks.append(entry)
        rec["blocks"] = blocks
        if blocks and "block" in blocks[0]:
            rec["block"] = blocks[0]["block"]
    elif block:
        rec["pi_arguments"] = block.decode("latin-1")
        if service == "P_PROGRAM":
            rec["restart"] = "cold" if block.strip().startswith(b"C") else "warm"
    elif service == "P_PROGRAM":
        rec["restart"] = "warm"
    return NONE if pos + 1 + slen == end else INVALID_LENGTH


def _plc_stop(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    if not job:
        return NONE
    if end - off < 8:
        return INVALID_LENGTH
    slen = data[off + 6]
    rec["pi_service"] = bytes(data[off + 7 : min(off + 7 + slen, end)]).decode("latin-1")
    return NONE


def _cpu_services(rec: Record, data: Buffer, off: int, end: int, job: bool) -> Anomalies:
    return NONE


PARAMETERS = {
    0xF0: _setup,
    0x1A: _download,
    0x1B: _download,
    0x1C: _download,
    0x1D: _upload,
    0x1E: _upload,
    0x1F: _upload,
    0x28: _pi_service,
    0x29: _plc_stop,
    0x00: _cpu_services,
}


def decode_job(rec: Record, data: Buffer, poff: int, doff: int, end: int) -> Anomalies:
    """A job (ROSCTR 1) or ack_data (ROSCTR 3) PDU's parameter ``data[poff:doff]`` and data
    ``data[doff:end]``, as the request (``rec['rosctr'] == 1``) or the response."""
    if doff <= poff:
        return NONE
    fn = data[poff]
    rec["function"] = fn
    name = FUNCTIONS.get(fn)
    rec["function_name"] = name if name is not None else "unknown"
    job = rec["rosctr"] == 1
    if fn == 0x04 or fn == 0x05:
        if job:
            anomalies = _cached_var_items(rec, data, poff, doff)
            if fn == 0x05:
                anomalies += _data_items(rec, data, doff, end, rec.get("item_count"), "values")
            return anomalies
        if doff - poff < 2:
            return INVALID_LENGTH
        count = data[poff + 1]
        rec["item_count"] = count
        if fn == 0x04:
            return _data_items(rec, data, doff, end, count, "values")
        codes = [data[i] for i in range(doff, min(end, doff + MAX_ITEMS))]
        rec["return_codes"] = codes
        return NONE if len(codes) == count else ITEM_COUNT_MISMATCH
    decode = PARAMETERS.get(fn)
    if decode is None:
        return UNKNOWN_FUNCTION
    anomalies = decode(rec, data, poff, doff, job)
    if fn in (0x1B, 0x1E) and not job and end - doff >= 4:
        rec["block_data_length"] = U16.unpack_from(data, doff)[0]
    return anomalies
