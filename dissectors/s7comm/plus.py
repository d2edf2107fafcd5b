"""S7comm-plus grammar: one PDU (a COTP TSDU starting with 0x72) → record. Standard library only.

Layout (after Thomas Wiens' Wireshark plugin ``packet-s7comm_plus.c``, checked against captures
of S7-1200 / S7-1500 PLCs, HMIs and TIA Portal)::

    header    72 | version | data length (u16, big-endian)        version 0xFF: 72 FF seq 00
    [V3]      digest length (0x20) | digest (32 bytes)           counted in the data length
    data      opcode (1) ...                                     data length bytes in all
    trailer   72 | version | 00 00                               absent on a fragment

    request       31 | 00 00 | function (2) | 00 00 | sequence (2) | session id (4) | flags (1)
    response      32 | 00 00 | function (2) | 00 00 | sequence (2) | flags (1)     (0x02 alike)
    notification  33 | subscription object id (4) | ...          (no function, no sequence)

then a function-specific body, an optional object qualifier, and at the end an integrity id (a
VLQ) and/or an integrity part (V1/V2 firmware that puts the digest last), and usually 4 zero
bytes. Integers in the body are mostly VLQs (7 bits per byte, high bit = more; 32-bit values at
most 5 bytes, 64-bit ones at most 9); values are typed (flags, datatype, value), may be arrays,
sparse arrays or structs (nested ID/value lists ended by 0).

``decode_plus`` returns ``(record, anomaly ids)`` and never raises: a body it cannot follow is
left undecoded (``decoded`` False, ``undecoded_bytes`` = body length), never guessed. Work is
bounded: lists and arrays of more than ``MAX_ITEMS`` entries, nesting deeper than ``MAX_DEPTH``
and more than ``MAX_STEPS`` decoded elements abandon the body.

Record keys (absent when unknown): ``version``, ``data_length``, ``opcode``, ``opcode_name``,
``function``, ``function_name``, ``sequence`` (keep-alive: its sequence byte), ``session_id``
(requests), ``transport_flags``, ``integrity`` (a digest is present: V3 always, V1/V2 when the
firmware appends one), ``integrity_id``, ``trailer_ok``, ``return_code`` (responses: the 16-bit
signed error code of the return value, 0 = OK), ``decoded``, ``undecoded_bytes`` (trailing zero
fill counts as decoded), ``fragment`` / ``fragments`` (see below) and ``objects``, a dict with
what the body names, as present: ``object_id`` (target object, link id, subscription, explore
area...), ``item_count``, ``address_count``, ``field_count``, ``attribute_ids``, ``addresses``
(``symbol_crc``, ``area``, ``db_number``, ``sub_area``, ``lids``), ``object_ids``,
``class_ids``, ``error_count`` and ``errors`` (``item``, ``return_code``),
``notification_sequence``, ``credit_tick``, ``confirmed_bytes``, ``message``. Lists keep at most
``MAX_LISTED`` entries. Values themselves are walked over, not reported.

Fragmentation. A PDU too large for one TSDU is sent as several, each with its own header (and,
in V3, its own digest); only the last has the trailer. ``decode_plus`` on a TSDU without trailer
returns ``fragment: "first"``; the session should then pass ``continuation=True`` for the
following TSDUs of that direction (``fragment`` ``"inner"``, or ``"last"`` on the one with the
trailer) and may hand all of them to ``decode_plus_fragments`` for the body of the whole PDU.
SetVarSubStreamed requests fragment differently (a length-prefixed stream); their reassembly
decodes the header only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from struct import Struct
from typing import Any

Buffer = bytes | bytearray
Record = dict[str, Any]
Anomalies = tuple[str, ...]

PROTOCOL_ID = 0x72

VERSIONS: dict[int, str] = {
    0x01: "v1",
    0x02: "v2",
    0x03: "v3",
    0xFE: "system_event",
    0xFF: "keep_alive",
}

OPCODES: dict[int, str] = {
    0x31: "request",
    0x32: "response",
    0x33: "notification",
    0x02: "response2",  # V13 HMI on cyclic data (the request then has transport flags 0x74)
}

OP_REQUEST, OP_RESPONSE, OP_NOTIFICATION, OP_RESPONSE2 = 0x31, 0x32, 0x33, 0x02

FUNCTIONS: dict[int, str] = {
    0x04B1: "error",
    0x04BB: "explore",
    0x04CA: "create_object",
    0x04D4: "delete_object",
    0x04F2: "set_variable",
    0x04FC: "get_variable",
    0x0506: "add_link",
    0x051A: "remove_link",
    0x0524: "get_link",
    0x0542: "set_multi_variables",
    0x054C: "get_multi_variables",
    0x0556: "begin_sequence",
    0x0560: "end_sequence",
    0x056B: "invoke",
    0x057C: "set_var_substreamed",
    0x0586: "get_var_substreamed",
    0x0590: "get_variables_address",
    0x059A: "abort",
    0x05A9: "error_2",
    0x05B3: "init_ssl",
}

(
    F_ERROR,
    F_EXPLORE,
    F_CREATE_OBJECT,
    F_DELETE_OBJECT,
    F_SET_VARIABLE,
    F_GET_VARIABLE,
    F_GET_LINK,
    F_SET_MULTI_VARIABLES,
    F_GET_MULTI_VARIABLES,
    F_BEGIN_SEQUENCE,
    F_END_SEQUENCE,
    F_INVOKE,
    F_SET_VAR_SUBSTREAMED,
    F_GET_VAR_SUBSTREAMED,
    F_ERROR_2,
    F_INIT_SSL,
) = (
    0x04B1,
    0x04BB,
    0x04CA,
    0x04D4,
    0x04F2,
    0x04FC,
    0x0524,
    0x0542,
    0x054C,
    0x0556,
    0x0560,
    0x056B,
    0x057C,
    0x0586,
    0x05A9,
    0x05B3,
)

#: at most this many entries of one list or array are decoded; a longer one abandons the body
MAX_ITEMS = 1000
#: nesting of structs / objects followed
MAX_DEPTH = 32
#: elements (values, list entries, object elements) decoded per PDU
MAX_STEPS = 20_000
#: ids / addresses kept in a record's ``objects`` (all are still counted)
MAX_LISTED = 64

INVALID_LENGTH = "s7comm_plus.invalid_length"
INVALID_TRAILER = "s7comm_plus.invalid_trailer"
UNKNOWN_OPCODE = "s7comm_plus.unknown_opcode"
UNKNOWN_FUNCTION = "s7comm_plus.unknown_function"
UNKNOWN_VERSION = "s7comm_plus.unknown_version"
TRUNCATED = "s7comm_plus.truncated"
INVALID_PROTOCOL_ID = "s7comm_plus.invalid_protocol_id"

U16 = Struct(">H")
U32 = Struct(">I")

# item value datatypes
DT_NULL, DT_UDINT, DT_ULINT, DT_DINT, DT_LINT = 0x00, 0x04, 0x05, 0x08, 0x09
DT_TIMESPAN, DT_AID, DT_BLOB, DT_WSTRING, DT_VARIANT, DT_STRUCT = 0x11, 0x13, 0x14, 0x15, 0x16, 0x17
#: datatypes of fixed size: bool, usint, uint, sint, int, byte, word, dword, lword, real, lreal,
#: timestamp, rid
_FIXED_SIZE: dict[int, int] = {
    0x00: 0,
    0x01: 1,
    0x02: 1,
    0x03: 2,
    0x06: 1,
    0x07: 2,
    0x0A: 1,
    0x0B: 2,
    0x0C: 4,
    0x0D: 8,
    0x0E: 4,
    0x0F: 8,
    0x10: 8,
    0x12: 4,
}
_VLQ32_TYPES = frozenset((DT_UDINT, DT_DINT, DT_AID, DT_VARIANT))
_VLQ64_TYPES = frozenset((DT_ULINT, DT_LINT, DT_TIMESPAN))
FLAG_ARRAY, FLAG_ADDRESS_ARRAY, FLAG_SPARSE_ARRAY = 0x10, 0x20, 0x40

# object element ids
E_START_OBJECT, E_TERM_OBJECT, E_ATTRIBUTE, E_RELATION = 0xA1, 0xA2, 0xA3, 0xA4
E_START_TAG_DESC, E_TERM_TAG_DESC, E_VARTYPE_LIST, E_VARNAME_LIST = 0xA7, 0xA8, 0xAB, 0xAC

#: item-address base areas: a data block is 0x8A0E0000 + its number; 80..84 are I, Q, M, C, T
DB_AREA_FIRST, DB_AREA_LAST = 0x8A0E0000, 0x8A0EFFFF
_CLASSIC_AREAS = frozenset((80, 81, 82, 83, 84))

#: functions whose request may carry an object qualifier after the body
_QUALIFIED = frozenset(
    (
        F_GET_MULTI_VARIABLES,
        F_SET_MULTI_VARIABLES,
        F_SET_VARIABLE,
        F_GET_VARIABLE,
        F_DELETE_OBJECT,
        F_GET_VAR_SUBSTREAMED,
        F_SET_VAR_SUBSTREAMED,
    )
)


class _Stop(Exception):
    """The body cannot be followed further (end of data, unknown type, a cap). Raised as a new
    instance each time: a shared instance would grow its traceback on every raise."""


class _Reader:
    """A bounded cursor over ``data[pos:end]``; every read past ``end`` raises ``_Stop``."""

    __slots__ = ("data", "end", "pos", "steps")

    def __init__(self, data: Buffer, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end
        self.steps = 0

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _Stop

    def peek(self) -> int:
        if self.pos >= self.end:
            raise _Stop
        return self.data[self.pos]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise _Stop
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            raise _Stop
        self.pos = pos + 2
        return int(U16.unpack_from(self.data, pos)[0])

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise _Stop
        self.pos = pos + 4
        return int(U32.unpack_from(self.data, pos)[0])

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > self.end:
            raise _Stop
        self.pos += n

    def vlq32(self) -> int:
        """Unsigned VLQ, at most 5 bytes, truncated to 32 bits."""
        data, pos, end = self.data, self.pos, self.end
        value = 0
        for _ in range(5):
            if pos >= end:
                raise _Stop
            b = data[pos]
            pos += 1
            value = value << 7 | b & 0x7F
            if not b & 0x80:
                break
        self.pos = pos
        return value & 0xFFFFFFFF

    def svlq32(self) -> int:
        """Signed VLQ (bit 0x40 of the first byte is the sign), at most 5 bytes."""
        data, pos, end = self.data, self.pos, self.end
        value = 0
        for i in range(5):
            if pos >= end:
                raise _Stop
            b = data[pos]
            pos += 1
            value = -64 + (b & 0x3F) if i == 0 and b & 0x40 else (value << 7) + (b & 0x7F)
            if not b & 0x80:
                break
        self.pos = pos
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value

    def vlq64(self) -> int:
        """Unsigned 64-bit VLQ: up to 8 bytes of 7 bits, then a 9th byte of 8 bits."""
        data, pos, end = self.data, self.pos, self.end
        value = 0
        more = True
        for _ in range(8):
            if pos >= end:
                raise _Stop
            b = data[pos]
            pos += 1
            value = value << 7 | b & 0x7F
            more = bool(b & 0x80)
            if not more:
                break
        if more:
            if pos >= end:
                raise _Stop
            value = value << 8 | data[pos]
            pos += 1
        self.pos = pos
        return value & 0xFFFFFFFFFFFFFFFF


def _count(r: _Reader) -> int:
    """A VLQ element count, refused above ``MAX_ITEMS``."""
    n = r.vlq32()
    if n > MAX_ITEMS:
        raise _Stop
    return n


def _listed(obj: Record, key: str, value: Any) -> None:
    lst: list[Any] = obj.setdefault(key, [])
    if len(lst) < MAX_LISTED:
        lst.append(value)


# -- values ------------------------------------------------------------------------------------
def _value(r: _Reader, depth: int) -> int:
    """One typed value (flags, datatype, data). Returns the struct level change: 1 when a struct
    was opened (its members follow as an ID/value list), -1 after an address array of structs
    (the enclosing ID/value list ends there), 0 otherwise."""
    if depth > MAX_DEPTH:
        raise _Stop
    flags = r.u8()
    datatype = r.u8()
    is_struct = datatype == DT_STRUCT
    sparse = bool(flags & FLAG_SPARSE_ARRAY)
    if sparse:  # ended by key 0; every element takes at least its key byte
        size = r.remaining + 1
    elif flags & (FLAG_ARRAY | FLAG_ADDRESS_ARRAY) and not is_struct:
        size = r.vlq32()
        fixed = _FIXED_SIZE.get(datatype)
        if fixed is not None:  # an array of fixed-size values: skipped in one go
            r.skip(size * fixed)
            return 0
        if size > r.remaining:  # every remaining element type takes at least one byte
            raise _Stop
    else:
        size = 1
    level = 0
    struct_value = 0
    vtype = datatype
    i = 0
    while i < size:
        r.tick()
        i += 1
        if sparse:
            if r.vlq32() == 0:  # key 0 ends a sparse array
                break
        elif datatype == DT_VARIANT:
            r.u8()  # flags of the variant's value
            vtype = r.u8()
        fixed = _FIXED_SIZE.get(vtype)
        if fixed is not None:
            r.skip(fixed)
        elif vtype in _VLQ32_TYPES:
            r.vlq32()
        elif vtype in _VLQ64_TYPES:
            r.vlq64()
        elif vtype == DT_STRUCT:
            level += 1
            struct_value = r.u32()
        elif vtype == DT_WSTRING:
            r.skip(r.vlq32())
        elif vtype == DT_BLOB:
            if r.vlq32() > 1:  # root id > 1: 8 bytes, a blob type and its content
                r.skip(8)
                blob_type = r.u8()
                if blob_type == 0:
                    _id_values(r, depth + 1, True, None)
                elif blob_type in (2, 3):
                    r.skip(r.vlq32())
                else:
                    raise _Stop
            else:
                r.skip(r.vlq32())
        else:
            raise _Stop  # unknown datatype: the value's length is unknown
    if is_struct and flags & FLAG_ADDRESS_ARRAY:
        for _ in range(_count(r)):
            _id_values(r, depth + 1, True, None)
        level = -1
    # packed structs (e.g. DTL): interface timestamp, flags, count and the packed bytes
    if is_struct and (
        0x90000000 < struct_value < 0x9FFFFFFF or 0x02000000 < struct_value < 0x02FFFFFF
    ):
        r.skip(8)
        transport_flags = r.vlq32()
        n = r.vlq32()
        if transport_flags & 0x400:
            n = r.vlq32()
        r.skip(n)
        level -= 1
    return level


def _id_values(r: _Reader, depth: int, recursive: bool, ids: Record | None) -> None:
    """An ID/value list (until ID 0); struct members are nested lists. With ``ids``, the IDs of
    this level are listed under ``attribute_ids``."""
    if depth > MAX_DEPTH:
        raise _Stop
    while True:
        r.tick()
        ident = r.vlq32()
        if ident == 0:
            return
        if ids is not None:
            _listed(ids, "attribute_ids", ident)
        level = _value(r, depth)
        if level > 0:
            _id_values(r, depth + 1, True, None)
        elif level < 0:
            return
        if not recursive:
            return


def _item_values(r: _Reader, depth: int, recursive: bool) -> int:
    """An item-number/value list (until item number 0); returns the number of items."""
    n = 0
    while True:
        r.tick()
        if r.vlq32() == 0:
            return n
        if _value(r, depth) > 0:
            _id_values(r, depth + 1, True, None)
        n += 1
        if not recursive:
            return n


def _return_code(r: _Reader) -> tuple[int, bool]:
    """A return value (64-bit VLQ): its 16-bit signed error code and the extension flag."""
    value = r.vlq64()
    code = value & 0xFFFF
    return code - 0x10000 if code & 0x8000 else code, bool(value & 0x4000000000000000)


def _error_values(r: _Reader, obj: Record) -> None:
    """Item-number/return-value list until item number 0 (per-item errors of a response)."""
    while True:
        r.tick()
        item = r.vlq32()
        if item == 0:
            return
        code, _ = _return_code(r)
        obj["error_count"] = obj.get("error_count", 0) + 1
        _listed(obj, "errors", {"item": item, "return_code": code})


# -- objects -----------------------------------------------------------------------------------
def _blocks(r: _Reader) -> None:
    """Length-prefixed blocks until a zero length (variable type / name lists)."""
    while True:
        r.tick()
        n = r.u16()
        if n == 0:
            return
        r.skip(n)


def _tag_description(r: _Reader) -> None:
    """A tag description (old S7-1200 firmware)."""
    info = r.u8()
    r.skip(r.vlq32())  # name
    r.skip(2)  # unknown, datatype
    r.vlq32()  # soft datatype
    r.skip(4)  # attribute flags
    r.vlq32()  # LID
    r.vlq32()  # string length / struct relation id
    if info & 0x0C:
        r.vlq32()
        r.vlq32()
    r.vlq32()
    r.vlq32()
    kind = info & 0x03
    if kind == 1:
        r.vlq32()
        r.vlq32()
    elif kind == 2:
        r.svlq32()
        for _ in range(3):
            r.vlq32()
    elif kind == 3:
        r.vlq32()
        r.vlq32()
        for _ in range(_count(r)):
            r.svlq32()
            r.vlq32()
    if info == 0x08:
        r.vlq32()
        r.vlq32()


def _object(r: _Reader, depth: int, obj: Record) -> None:
    """Object elements until a terminating element (or one that is not an element)."""
    if depth > MAX_DEPTH:
        raise _Stop
    while True:
        r.tick()
        if not r.remaining:
            if depth > 1:  # inside an object: its terminating element is missing
                raise _Stop
            return
        element = r.data[r.pos]
        if element == E_START_OBJECT:
            r.skip(1)
            r.u32()  # relation id
            _listed(obj, "class_ids", r.vlq32())
            r.vlq32()  # class flags
            if r.vlq32():  # attribute id, then its flags
                r.vlq32()
            _object(r, depth + 1, obj)
        elif element == E_TERM_OBJECT:
            r.skip(1)
            return
        elif element == E_ATTRIBUTE:
            r.skip(1)
            _id_values(r, depth + 1, False, obj)
        elif element == E_RELATION:
            r.skip(1)
            r.vlq32()
            r.skip(4)
        elif element == E_START_TAG_DESC:
            r.skip(1)
            _tag_description(r)
        elif element == E_TERM_TAG_DESC:
            r.skip(1)
        elif element in (E_VARTYPE_LIST, E_VARNAME_LIST):
            r.skip(1)
            _blocks(r)
        else:
            return


# -- item addresses ----------------------------------------------------------------------------
def _address(r: _Reader) -> Record:
    """An item address: symbol CRC, base area, LID count, sub-area and the LIDs."""
    crc = r.vlq32()
    area = r.vlq32()
    depth = r.vlq32()
    sub_area = r.vlq32()
    address: Record = {"symbol_crc": crc, "area": area}
    if DB_AREA_FIRST <= area <= DB_AREA_LAST:
        address["db_number"] = area & 0xFFFF
    address["sub_area"] = sub_area
    n = depth - 1 if depth > 1 else 0
    classic = crc == 0 and (DB_AREA_FIRST <= area <= DB_AREA_LAST or area in _CLASSIC_AREAS)
    if depth > 1 and classic and r.peek() == 3:
        n = max(n, 3)  # access type 3 (classic blob): offset and byte count always follow
    if n > MAX_ITEMS:
        raise _Stop
    lids = []
    for _ in range(n):
        r.tick()
        lids.append(r.vlq32())
    address["lids"] = lids[:MAX_LISTED]
    return address


def _ids(r: _Reader, obj: Record, n: int) -> None:
    for _ in range(n):
        r.tick()
        _listed(obj, "attribute_ids", r.vlq32())


# -- request bodies ----------------------------------------------------------------------------
def _req_get_multi_variables(r: _Reader, version: int, obj: Record) -> None:
    link = r.u32()
    items = _count(r)
    obj["item_count"] = items
    if link:
        obj["object_id"] = link
        obj["address_count"] = n = _count(r)
        _ids(r, obj, n)
    else:
        obj["field_count"] = r.vlq32()
        for _ in range(items):
            _listed(obj, "addresses", _address(r))


def _req_set_multi_variables(r: _Reader, version: int, obj: Record) -> None:
    target = r.u32()
    if target:
        obj["object_id"] = target
        obj["item_count"] = items = _count(r)
        obj["address_count"] = n = _count(r)
        _ids(r, obj, n)
    else:
        obj["item_count"] = items = _count(r)
        obj["field_count"] = r.vlq32()
        for _ in range(items):
            _listed(obj, "addresses", _address(r))
    for _ in range(items):
        _item_values(r, 1, False)
    r.skip(1)  # fill byte


def _req_set_variable(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()
    obj["address_count"] = n = _count(r)
    i = 0
    while i < n:
        r.tick()
        ident = r.vlq32()
        i += 1
        if ident == 0:  # a zero id is followed by a raw value length that counts as an entry
            r.vlq32()
            i += 1
        else:
            _listed(obj, "attribute_ids", ident)
    if _value(r, 1) > 0:
        _id_values(r, 2, True, None)


def _req_get_variable(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()
    obj["item_count"] = n = _count(r)
    _ids(r, obj, n)


def _req_create_object(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()
    _value(r, 1)
    r.skip(4)
    if version in (2, 3) and r.peek() != E_START_OBJECT:
        obj["integrity_id"] = r.vlq32()
    _object(r, 1, obj)


def _req_delete_object(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()
    r.skip(1)


def _req_substreamed(r: _Reader, version: int, obj: Record) -> None:
    """Get/SetVarSubStreamed: 32-bit IDs with values, struct levels closed by a zero ID."""
    level = 0
    while True:
        r.tick()
        ident = r.u32()
        if ident == 0:
            level -= 1
        else:
            _listed(obj, "attribute_ids", ident)
            level += _value(r, 1)
        if level <= 0:
            return


def _req_explore(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()
    explore_id = r.vlq32()
    if explore_id:
        _listed(obj, "attribute_ids", explore_id)
    r.skip(3)  # children recursive, unknown, parents
    while True:
        r.tick()
        objects = r.u8()
        ids = r.u8()
        if objects and r.u8() == DT_STRUCT:
            r.skip(4)
            _id_values(r, 1, True, None)
        _ids(r, obj, ids)
        if not objects:
            return


def _req_get_link(r: _Reader, version: int, obj: Record) -> None:
    r.skip(4)
    _listed(obj, "attribute_ids", r.vlq32())
    r.skip(2)


def _req_begin_sequence(r: _Reader, version: int, obj: Record) -> None:
    r.u8()  # transaction type
    if version == 1:
        return
    if r.u16() == 1:
        r.skip(1 if r.remaining > 1 and r.data[r.pos + 1] == E_START_OBJECT else 2)
        _object(r, 1, obj)
    else:
        obj["object_id"] = r.u32()


def _req_end_sequence(r: _Reader, version: int, obj: Record) -> None:
    r.skip(2)


def _req_invoke(r: _Reader, version: int, obj: Record) -> None:
    obj["object_id"] = r.u32()  # sub-session id
    r.skip(4)
    obj["item_count"] = _item_values(r, 1, True)
    r.skip(1)


def _req_empty(r: _Reader, version: int, obj: Record) -> None:
    return


# -- response bodies ---------------------------------------------------------------------------
def _res_return_only(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]


def _res_get_multi_variables(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    obj["item_count"] = _item_values(r, 1, True)
    _error_values(r, obj)


def _res_set_multi_variables(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    _error_values(r, obj)


def _res_get_variable(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    _value(r, 1)


def _res_create_object(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    for _ in range(r.u8()):
        _listed(obj, "object_ids", r.vlq32())
    if version == 1:
        _object(r, 1, obj)


def _res_delete_object(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"], extension = _return_code(r)
    obj["object_id"] = r.u32()
    if extension:
        _object(r, 1, obj)


def _res_get_var_substreamed(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    r.skip(1)
    if _value(r, 1) > 0:
        _id_values(r, 2, True, None)


def _res_explore(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    obj["object_id"] = r.u32()
    # (sequence number + integrity id) of the request; absent on V1 and on old S7-1200 V2
    if not r.remaining:
        return
    if version == 3 or (version == 2 and r.peek() not in (E_START_OBJECT, 0)):
        r.vlq32()
    if r.remaining and r.peek() == E_START_OBJECT:
        _object(r, 1, obj)


def _res_get_link(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    for _ in range(r.u8()):
        _listed(obj, "object_ids", r.u32())


def _res_begin_sequence(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    if version != 1:
        r.skip(2)
        obj["object_id"] = r.u32()


def _res_invoke(r: _Reader, version: int, obj: Record) -> None:
    obj["return_code"] = _return_code(r)[0]
    _return_code(r)
    _return_code(r)
    if r.peek() != 1:
        _return_code(r)
    obj["item_count"] = _item_values(r, 1, True)
    r.skip(1)


_Body = Callable[[_Reader, int, Record], None]

REQUESTS: dict[int, _Body] = {
    F_GET_MULTI_VARIABLES: _req_get_multi_variables,
    F_SET_MULTI_VARIABLES: _req_set_multi_variables,
    F_SET_VARIABLE: _req_set_variable,
    F_GET_VARIABLE: _req_get_variable,
    F_CREATE_OBJECT: _req_create_object,
    F_DELETE_OBJECT: _req_delete_object,
    F_GET_VAR_SUBSTREAMED: _req_substreamed,
    F_SET_VAR_SUBSTREAMED: _req_substreamed,
    F_EXPLORE: _req_explore,
    F_GET_LINK: _req_get_link,
    F_BEGIN_SEQUENCE: _req_begin_sequence,
    F_END_SEQUENCE: _req_end_sequence,
    F_INVOKE: _req_invoke,
    F_INIT_SSL: _req_empty,
}

RESPONSES: dict[int, _Body] = {
    F_GET_MULTI_VARIABLES: _res_get_multi_variables,
    F_SET_MULTI_VARIABLES: _res_set_multi_variables,
    F_SET_VARIABLE: _res_return_only,
    F_GET_VARIABLE: _res_get_variable,
    F_CREATE_OBJECT: _res_create_object,
    F_DELETE_OBJECT: _res_delete_object,
    F_GET_VAR_SUBSTREAMED: _res_get_var_substreamed,
    F_SET_VAR_SUBSTREAMED: _res_return_only,
    F_EXPLORE: _res_explore,
    F_GET_LINK: _res_get_link,
    F_BEGIN_SEQUENCE: _res_begin_sequence,
    F_END_SEQUENCE: _res_return_only,
    F_INVOKE: _res_invoke,
    F_ERROR: _res_return_only,
    F_ERROR_2: _res_return_only,
    F_INIT_SSL: _res_return_only,
}


# -- notifications -----------------------------------------------------------------------------
def _notification_values(r: _Reader, obj: Record) -> None:
    """Notification value list: a return byte per item, until 0."""
    while True:
        r.tick()
        kind = r.u8()
        if kind == 0:
            return
        level = 0
        if kind == 0x92:  # reference number (u32) + value
            r.skip(4)
            level = _value(r, 1)
        elif kind == 0x9B:  # id (VLQ) + value
            r.vlq32()
            level = _value(r, 1)
        elif kind == 0x9C:
            r.skip(4)
        elif kind in (0x13, 0x03):  # access error on a reference number
            r.skip(4)
            obj["error_count"] = obj.get("error_count", 0) + 1
        elif kind == 0x81:
            _object(r, 1, obj)
        elif kind == 0x83:
            level = _value(r, 1)
        else:
            raise _Stop
        if level > 0:
            _id_values(r, 2, True, None)
        obj["item_count"] = obj.get("item_count", 0) + 1
        if obj["item_count"] > MAX_ITEMS:
            raise _Stop


def _notification(r: _Reader, version: int, obj: Record) -> bool:
    """Returns False when the rest of the notification has an unknown layout."""
    subscription = obj["object_id"] = r.u32()
    if version == 1:
        r.skip(4)
        if r.remaining >= 4 and U32.unpack_from(r.data, r.pos)[0]:
            r.skip(6)
            _notification_values(r, obj)
        return True
    kind = r.u16()
    r.skip(2)
    if kind != 0x0400:  # only this kind is known to carry values
        return False
    r.skip(2)
    if subscription < 0x70000000:  # old S7-1200: 1-byte sequence number and change counter
        obj["notification_sequence"] = r.u8()
        r.u8()
    else:
        obj["credit_tick"] = r.u8()
        obj["notification_sequence"] = r.vlq32()
        if r.u8() == 0:  # newer S7-1500: a timestamp (µs) and the change counter
            r.skip(9)
    _notification_values(r, obj)
    if r.remaining and r.peek() != 0:  # a second part (program alarms)
        r.skip(6)
        _notification_values(r, obj)
    return True


# -- integrity and the data part ---------------------------------------------------------------
def _qualifier(r: _Reader) -> None:
    """Object qualifier: an id (u32) and an ID/value list."""
    r.u32()
    _id_values(r, 1, True, None)


def _tail(r: _Reader, version: int, has_id: bool, rec: Record) -> None:
    """Integrity id / integrity part at the end of the data part. What does not fit is left
    where it is (and then reported undecoded)."""
    rem = r.remaining
    save = r.pos
    try:
        if version == 3:
            if rem > 4 and has_id:
                rec["integrity_id"] = r.vlq32()
        elif 4 < rem < 32 and has_id:
            rec["integrity_id"] = r.vlq32()
        elif rem >= 32:  # V1/V2 firmware with the digest at the end: [id] 0x20 digest
            ident = r.vlq32() if has_id else None
            if r.u8() != 32:
                if ident is None:
                    raise _Stop
                r.pos, ident = save, None  # the id may be missing (DeleteObject response)
                if r.u8() != 32:
                    raise _Stop
            r.skip(32)
            rec["integrity"] = True
            if ident is not None:
                rec["integrity_id"] = ident
    except _Stop:
        r.pos = save
        rec.clear()


def _decode_data(
    data: Buffer, pos: int, end: int, version: int, rec: Record, anomalies: list[str]
) -> None:
    """The data part ``data[pos:end]``: opcode, data header and body. The data part of a first
    fragment may end anywhere: that is not a truncation."""
    cut_short = [] if rec.get("fragment") == "first" else [TRUNCATED]
    if pos >= end:
        anomalies.extend(cut_short)
        rec["decoded"] = False
        rec["undecoded_bytes"] = 0
        return
    opcode = data[pos]
    rec["opcode"] = opcode
    name = OPCODES.get(opcode)
    if name is None:
        anomalies.append(UNKNOWN_OPCODE)
        rec["decoded"] = False
        rec["undecoded_bytes"] = end - pos
        return
    rec["opcode_name"] = name
    pos += 1
    function = 0
    if opcode != OP_NOTIFICATION:
        fixed = 8 + (5 if opcode == OP_REQUEST else 1)
        if pos + 8 <= end:
            function = data[pos + 2] << 8 | data[pos + 3]
            rec["function"] = function
            fname = FUNCTIONS.get(function)
            if fname is None:
                anomalies.append(UNKNOWN_FUNCTION)
            else:
                rec["function_name"] = fname
            rec["sequence"] = data[pos + 6] << 8 | data[pos + 7]
        if pos + fixed > end:
            anomalies.extend(cut_short)
            rec["decoded"] = False
            rec["undecoded_bytes"] = end - pos
            return
        if opcode == OP_REQUEST:
            rec["session_id"] = int(U32.unpack_from(data, pos + 8)[0])
        rec["transport_flags"] = data[pos + fixed - 1]
        pos += fixed
    obj: Record = {}
    tail: Record = {}
    r = _Reader(data, pos, end)
    try:
        has_id = version != 1
        complete = True
        if opcode == OP_NOTIFICATION:
            complete = _notification(r, version, obj)
        elif opcode == OP_REQUEST:
            body = REQUESTS.get(function)
            if body is None:
                raise _Stop
            body(r, version, obj)
            if function in _QUALIFIED and r.remaining > 10:
                _qualifier(r)
            if function == F_GET_VAR_SUBSTREAMED:
                r.skip(2)
            elif function == F_SET_VAR_SUBSTREAMED:  # stream data
                r.skip(2)
                _value(r, 1)
            elif function == F_SET_VARIABLE:
                r.skip(1)
        else:
            body = RESPONSES.get(function)
            if body is None:
                raise _Stop
            body(r, version, obj)
            if function == F_DELETE_OBJECT:  # an integrity id follows only if non-zero
                has_id = r.remaining > 0 and r.data[r.pos] != 0
        if complete:
            _tail(r, version, has_id, tail)
    except _Stop:
        rec["decoded"] = False
        rec["undecoded_bytes"] = end - pos
        return
    rec["decoded"] = True
    if tail.get("integrity"):
        rec["integrity"] = True
    integrity_id = tail.get("integrity_id", obj.pop("integrity_id", None))
    if integrity_id is not None:
        rec["integrity_id"] = integrity_id
    if "return_code" in obj:
        rec["return_code"] = obj.pop("return_code")
    if obj:
        rec["objects"] = obj
    rest = data[r.pos : end]
    rec["undecoded_bytes"] = 0 if not any(rest) else len(rest)  # zero fill is decoded


# -- entry points ------------------------------------------------------------------------------
def _header(
    data: Buffer, off: int, end: int, rec: Record, anomalies: list[str]
) -> tuple[int, int, bool] | None:
    """Header, trailer and V3 digest. Returns (data start, data end, has trailer), or None when
    nothing beyond the header can be decoded (the record is then complete)."""
    n = end - off
    if n < 1 or data[off] != PROTOCOL_ID:
        anomalies.append(INVALID_PROTOCOL_ID if n >= 1 else TRUNCATED)
        rec["decoded"] = False
        rec["undecoded_bytes"] = max(n, 0)
        return None
    if n < 4:
        if n >= 2:
            rec["version"] = data[off + 1]
        anomalies.append(TRUNCATED)
        rec["decoded"] = False
        rec["undecoded_bytes"] = n
        return None
    version = rec["version"] = data[off + 1]
    if version == 0xFF:  # keep-alive: 72 FF <sequence> <reserved>
        rec["sequence"] = data[off + 2]
        if n != 4:
            anomalies.append(INVALID_LENGTH)
        rec["decoded"] = n == 4
        rec["undecoded_bytes"] = n - 4
        return None
    length = rec["data_length"] = data[off + 2] << 8 | data[off + 3]
    if version not in VERSIONS:
        anomalies.append(UNKNOWN_VERSION)
    start = off + 4
    if version == 0xFE:  # system event: no trailer
        if n < 4 + length:
            anomalies.append(TRUNCATED)
        elif n > 4 + length:
            anomalies.append(INVALID_LENGTH)
        return start, min(end, start + length), False
    trailer = bytes((PROTOCOL_ID, version, 0, 0))
    stop = start + length
    has_trailer = False
    if n == length + 8:
        has_trailer = data[stop:end] == trailer
        if not has_trailer:
            anomalies.append(INVALID_TRAILER)
    elif n < length + 4:
        anomalies.append(TRUNCATED)
        stop = end
    elif n > length + 4:
        anomalies.append(INVALID_LENGTH)
        has_trailer = data[stop : stop + 4] == trailer
    rec["trailer_ok"] = has_trailer
    if version == 3:  # integrity part first: digest length + digest
        if start < stop and start + 1 + data[start] <= stop:
            rec["integrity"] = data[start] > 0
            start += 1 + data[start]
        else:
            rec["integrity"] = False
            anomalies.append(TRUNCATED)
            rec["decoded"] = False
            rec["undecoded_bytes"] = max(stop - start, 0)
            return None
    else:
        rec["integrity"] = False
    if version not in VERSIONS:
        rec["decoded"] = False
        rec["undecoded_bytes"] = max(stop - start, 0)
        return None
    return start, stop, has_trailer


def _system_event(data: Buffer, pos: int, end: int, rec: Record) -> None:
    """Version 0xFE (TIA V14+ extended keep-alive): 16 bytes, maybe followed by a message."""
    if end - pos < 16:
        rec["decoded"] = False
        rec["undecoded_bytes"] = max(end - pos, 0)
        return
    obj: Record = {"confirmed_bytes": int(U32.unpack_from(data, pos + 4)[0])}
    rest = end - pos - 16
    if rest >= 4 and U32.unpack_from(data, pos + 16)[0] == DT_STRUCT:
        rec["undecoded_bytes"] = rest  # binary coded value list: left undecoded
    else:
        if rest > 0:
            obj["message"] = bytes(data[pos + 16 : pos + 16 + min(rest, 64)]).decode(
                "ascii", "replace"
            )
        rec["undecoded_bytes"] = 0
    rec["decoded"] = True
    rec["objects"] = obj


def decode_plus(
    data: Buffer, off: int, end: int, *, continuation: bool = False
) -> tuple[Record, Anomalies]:
    """Decode one S7comm-plus PDU in data[off:end] (the whole COTP TSDU) into a record and anomaly ids.

    ``continuation``: this TSDU follows one without trailer in the same direction, so its data
    part continues that PDU (no opcode, no data header): only header and trailer are decoded.
    """
    end = min(end, len(data))
    off = max(off, 0)
    rec: Record = {}
    anomalies: list[str] = []
    bounds = _header(data, off, end, rec, anomalies)
    if bounds is None:
        return rec, tuple(anomalies)
    start, stop, has_trailer = bounds
    version = rec["version"]
    if version == 0xFE:
        _system_event(data, start, stop, rec)
        return rec, tuple(anomalies)
    if continuation:
        rec["fragment"] = "last" if has_trailer else "inner"
        rec["decoded"] = False
        rec["undecoded_bytes"] = max(stop - start, 0)
        return rec, tuple(anomalies)
    if not has_trailer and stop == end and end - off == rec["data_length"] + 4:
        rec["fragment"] = "first"
    _decode_data(data, start, stop, version, rec, anomalies)
    return rec, tuple(anomalies)


def decode_plus_fragments(parts: Sequence[Buffer]) -> tuple[Record, Anomalies]:
    """Decode a PDU sent as several TSDUs: ``parts`` are the whole TSDUs in order (the first
    without trailer, the last with). Header fields come from the first part, ``trailer_ok``
    from the last; ``data_length`` is the reassembled data length; ``fragments`` the count."""
    if not parts:
        return {"decoded": False, "undecoded_bytes": 0}, (TRUNCATED,)
    joined = bytearray()
    rec: Record = {}
    anomalies: list[str] = []
    version = -1
    trailer_ok = False
    integrity = False
    for i, part in enumerate(parts):
        head: Record = {}
        problems: list[str] = []
        bounds = _header(part, 0, len(part), head, problems)
        if i == 0:
            rec.update(head)
            version = head.get("version", -1)
        anomalies.extend(a for a in problems if a not in anomalies)
        if bounds is None or head.get("version") != version or version == 0xFE:
            rec["fragments"] = len(parts)
            rec["decoded"] = False
            rec["undecoded_bytes"] = len(joined)
            return rec, tuple(anomalies)
        start, stop, trailer_ok = bounds
        integrity = integrity or bool(head.get("integrity"))
        joined += part[start:stop]
    rec["fragment"] = "reassembled"
    rec["fragments"] = len(parts)
    rec["data_length"] = len(joined)
    rec["trailer_ok"] = trailer_ok
    rec["integrity"] = integrity
    _decode_data(joined, 0, len(joined), version, rec, anomalies)
    return rec, tuple(anomalies)


def looks_like_plus(data: Buffer, off: int, end: int) -> bool:
    """Cheap check: 0x72, a known version, and a data length that fits the bytes (with the
    trailer, or without it for a fragment)."""
    end = min(end, len(data))
    n = end - off
    if off < 0 or n < 4 or data[off] != PROTOCOL_ID:
        return False
    version = data[off + 1]
    if version == 0xFF:
        return n == 4
    if version not in VERSIONS:
        return False
    length = data[off + 2] << 8 | data[off + 3]
    if version == 0xFE:
        return n == 4 + length
    if n == length + 8:
        return data[end - 4 : end] == bytes((PROTOCOL_ID, version, 0, 0))
    return n == length + 4 and length > 0
