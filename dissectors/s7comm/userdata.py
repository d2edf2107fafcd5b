"""S7comm userdata (ROSCTR 7) grammar: parameter and data part → field records. Standard library only.

``decode_userdata`` reads one userdata PDU's parameter ``data[param_off:param_off+param_len]`` and
data part ``data[data_off:data_off+data_len]`` into a record dict and returns the anomaly ids
found. A field that does not fit is left out, never guessed; arbitrary bytes never raise.

Layout (as tshark 4.0 dissects it):

* parameter: head ``00 01 12``, the length of the rest (4 or 8), the method (0x11 request,
  0x12 response), type (high nibble: 0 push, 4 request, 8 response; 3/7/11 the NC variants) and
  function group (low nibble), subfunction, sequence number; with method 0x12 also the data unit
  reference, the last-data-unit flag (0 yes, 1 no) and a 16-bit error code. Two forms that
  Wireshark learnt after 4.0 are read too: the mode-transition push with parameter function 0x01
  instead of the head (the mode at byte 6), and USEND with syntax id 0x13 in place of the method
  (the R_ID at bytes 6..9).
* data part: return code, transport size, length, then the function's payload.

A response too long for one PDU is split: every part but the last has last-data-unit 1, and the
parts share a data unit reference (NC programming: the sequence number; PBC: the R_ID). Like
Wireshark, only the last part is decoded, over the joined payload, when the caller passes a
:class:`UserdataReassembly` (one per connection; Wireshark also decodes a lone last part, as if
it were the whole). Without one, a part with a non-zero data unit reference is not decoded at
all (a payload sent in one PDU has reference 0): its function fields stay out rather than being
read from the middle of a list.

Identity (SZL 0x0011 module identification, 0x001C component identification) is kept as
``szl_records``; :func:`identity_of` turns them into asset identity fields. Passwords (function
group 5) are never stored: only ``password_present``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from struct import Struct
from typing import Any

Buffer = bytes | bytearray
Record = dict[str, Any]
Anomalies = tuple[str, ...]

PARAM = Struct(">3sBBBBB")  # head, length, method, type|group, subfunction, sequence
PARAM_EXT = Struct(">BBH")  # data unit reference, last data unit, error code
DATA_HEAD = Struct(">BBH")  # return code, transport size, length
U16 = Struct(">H")
U16X2 = Struct(">HH")
U16X3 = Struct(">HHH")
U16X4 = Struct(">HHHH")
U32 = Struct(">I")
SZL_0011 = Struct(">H20sHHH")  # index, MlfB, BGTyp, Ausbg, Ausbe (28 bytes)
BLOCK_COUNT = Struct(">2sH")  # list blocks: type (2 ASCII), count
BLOCK_ENTRY = Struct(">HBB")  # list blocks of type: number, flags, language
BLOCK_INFO = Struct(">2sHH2sBBBBHII6s6sHHHH8s8s8sBBHII")  # get block info response (78 bytes)
S7_TIME = Struct(">IH")  # ms since midnight, days since 1984-01-01
DIAG_MSG = Struct(">HBBHHI")  # event id, priority class, OB, DatID, info 1, info 2

HEAD = b"\x00\x01\x12"
SZL_RECORD_CAP = 1024  # SZL records decoded per PDU
BLOCK_CAP = 256  # block numbers kept per list-blocks-of-type response
LIST_CAP = 64  # block types kept per list-blocks response
ALARM_CAP = 64  # alarm objects read per PDU
EPOCH_1984 = datetime(1984, 1, 1)

NONE: Anomalies = ()
INVALID_USERDATA = "s7comm.invalid_userdata"
UNKNOWN_FUNCTION = "s7comm.unknown_userdata_function"
INVALID_SZL = "s7comm.invalid_szl"
TRUNCATED = "s7comm.truncated_data"

# base types (the NC variants 3/7/11 share the low two bits 0b11)
PUSH, REQUEST, RESPONSE = 0, 4, 8

TYPES: dict[int, str] = {
    0: "push",
    4: "request",
    8: "response",
    3: "nc_push",
    7: "nc_request",
    11: "nc_response",
}

GROUP_MODE, GROUP_TIS, GROUP_CYCLIC, GROUP_BLOCK = 0, 1, 2, 3
GROUP_CPU, GROUP_SECURITY, GROUP_PBC, GROUP_TIME, GROUP_NCPRG = 4, 5, 6, 7, 0xF

#: function groups (the low nibble of the type byte)
GROUPS: dict[int, str] = {
    GROUP_MODE: "mode_transition",
    GROUP_TIS: "programmer_commands",
    GROUP_CYCLIC: "cyclic_data",
    GROUP_BLOCK: "block_functions",
    GROUP_CPU: "cpu_functions",
    GROUP_SECURITY: "security",
    GROUP_PBC: "pbc_bsend",
    GROUP_TIME: "time_functions",
    GROUP_NCPRG: "nc_programming",
}

#: CPU modes of a mode-transition push (its subfunction)
MODES: dict[int, str] = {
    0: "stop",
    1: "warm_restart",
    2: "run",
    3: "hot_restart",
    4: "hold",
    6: "cold_restart",
    9: "run_redundant",
    11: "link_up",
    12: "update",
}

SZL_READ, CPU_MSGS, CPU_DIAG, CPU_AR_SEND, CPU_ALARM_QUERY, CPU_SCAN = 1, 2, 3, 0x10, 0x13, 0x09

#: subfunctions by function group
SUBFUNCTIONS: dict[int, dict[int, str]] = {
    GROUP_MODE: MODES,
    GROUP_TIS: {
        0x01: "block_status",
        0x02: "variable_status",
        0x03: "output_istack",
        0x04: "output_bstack",
        0x05: "output_lstack",
        0x06: "time_measurement",
        0x07: "force_selection",
        0x08: "modify_variable",
        0x09: "force",
        0x0A: "breakpoint",
        0x0B: "exit_hold",
        0x0C: "memory_reset",
        0x0D: "disable_job",
        0x0E: "enable_job",
        0x0F: "delete_job",
        0x10: "read_job_list",
        0x11: "read_job",
        0x12: "replace_job",
        0x13: "block_status_v2",
        0x16: "flash_led",
    },
    GROUP_CYCLIC: {
        0x01: "cyclic_transfer",
        0x04: "unsubscribe",
        0x05: "change_driven_transfer",
        0x07: "change_driven_transfer_modify",
        0x08: "read_record",
    },
    GROUP_BLOCK: {0x01: "list_blocks", 0x02: "list_blocks_of_type", 0x03: "get_block_info"},
    GROUP_CPU: {
        SZL_READ: "read_szl",
        CPU_MSGS: "message_service",
        CPU_DIAG: "diagnostic_message",
        0x05: "alarm8_indication",
        0x06: "notify_indication",
        0x07: "alarm8_lock",
        0x08: "alarm8_unlock",
        CPU_SCAN: "scan_indication",
        0x0B: "alarm_ack",
        0x0C: "alarm_ack_indication",
        0x0D: "alarm_lock_indication",
        0x0E: "alarm_unlock_indication",
        CPU_AR_SEND: "ar_send_indication",
        0x11: "alarm_sq_indication",
        0x12: "alarm_s_indication",
        CPU_ALARM_QUERY: "alarm_query",
        0x16: "notify8_indication",
    },
    GROUP_SECURITY: {0x01: "plc_password", 0x02: "clear_password"},
    GROUP_PBC: {},  # BSEND/BRECV: subfunctions carry no known meaning
    GROUP_TIME: {
        0x01: "read_clock",
        0x02: "set_clock",
        0x03: "read_clock_following",
        0x04: "set_clock_2",
    },
    GROUP_NCPRG: {
        0x01: "request_download",
        0x02: "download_block",
        0x03: "continue_download",
        0x04: "download_ended",
        0x06: "start_upload",
        0x07: "upload",
        0x08: "continue_upload",
    },
}

RETURN_CODES: dict[int, str] = {
    0x00: "reserved",
    0x01: "hardware_fault",
    0x03: "accessing_object_not_allowed",
    0x05: "invalid_address",
    0x06: "data_type_not_supported",
    0x07: "data_type_inconsistent",
    0x0A: "object_does_not_exist",
    0xFF: "success",
}
SUCCESS = 0xFF

#: block types as the two ASCII characters the block functions carry
BLOCK_TYPES: dict[bytes, str] = {
    b"08": "OB",
    b"09": "CMOD",
    b"0A": "DB",
    b"0B": "SDB",
    b"0C": "FC",
    b"0D": "SFC",
    b"0E": "FB",
    b"0F": "SFB",
}
#: block types as one byte (block info response "subblock type")
SUBBLOCK_TYPES: dict[int, str] = {
    0x08: "OB",
    0x0A: "DB",
    0x0B: "SDB",
    0x0C: "FC",
    0x0D: "SFC",
    0x0E: "FB",
    0x0F: "SFB",
}
BLOCK_LANGUAGES: dict[int, str] = {
    0x00: "not_defined",
    0x01: "awl",
    0x02: "kop",
    0x03: "fup",
    0x04: "scl",
    0x05: "db",
    0x06: "graph",
    0x07: "sdb",
    0x08: "cpu_db",
    0x11: "sdb_after_reset",
    0x12: "sdb_routing",
    0x29: "encrypted",
}
FILESYSTEMS: dict[int, str] = {0x50: "passive", 0x41: "active", 0x42: "active_and_passive"}
BLOCK_SECURITY: dict[int, str] = {0: "none", 3: "know_how_protect"}

#: requested / previous mode nibbles of SZL 0x0424 (current mode transition)
SZL_MODES: dict[int, str] = {
    0x1: "stop_update",
    0x2: "stop_memory_reset",
    0x3: "stop_self_initialization",
    0x4: "stop_internal",
    0x5: "startup_complete_restart",
    0x7: "restart",
    0x8: "run",
    0xA: "hold",
    0xD: "defect",
}

#: text fields of SZL 0x001C records by index: (key, text length)
COMPONENT_TEXTS: dict[int, tuple[str, int]] = {
    0x0001: ("system_name", 24),  # name of the automation system (station)
    0x0002: ("module_name", 24),
    0x0003: ("plant_id", 32),  # plant designation (tag)
    0x0004: ("copyright", 26),
    0x0005: ("serial_number", 24),
    0x0007: ("module_type_name", 32),
    0x0008: ("memory_card_serial", 32),
    0x000A: ("oem_copyright", 26),
    0x000B: ("location", 32),
}

#: message service: subscribed event bits
MSG_EVENTS = (
    (0x01, "mode"),
    (0x02, "system_diagnostics"),
    (0x04, "user_defined"),
    (0x80, "alarms"),
)
CYCLE_TIMEBASES: dict[int, str] = {0: "100ms", 1: "1s", 2: "10s"}
ALARM_SYNTAX_IDS = frozenset((0x15, 0x16, 0x19, 0x1C))  # lock/free, indication, ack, notify sets
#: CPU subfunctions whose alarm message starts with an 8-byte timestamp (scan: 2 bytes before it)
ALARM_TIMESTAMPED = frozenset((0x05, 0x0C, 0x11, 0x12, 0x06, 0x16))
ALARM_MAIN = frozenset((0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x11, 0x12, 0x16))


def _text(raw: Buffer) -> str:
    """A fixed-length ASCII field: up to the first NUL, trailing blanks dropped."""
    cut = raw.find(0)
    if cut >= 0:
        raw = raw[:cut]
    return bytes(raw).decode("ascii", "replace").rstrip()


def _bcd_time(raw: Buffer, ten: bool) -> str | None:
    """An S7 BCD timestamp as ISO 8601 text (local PLC time, no zone): 10 bytes with a reserved
    first byte and a two-byte year (``ten``), else 8 bytes; None when a digit is not BCD."""
    digits = bytes(raw).hex()
    century = 19
    if ten:
        if not digits[2:4].isdigit():
            return None
        century, digits = int(digits[2:4]), digits[4:]
    if len(digits) < 15 or not digits[:15].isdigit():
        return None
    yy = int(digits[0:2])
    year = 2000 + yy if yy < 89 else century * 100 + yy
    month, day = int(digits[2:4]), int(digits[4:6])
    hour, minute, second = int(digits[6:8]), int(digits[8:10]), int(digits[10:12])
    ms = int(digits[12:15])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms:03d}"


def _s7_time(raw: Buffer) -> str:
    """Block timestamps: ms since midnight and days since 1984-01-01, as ISO 8601 text."""
    msec, days = S7_TIME.unpack_from(raw)
    when = EPOCH_1984 + timedelta(days=days, milliseconds=msec)
    return when.isoformat(timespec="milliseconds")


def version_text(ausbg: int, ausbe: int) -> str | None:
    """A firmware release of SZL 0x0011 (index 7 and up): a letter and three numbers, e.g.
    ``V3.2.6`` from Ausbg 0x5603 and Ausbe 0x0206; None when Ausbg carries no letter."""
    letter = ausbg >> 8
    if not (0x41 <= letter <= 0x5A or 0x61 <= letter <= 0x7A):
        return None
    return f"{chr(letter)}{ausbg & 0xFF}.{ausbe >> 8}.{ausbe & 0xFF}"


# -- reassembly ---------------------------------------------------------------------------------
class UserdataReassembly:
    """The parts of userdata payloads split over several PDUs, for one connection.

    Keyed by (base type, function group, fragment id); bounded: at most ``max_pending``
    unfinished payloads of at most ``max_bytes`` each (the oldest is dropped first)."""

    __slots__ = ("_parts", "max_bytes", "max_pending")

    def __init__(self, max_pending: int = 4, max_bytes: int = 32_768) -> None:
        self._parts: dict[tuple[int, int, int], bytearray] = {}
        self.max_pending = max_pending
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, key: tuple[int, int, int], part: Buffer) -> None:
        """Keep a part that is not the last one."""
        buf = self._parts.get(key)
        if buf is None:
            while len(self._parts) >= self.max_pending:
                del self._parts[next(iter(self._parts))]
            buf = self._parts[key] = bytearray()
        buf += part[: max(0, self.max_bytes - len(buf))]

    def finish(self, key: tuple[int, int, int], last: Buffer) -> tuple[Buffer, bool]:
        """The whole payload ending with ``last``, and whether earlier parts were joined."""
        buf = self._parts.pop(key, None)
        if buf is None:
            return last, False
        buf += last[: max(0, self.max_bytes - len(buf))]
        return buf, True


# -- function payloads ----------------------------------------------------------------------------
#: a function group's payload decoder: (record, payload, base type, subfunction, return code)
Decoder = Callable[[Record, Buffer, int, int, int], list[str]]


def _szl(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """Read SZL: request (id, index) or response (id, index, record length and count, records)."""
    if base == REQUEST:
        if len(p) < 4:
            return [TRUNCATED]
        rec["szl_id"], rec["szl_index"] = U16X2.unpack_from(p)
        return []
    if base != RESPONSE or ret != SUCCESS:
        return []
    if len(p) < 8:
        if len(p) >= 4:
            rec["szl_id"], rec["szl_index"] = U16X2.unpack_from(p)
        return [TRUNCATED]
    szl_id, index, size, count = U16X4.unpack_from(p)
    rec["szl_id"], rec["szl_index"] = szl_id, index
    rec["szl_record_length"], rec["szl_record_count"] = size, count
    avail = len(p) - 8
    if szl_id & 0x0F00 == 0x0F00:  # "header information only": the count, no records
        return [] if avail == 0 else [INVALID_SZL]
    consistent = size * count == avail and (size > 0 or count == 0)
    anomalies = [] if consistent else [INVALID_SZL]
    if not size:
        return anomalies
    n = min(count, avail // size, SZL_RECORD_CAP)
    family = szl_id & 0xFF
    if family == 0x11 and size >= 22:
        rec["szl_records"] = _module_ids(p, n, size)
        if size < SZL_0011.size and INVALID_SZL not in anomalies:
            anomalies.append(INVALID_SZL)  # short records (python-snap7): what fits is kept
    elif family == 0x1C and size >= 34:
        rec["szl_records"] = _components(p, n, size)
    elif family in (0x11, 0x1C) and INVALID_SZL not in anomalies:
        anomalies.append(INVALID_SZL)  # records too short for the list's format
    elif family == 0xA0 and size >= 20:
        rec["diagnostic_events"] = _diagnostic_events(p, n, size)
    elif family == 0x24 and size >= 4 and n:
        # mode transition: event id, 0xff, requested (low nibble) and previous (high) mode
        modes = p[11]
        rec["cpu_mode_code"] = modes & 0xF
        if modes & 0xF in SZL_MODES:
            rec["cpu_mode"] = SZL_MODES[modes & 0xF]
        if modes >> 4 in SZL_MODES:
            rec["cpu_previous_mode"] = SZL_MODES[modes >> 4]
    return anomalies


def _module_ids(p: Buffer, n: int, size: int) -> list[Record]:
    """SZL 0x0011 / 0x0111 records: order number (MlfB), module type id, versions."""
    out: list[Record] = []
    if size >= SZL_0011.size:
        unpack = SZL_0011.unpack_from
        for pos in range(8, 8 + n * size, size):
            index, mlfb, bgtyp, ausbg, ausbe = unpack(p, pos)
            r: Record = {"index": index, "mlfb": _text(mlfb), "module_type_id": bgtyp}
            r["ausbg"], r["ausbe"] = ausbg, ausbe
            version = version_text(ausbg, ausbe)
            if version is not None:
                r["version"] = version
            out.append(r)
        return out
    # shorter records: the index and order number, then each 16-bit field that still fits
    words = ("module_type_id", "ausbg")[: (size - 22) // 2]
    for pos in range(8, 8 + n * size, size):
        r = {"index": U16.unpack_from(p, pos)[0], "mlfb": _text(p[pos + 2 : pos + 22])}
        for i, key in enumerate(words):
            r[key] = U16.unpack_from(p, pos + 22 + 2 * i)[0]
        out.append(r)
    return out


def _diagnostic_events(p: Buffer, n: int, size: int) -> list[Record]:
    """SZL 0x00A0 records (the diagnostic buffer): event id, priority class, OB, time."""
    out: list[Record] = []
    for pos in range(8, 8 + n * size, size):
        event_id, prio, ob, _dat, _i1, _i2 = DIAG_MSG.unpack_from(p, pos)
        r: Record = {"event_id": event_id, "priority_class": prio, "ob_number": ob}
        when = _bcd_time(p[pos + 12 : pos + 20], False)
        if when is not None:
            r["time"] = when
        out.append(r)
    return out


def _components(p: Buffer, n: int, size: int) -> list[Record]:
    """SZL 0x001C / 0x011C records: names, plant id, copyright, serial numbers, OEM ids."""
    out: list[Record] = []
    for pos in range(8, 8 + n * size, size):
        index = U16.unpack_from(p, pos)[0]
        r: Record = {"index": index}
        field = COMPONENT_TEXTS.get(index)
        body = pos + 2
        if field is not None:
            key, length = field
            r[key] = _text(p[body : body + length])
            if index == 0x000A:
                r["oem_id"] = U16.unpack_from(p, body + 26)[0]
                r["oem_additional_id"] = U32.unpack_from(p, body + 28)[0]
        elif index == 0x0009:
            ids = U16X3.unpack_from(p, body)
            r["manufacturer_id"], r["profile_id"], r["profile_specific_type"] = ids
        out.append(r)
    return out


def _block_name(raw: bytes) -> str:
    name = BLOCK_TYPES.get(raw.upper())
    return name if name is not None else raw.decode("ascii", "replace")


def _blocks(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """Block functions: list blocks, list blocks of a type, block info."""
    n = len(p)
    if sub == 0x01:  # list blocks: the response counts blocks per type
        if base == RESPONSE:
            k = min(n // 4, LIST_CAP)
            mv = memoryview(p)[: k * 4]
            rec["block_counts"] = {_block_name(t): c for t, c in BLOCK_COUNT.iter_unpack(mv)}
        return []
    if sub == 0x02:  # list blocks of type
        if base == REQUEST:
            if n < 2:
                return [TRUNCATED]
            rec["block_type"] = _block_name(bytes(p[:2]))
        elif base == RESPONSE:
            k = n // 4
            mv = memoryview(p)[: min(k, BLOCK_CAP) * 4]
            entries = list(BLOCK_ENTRY.iter_unpack(mv))
            rec["block_count"] = k
            rec["blocks"] = [e[0] for e in entries]
            langs = {e[2] for e in entries}
            rec["block_languages"] = sorted(BLOCK_LANGUAGES.get(x, str(x)) for x in langs)
        return []
    if sub == 0x03:  # block info
        if base == REQUEST:
            if n < 8:
                return [TRUNCATED]
            rec["block_type"] = _block_name(bytes(p[:2]))
            digits = bytes(p[2:7])
            if digits.isdigit():
                rec["block_number"] = int(digits)
            else:
                rec["block_number_text"] = digits.decode("ascii", "replace")
            rec["filesystem"] = FILESYSTEMS.get(
                p[7], chr(p[7]) if 0x20 < p[7] < 0x7F else str(p[7])
            )
        elif base == RESPONSE and ret == SUCCESS:
            if n < BLOCK_INFO.size:
                return [TRUNCATED]
            _block_info(rec, p)
        return []
    return []


def _block_info(rec: Record, p: Buffer) -> None:
    (
        _type,
        info_length,
        _unknown2,
        _const3,
        _unknown,
        flags,
        language,
        subblock,
        number,
        load_len,
        security,
        code_ts,
        iface_ts,
        ssb_len,
        add_len,
        local_len,
        mc7_len,
        author,
        family,
        name,
        version,
        _unknown3,
        checksum,
        _res1,
        _res2,
    ) = BLOCK_INFO.unpack_from(p)
    # the type is the "subblock" byte; python-snap7 leaves it 0x41 and puts "0A" up front
    block_type = SUBBLOCK_TYPES.get(subblock) or BLOCK_TYPES.get(bytes(_type).upper())
    if block_type is not None:
        rec["block_type"] = block_type
    rec["subblock_type"] = subblock
    rec["block_number"] = number
    rec["block_info_length"] = info_length
    rec["block_flags"] = flags
    rec["block_language"] = BLOCK_LANGUAGES.get(language, str(language))
    rec["load_memory_length"] = load_len
    rec["block_security"] = BLOCK_SECURITY.get(security, str(security))
    rec["code_timestamp"] = _s7_time(code_ts)
    rec["interface_timestamp"] = _s7_time(iface_ts)
    rec["ssb_length"], rec["add_length"] = ssb_len, add_len
    rec["local_data_length"], rec["mc7_length"] = local_len, mc7_len
    rec["author"], rec["family"], rec["block_name"] = _text(author), _text(family), _text(name)
    rec["block_version"] = f"{version >> 4}.{version & 0xF}"
    rec["block_checksum"] = checksum


def _time(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """Time functions: the clock a read returns or a set carries."""
    carries = (sub in (0x01, 0x03) and base == RESPONSE) or (
        sub in (0x02, 0x04) and base == REQUEST
    )
    if not carries or ret != SUCCESS:
        return []
    if len(p) < 10:
        return [TRUNCATED]
    clock = _bcd_time(p[:10], True)
    if clock is None:
        rec["clock_raw"] = bytes(p[:10]).hex()
        return [INVALID_USERDATA]
    rec["clock"] = clock
    return []


def _security(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """PLC password: only whether one was sent, never the (scrambled) password."""
    if sub == 0x01 and base == REQUEST:
        rec["password_present"] = any(p)
    return []


def _cpu(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    if sub == SZL_READ:
        return _szl(rec, p, base, sub, ret)
    if sub == CPU_MSGS:
        return _message_service(rec, p, base)
    if sub == CPU_DIAG:
        if len(p) < 20:
            return [TRUNCATED]
        event_id, prio, ob, _dat, _i1, _i2 = DIAG_MSG.unpack_from(p)
        rec["event_id"], rec["priority_class"], rec["ob_number"] = event_id, prio, ob
        when = _bcd_time(p[12:20], False)
        if when is not None:
            rec["event_time"] = when
        return []
    if sub == CPU_ALARM_QUERY and base == RESPONSE:
        if len(p) >= 2:
            rec["alarm_function"], rec["alarm_object_count"] = p[0], p[1]
        return []
    if sub in ALARM_MAIN or sub == CPU_ALARM_QUERY:
        return _alarm(rec, p, base, sub)
    return []


def _message_service(rec: Record, p: Buffer, base: int) -> list[str]:
    """Subscription to CPU events: which events, and the subscriber's name."""
    if base == REQUEST:
        if len(p) < 2:
            return [TRUNCATED]
        events = p[0]
        rec["subscribed_events"] = [name for bit, name in MSG_EVENTS if events & bit]
        if len(p) >= 10:
            rec["subscriber"] = _text(p[2:10])
        if events & 0x80 and len(p) > 10:
            rec["alarm_type"] = p[10]
    elif base == RESPONSE and p:
        rec["message_result"] = p[0]
        if len(p) > 2:
            rec["alarm_type"] = p[2]
    return []


def _alarm(rec: Record, p: Buffer, base: int, sub: int) -> list[str]:
    """Alarm / notify messages: timestamp, function, objects and their event ids."""
    pos, n = 0, len(p)
    if sub in ALARM_TIMESTAMPED or sub == CPU_SCAN:
        pos = 2 if sub == CPU_SCAN else 0
        if n < pos + 8:
            return [TRUNCATED]
        when = _bcd_time(p[pos : pos + 8], False)
        if when is not None:
            rec["event_time"] = when
        pos += 8
        if sub == CPU_SCAN:
            pos += 2
    if n < pos + 2:
        return [TRUNCATED]
    rec["alarm_function"], count = p[pos], p[pos + 1]
    rec["alarm_object_count"] = count
    pos += 2
    if base == RESPONSE:
        codes = bytes(p[pos : pos + min(count, ALARM_CAP)])
        rec["alarm_return_codes"] = list(codes)
        return [] if len(codes) == min(count, ALARM_CAP) else [TRUNCATED]
    ids: list[int] = []
    for _ in range(min(count, ALARM_CAP)):
        if pos + 3 > n:
            return [TRUNCATED]
        spec_len, syntax = p[pos + 1], p[pos + 2]
        if syntax in ALARM_SYNTAX_IDS:
            if pos + 8 > n:
                return [TRUNCATED]
            ids.append(U32.unpack_from(p, pos + 4)[0])
            if syntax in (0x16, 0x1C):  # indication sets: associated values follow
                break  # their length is only known by decoding them: keep what we have
        elif syntax == 0x1A and pos + 6 <= n:
            rec["alarm_query_type"] = p[pos + 4]
        pos += 2 + spec_len
    if ids:
        rec["alarm_event_ids"] = ids
    return []


def _tis(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """Programmer commands: the sizes of the test function's parameter and data parts."""
    if len(p) >= 4:
        rec["tis_parameter_size"], rec["tis_data_size"] = U16X2.unpack_from(p)
    return []


def _cyclic(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """Cyclic data: item count and cycle of a subscription, job id of an unsubscribe."""
    if sub in (0x01, 0x05, 0x07):
        if len(p) < 2:
            return [TRUNCATED]
        rec["item_count"] = p[1]
        if base == REQUEST and len(p) >= 4:
            rec["cycle_timebase"] = CYCLE_TIMEBASES.get(p[2], str(p[2]))
            rec["cycle_interval"] = p[3]
    elif sub == 0x04 and base == REQUEST and len(p) >= 2:
        rec["job_id"] = p[1]
    return []


def _ncprg(rec: Record, p: Buffer, base: int, sub: int, ret: int) -> list[str]:
    """NC programming: the file name of a download request or upload start."""
    if base == REQUEST and sub == 0x01:
        rec["filename"] = _text(p)
    elif base == REQUEST and sub == 0x06 and len(p) > 2:
        rec["filename"] = _text(p[2:])
    return []


GROUP_DECODERS: dict[int, Decoder] = {
    GROUP_TIS: _tis,
    GROUP_CYCLIC: _cyclic,
    GROUP_BLOCK: _blocks,
    GROUP_CPU: _cpu,
    GROUP_SECURITY: _security,
    GROUP_TIME: _time,
    GROUP_NCPRG: _ncprg,
}


# -- the PDU --------------------------------------------------------------------------------------
def _names(rec: Record, utype: int, group: int, sub: int) -> list[str]:
    anomalies: list[str] = []
    rec["userdata_type"] = utype
    if utype in TYPES:
        rec["userdata_type_name"] = TYPES[utype]
    else:
        anomalies.append(INVALID_USERDATA)
    rec["userdata_group"] = group
    rec["userdata_subfunction"] = sub
    table = SUBFUNCTIONS.get(group)
    if table is None:
        return anomalies + [UNKNOWN_FUNCTION]
    rec["userdata_group_name"] = GROUPS[group]
    name = table.get(sub)
    if name is not None:
        rec["userdata_subfunction_name"] = name
    elif table:
        anomalies.append(UNKNOWN_FUNCTION)
    return anomalies


def _special(rec: Record, data: Buffer, off: int, end: int) -> Anomalies | None:
    """The two parameter forms without the ``00 01 12`` head (newer Wireshark): the
    mode-transition push (function 0x01) and USEND (syntax id 0x13); None for anything else."""
    if data[off] == 0x01 and end - off >= 8:
        rec["userdata_type"], rec["userdata_type_name"] = PUSH, TYPES[PUSH]
        rec["userdata_group"], rec["userdata_group_name"] = GROUP_MODE, GROUPS[GROUP_MODE]
        mode = data[off + 6]
        rec["userdata_subfunction"] = mode
        if mode in MODES:
            rec["userdata_subfunction_name"] = MODES[mode]
            return NONE
        return (UNKNOWN_FUNCTION,)
    if data[off + 4] == 0x13 and end - off >= 10 and data[off : off + 3] == HEAD:
        rec["userdata_type"], rec["userdata_type_name"] = PUSH, TYPES[PUSH]
        rec["userdata_group"], rec["userdata_group_name"] = GROUP_PBC, GROUPS[GROUP_PBC]
        rec["userdata_subfunction_name"] = "usend"
        rec["pbc_r_id"] = U32.unpack_from(data, off + 6)[0]
        return NONE
    return None


def decode_userdata(
    rec: Record,
    data: Buffer,
    param_off: int,
    param_len: int,
    data_off: int,
    data_len: int,
    reassembly: UserdataReassembly | None = None,
) -> Anomalies:
    """Decode a userdata PDU's parameter data[param_off:param_off+param_len] and data part
    data[data_off:data_off+data_len] into rec; return anomaly ids.

    ``reassembly`` (optional, one per connection) joins responses split over several PDUs."""
    n = len(data)
    param_off = max(0, param_off)
    pend = min(param_off + max(0, param_len), n)
    if pend - param_off < 8:
        if pend - param_off >= 5:
            special = _special(rec, data, param_off, pend)
            if special is not None:
                return special
        return (INVALID_USERDATA,)
    special = _special(rec, data, param_off, pend)
    if special is not None:
        return special
    head, length, method, type_group, sub, seq = PARAM.unpack_from(data, param_off)
    anomalies: list[str] = []
    if head != HEAD or length != pend - param_off - 4 or param_off + param_len > n:
        anomalies.append(INVALID_USERDATA)
    utype, group = type_group >> 4, type_group & 0x0F
    base = utype & 0x0C
    anomalies += _names(rec, utype, group, sub)
    rec["sequence"] = seq
    dur = last = 0
    if method == 0x12:
        if pend - param_off >= 12:
            dur, last, err = PARAM_EXT.unpack_from(data, param_off + 8)
            rec["data_unit_reference"] = dur
            rec["last_data_unit"] = last == 0
            rec["userdata_error_code"] = err
            if last > 1:
                anomalies.append(INVALID_USERDATA)
        elif INVALID_USERDATA not in anomalies:
            anomalies.append(INVALID_USERDATA)

    # data part: return code, transport size, length, payload
    data_off = max(0, data_off)
    dend = data_off + max(0, data_len)
    if dend > n:
        anomalies.append(TRUNCATED)
        dend = n
    if dend - data_off < 4:
        if TRUNCATED not in anomalies:
            anomalies.append(TRUNCATED)
        return tuple(anomalies)
    ret, tsize, size = DATA_HEAD.unpack_from(data, data_off)
    rec["return_code"] = ret
    if ret in RETURN_CODES:
        rec["return_code_name"] = RETURN_CODES[ret]
    rec["transport_size"] = tsize
    start = data_off + 4
    if size > dend - start:
        if TRUNCATED not in anomalies:
            anomalies.append(TRUNCATED)
        size = dend - start
    if size < 2:
        empty_list = group == GROUP_BLOCK and sub in (1, 2) and base == RESPONSE
        if empty_list and size == 0 and ret == SUCCESS and last == 0:  # no blocks (of that type)
            _blocks(rec, b"", base, sub, ret)
        return tuple(anomalies)
    payload: Buffer = data[start : start + size]

    # parts of a split payload: a header to take off first, then which parts belong together
    frag_id = dur
    fragmented = dur > 0
    if group == GROUP_NCPRG:
        if base != REQUEST and sub in (0x02, 0x06, 0x07):
            payload = payload[2:]
        fragmented, frag_id = True, seq
    elif group == GROUP_PBC:
        if base in (REQUEST, RESPONSE) and len(payload) >= 8:
            frag_id = U32.unpack_from(payload, 4)[0]
            rec["pbc_r_id"] = frag_id
            payload = payload[8:]
        fragmented = dur > 0 or seq > 0
    elif group == GROUP_CPU and sub == CPU_AR_SEND and len(payload) >= 8:
        rec["ar_id"] = U32.unpack_from(payload, 4)[0]
        payload = payload[8:]
    if fragmented:
        key = (base, group, frag_id)
        if last == 1:
            if reassembly is not None:
                reassembly.add(key, payload)
            return tuple(anomalies)
        if reassembly is not None:
            payload, joined = reassembly.finish(key, payload)
            if joined:
                rec["reassembled"] = True
        elif dur:
            # no state: a payload in one PDU has data unit reference 0 (every capture at hand),
            # so this is the end of a split one, whose start is not here: leave it undecoded
            return tuple(anomalies)
    if last != 0 or not payload:
        return tuple(anomalies)
    decode = GROUP_DECODERS.get(group)
    if decode is not None:
        for a in decode(rec, payload, base, sub, ret):
            if a not in anomalies:
                anomalies.append(a)
    return tuple(anomalies)


# -- asset identity -------------------------------------------------------------------------------
def identity_of(rec: Record) -> dict[str, str] | None:
    """Asset identity from the SZL 0x0011 / 0x001C records of a read-SZL response: order number,
    names, serial number, plant id, copyright, firmware and hardware versions (only those found)."""
    records = rec.get("szl_records")
    if not records:
        return None
    out: dict[str, str] = {}
    family = rec.get("szl_id", 0) & 0xFF
    if family == 0x11:
        for r in records:
            index = r.get("index")
            mlfb = r.get("mlfb")
            version = r.get("version")
            if index == 0x0001:
                if mlfb:
                    out["order_number"] = mlfb
                if "module_type_id" in r:
                    out["module_id"] = f"0x{r['module_type_id']:04x}"
                if version is None and "ausbg" in r:
                    out.setdefault("hardware_version", str(r["ausbg"]))
            elif index == 0x0006:
                if mlfb:
                    out["hardware_order_number"] = mlfb
                if version is None and "ausbg" in r:
                    out["hardware_version"] = str(r["ausbg"])
            elif index == 0x0007 and version is not None:
                out["firmware_version"] = version
            elif index == 0x0081 and version is not None:
                out["firmware_extension_version"] = version
                if mlfb:
                    out["firmware_extension"] = mlfb
    elif family == 0x1C:
        for r in records:
            for key in (
                "system_name",
                "module_name",
                "plant_id",
                "copyright",
                "serial_number",
                "module_type_name",
                "memory_card_serial",
                "location",
            ):
                value = r.get(key)
                if value:
                    out[key] = value
            if "manufacturer_id" in r:
                out["manufacturer_id"] = f"0x{r['manufacturer_id']:04x}"
    return out or None
