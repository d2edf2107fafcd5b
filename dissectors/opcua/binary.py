"""OPC UA binary encoding (Part 6, 5.2): the built-in types → JSON-friendly values. Standard
library only.

A :class:`Reader` walks ``data[pos:end]`` (little-endian, as the encoding is). Every read checks
the bytes are there; a value that does not fit, a length below -1 or longer than what is left, an
unknown NodeId encoding, an array over :data:`MAX_ARRAY` elements of a variable-size type or a
nesting deeper than :data:`MAX_DEPTH` raises :class:`DecodeError` — the only exception a reader
raises, whatever the bytes (the caller turns it into ``opcua.decode_error``). Every element of
every type takes at least one byte, so checking an array length against the bytes left bounds
the work by the size of the input; :data:`MAX_ELEMENTS` bounds it further, to about 0.1 s of
CPU per message whatever its size (a 4 MB message of nested one-byte elements would otherwise
take seconds). Long arrays of a fixed-size type (numbers, DateTime, Guid, StatusCode) are
skipped in one step past what is kept, and do not count.

What is kept is bounded too: strings at :data:`STRING_CAP` characters (the bytes are skipped;
a string NodeId's identifier too), byte strings as hex of at most ``STRING_CAP // 2`` bytes (an
opaque NodeId's identifier as base64 of as many), and at most :data:`VALUE_CAP` Variant
values per reader (a message): past that a Variant is still read but its value left out, and
:attr:`Reader.truncated` says so.

Text forms (Part 6, 5.3.1.10-11): NodeId ``i=2258``, ``ns=2;s=Pump.Speed``,
``ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a``, ``ns=1;b=<base64>``; ExpandedNodeId adds
``svr=<index>;`` and ``nsu=<uri>;`` (in place of ``ns=``); QualifiedName ``2:Speed`` (``Speed``
in namespace 0); DateTime ISO 8601 UTC with microseconds (``2024-05-01T10:00:00.123456Z``; the
null DateTime 0, and anything before 1601, is None; the far end clamps at 9999-12-31).
"""

from __future__ import annotations

import math
from base64 import b64encode
from collections.abc import Callable
from datetime import datetime, timedelta
from struct import Struct
from typing import Any

from .statuscodes import status_name

Buffer = bytes | bytearray
Record = dict[str, Any]

MAX_ARRAY = 10_000  # elements of a variable-size type parsed per array
MAX_ELEMENTS = 100_000  # array elements parsed per reader (message), all arrays together
MAX_DEPTH = 16  # nesting of Variant / DataValue / ExtensionObject / DiagnosticInfo
STRING_CAP = 256  # characters of a string kept
VALUE_CAP = 64  # Variant values kept per reader (message)

I8 = Struct("<b")
I16 = Struct("<h")
U16 = Struct("<H")
I32 = Struct("<i")
U32 = Struct("<I")
I64 = Struct("<q")
U64 = Struct("<Q")
F32 = Struct("<f")
F64 = Struct("<d")
GUID = Struct("<IHH8s")
FOUR_BYTE_NODEID = Struct("<BH")  # namespace (byte), identifier (UInt16)
NUMERIC_NODEID = Struct("<HI")  # namespace, identifier

EPOCH_1601 = datetime(1601, 1, 1)
TICKS_PER_SECOND = 10_000_000
#: ticks of 9999-12-31 23:59:59 (Part 6 5.2.2.5: at or after it, DateTime.MaxValue)
MAX_TICKS = (
    (datetime(9999, 12, 31, 23, 59, 59) - EPOCH_1601) // timedelta(seconds=1) * TICKS_PER_SECOND
)
MAX_TIME = "9999-12-31T23:59:59.999999Z"

#: built-in type ids (Part 6 Table 1) → names, as the Variant encoding mask carries them
BUILTIN_TYPES: dict[int, str] = {
    0: "Null",
    1: "Boolean",
    2: "SByte",
    3: "Byte",
    4: "Int16",
    5: "UInt16",
    6: "Int32",
    7: "UInt32",
    8: "Int64",
    9: "UInt64",
    10: "Float",
    11: "Double",
    12: "String",
    13: "DateTime",
    14: "Guid",
    15: "ByteString",
    16: "XmlElement",
    17: "NodeId",
    18: "ExpandedNodeId",
    19: "StatusCode",
    20: "QualifiedName",
    21: "LocalizedText",
    22: "ExtensionObject",
    23: "DataValue",
    24: "Variant",
    25: "DiagnosticInfo",
}

#: element size of the fixed-size built-in types: long arrays of them are skipped, not parsed
FIXED_SIZES: dict[int, int] = {
    1: 1,
    2: 1,
    3: 1,
    4: 2,
    5: 2,
    6: 4,
    7: 4,
    8: 8,
    9: 8,
    10: 4,
    11: 8,
    13: 8,
    14: 16,
    19: 4,
}

_ARRAY_BIT = 0x80
_DIMENSIONS_BIT = 0x40
_TYPE_MASK = 0x3F

# DataValue encoding mask (Part 6 Table 16); the fields follow in this order
DV_VALUE, DV_STATUS, DV_SOURCE_TS, DV_SERVER_TS, DV_SOURCE_PICO, DV_SERVER_PICO = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
)
# DiagnosticInfo encoding mask (Part 6 Table 24); fields in this order:
# symbolic id, namespace, locale, localized text, additional info, inner status, inner info
DI_SYMBOLIC, DI_NAMESPACE, DI_LOCALIZED, DI_LOCALE = 0x01, 0x02, 0x04, 0x08
DI_ADDITIONAL, DI_INNER_STATUS, DI_INNER_INFO = 0x10, 0x20, 0x40

EXPANDED_SERVER_INDEX = 0x40
EXPANDED_NAMESPACE_URI = 0x80


class DecodeError(Exception):
    """The bytes do not decode as their type says (truncated, bad length, limit exceeded)."""


def _float32(value: float) -> float:
    """The shortest decimal that reads back as the same 32-bit float (0.1, not 0.100000001…)."""
    if not math.isfinite(value):
        return value
    packed = F32.pack(value)
    for digits in (6, 7, 8):
        short = float(f"{value:.{digits}g}")
        if F32.pack(short) == packed:
            return short
    return value


def json_float(value: float) -> float | str:
    """A float JSON can carry: NaN and the infinities become ``"NaN"``, ``"Infinity"``, …"""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def ticks_to_iso(ticks: int) -> str | None:
    """100-ns ticks since 1601-01-01 UTC → ISO 8601 text (None for the null DateTime)."""
    text = _TICKS.get(ticks)
    if text is not None:
        return text
    if ticks <= 0:
        return None
    if ticks >= MAX_TICKS:
        return MAX_TIME
    seconds, rest = divmod(ticks, TICKS_PER_SECOND)
    day = _SECONDS.get(seconds)
    if day is None:
        if len(_SECONDS) >= 1024:
            _SECONDS.clear()
        day = _SECONDS[seconds] = f"{EPOCH_1601 + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}"
    milli, micro = divmod(rest // 10, 1000)
    text = f"{day}.{_THREE_DIGITS[milli]}{_THREE_DIGITS[micro]}Z"  # microseconds, six digits
    if len(_TICKS) >= 4096:
        _TICKS.clear()
    _TICKS[ticks] = text
    return text


#: whole seconds already formatted (timestamps of one capture share few seconds)
_SECONDS: dict[int, str] = {}
#: whole timestamps already formatted (a response's values mostly share their server timestamp,
#: a value that did not change keeps its source timestamp)
_TICKS: dict[int, str] = {}
#: 000-999 (the microseconds as two groups of three digits: cheaper than formatting them)
_THREE_DIGITS = tuple(f"{n:03d}" for n in range(1000))


def guid_text(data1: int, data2: int, data3: int, data4: bytes) -> str:
    tail = data4.hex()
    return f"{data1:08x}-{data2:04x}-{data3:04x}-{tail[:4]}-{tail[4:]}"


def _ns(namespace: int) -> str:
    return f"ns={namespace};" if namespace else ""


#: NodeId encoding byte → size of the fixed-size encodings (two-byte, four-byte, numeric, Guid)
_NODEID_SIZES = {0: 2, 1: 4, 2: 7, 4: 19}

#: text of the two-byte NodeIds (namespace 0, identifier 0-255)
_TWO_BYTE_TEXT = tuple(f"i={ident}" for ident in range(256))


def numeric_text(namespace: int, ident: int) -> str:
    """A numeric NodeId's text, ``i=2258`` / ``ns=2;i=12`` (cached: a capture names few)."""
    key = namespace << 32 | ident
    text = _NUMERIC_TEXT.get(key)
    if text is None:
        if len(_NUMERIC_TEXT) >= 4096:
            _NUMERIC_TEXT.clear()
        text = _NUMERIC_TEXT[key] = f"ns={namespace};i={ident}" if namespace else f"i={ident}"
    return text


#: numeric NodeId text by ``namespace << 32 | identifier``
_NUMERIC_TEXT: dict[int, str] = {}


_I16 = I16.unpack_from
_U16 = U16.unpack_from
_I32 = I32.unpack_from
_U32 = U32.unpack_from
_I64 = I64.unpack_from
_U64 = U64.unpack_from
_F64 = F64.unpack_from


class Reader:
    """Reads built-in types from ``data[pos:end]``; see the module docstring for the rules."""

    __slots__ = ("base", "budget", "data", "depth", "elements", "end", "pos", "truncated")

    def __init__(self, data: Buffer, pos: int, end: int, budget: int = VALUE_CAP) -> None:
        self.data = data
        size = len(data)
        self.end = end if end < size else size
        self.pos = self.base = pos if pos > 0 else 0  # error messages give offsets from base
        self.depth = 0
        self.budget = budget
        self.elements = MAX_ELEMENTS
        self.truncated = False

    def sub(self, end: int) -> Reader:
        """A reader of ``data[pos:end]`` (a length-delimited body) sharing this one's budget,
        depth and offsets; hand the budget back with :meth:`join`."""
        inner = Reader(self.data, self.pos, end, self.budget)
        inner.base = self.base
        inner.depth = self.depth
        inner.elements = self.elements
        return inner

    def join(self, inner: Reader) -> None:
        """Continue after a :meth:`sub` reader's body."""
        self.budget = inner.budget
        self.elements = inner.elements
        self.truncated = self.truncated or inner.truncated
        self.pos = inner.end

    # -- plumbing --------------------------------------------------------------------------------
    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> int:
        """Claim ``n`` bytes; return where they start."""
        at = self.pos
        if n < 0 or at + n > self.end:
            raise DecodeError(
                f"truncated at offset {at - self.base}: {n} bytes needed, {self.end - at} left"
            )
        self.pos = at + n
        return at

    def skip(self, n: int) -> None:
        self.take(n)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise DecodeError(f"nesting deeper than {MAX_DEPTH} at offset {self.pos - self.base}")

    def leave(self) -> None:
        self.depth -= 1

    def keep(self) -> bool:
        """May one more value be listed? (Spends the budget; marks truncation when spent.)"""
        if self.budget > 0:
            self.budget -= 1
            return True
        self.truncated = True
        return False

    # -- numbers -----------------------------------------------------------------------------------
    def boolean(self) -> bool:
        at = self.pos
        if at + 1 > self.end:
            self.take(1)  # raises: truncated
        self.pos = at + 1
        return self.data[at] != 0

    def byte(self) -> int:
        at = self.pos
        if at + 1 > self.end:
            self.take(1)  # raises: truncated
        self.pos = at + 1
        return self.data[at]

    def sbyte(self) -> int:
        value: int = I8.unpack_from(self.data, self.take(1))[0]
        return value

    def int16(self) -> int:
        at = self.pos
        if at + 2 > self.end:
            self.take(2)  # raises: truncated
        self.pos = at + 2
        value: int = _I16(self.data, at)[0]
        return value

    def uint16(self) -> int:
        at = self.pos
        if at + 2 > self.end:
            self.take(2)  # raises: truncated
        self.pos = at + 2
        value: int = _U16(self.data, at)[0]
        return value

    def int32(self) -> int:
        at = self.pos
        if at + 4 > self.end:
            self.take(4)  # raises: truncated
        self.pos = at + 4
        value: int = _I32(self.data, at)[0]
        return value

    def uint32(self) -> int:
        at = self.pos
        if at + 4 > self.end:
            self.take(4)  # raises: truncated
        self.pos = at + 4
        value: int = _U32(self.data, at)[0]
        return value

    def int64(self) -> int:
        at = self.pos
        if at + 8 > self.end:
            self.take(8)  # raises: truncated
        self.pos = at + 8
        value: int = _I64(self.data, at)[0]
        return value

    def uint64(self) -> int:
        at = self.pos
        if at + 8 > self.end:
            self.take(8)  # raises: truncated
        self.pos = at + 8
        value: int = _U64(self.data, at)[0]
        return value

    def float32(self) -> float:
        value: float = F32.unpack_from(self.data, self.take(4))[0]
        return _float32(value)

    def double(self) -> float:
        at = self.pos
        if at + 8 > self.end:
            self.take(8)  # raises: truncated
        self.pos = at + 8
        value: float = _F64(self.data, at)[0]
        return value

    status = uint32

    # -- strings -----------------------------------------------------------------------------------
    def length(self) -> int:
        """A String / ByteString / array length: -1 (null) or what fits in the bytes left."""
        at = self.pos
        end = self.end
        if at + 4 > end:
            self.take(4)  # raises: truncated
        n: int = _I32(self.data, at)[0]
        self.pos = at = at + 4
        if n < -1 or n > end - at:
            raise DecodeError(f"bad length {n} at offset {at - 4 - self.base}")
        return n

    def string(self) -> str | None:
        """A UTF-8 String (None when null), kept to :data:`STRING_CAP` characters."""
        n = self.length()
        if n <= 0:
            return None if n < 0 else ""
        at = self.pos
        self.pos = at + n  # length() checked the bytes are there
        if n <= STRING_CAP:  # no more characters than bytes: nothing to cut
            return self.data[at : at + n].decode("utf-8", "replace")
        raw = self.data[at : at + min(n, 4 * STRING_CAP)]
        return raw.decode("utf-8", "replace")[:STRING_CAP]

    def bytestring(self) -> bytes | None:
        """A ByteString, whole (None when null)."""
        n = self.length()
        if n < 0:
            return None
        at = self.take(n)
        return bytes(self.data[at : at + n])

    def bytestring_hex(self) -> str | None:
        """A ByteString as hex, kept to :data:`STRING_CAP` hex digits."""
        n = self.length()
        if n < 0:
            return None
        at = self.take(n)
        return bytes(self.data[at : at + min(n, STRING_CAP // 2)]).hex()

    def skip_bytestring(self) -> int:
        """Skip a String / ByteString / XmlElement; return its length (-1 when null)."""
        n = self.length()
        if n > 0:
            self.pos += n
        return n

    xml_element = string

    # -- time, guid --------------------------------------------------------------------------------
    def datetime(self) -> str | None:
        at = self.pos
        if at + 8 > self.end:
            self.take(8)  # raises: truncated
        self.pos = at + 8
        ticks: int = _I64(self.data, at)[0]
        return ticks_to_iso(ticks) if ticks > 0 else None

    def guid(self) -> str:
        return guid_text(*GUID.unpack_from(self.data, self.take(16)))

    # -- node ids ----------------------------------------------------------------------------------
    def _nodeid_body(self, mask: int) -> tuple[int, str]:
        """The NodeId after its encoding byte: (namespace index, ``<type>=<value>``)."""
        kind = mask & 0x0F
        data = self.data
        if kind == 0:
            return 0, f"i={data[self.take(1)]}"
        if kind == 1:
            ns, ident = FOUR_BYTE_NODEID.unpack_from(data, self.take(3))
            return ns, f"i={ident}"
        if kind == 2:
            ns, ident = NUMERIC_NODEID.unpack_from(data, self.take(6))
            return ns, f"i={ident}"
        if kind in (3, 4, 5):
            ns = self.uint16()
            if kind == 3:
                return ns, f"s={self.string() or ''}"
            if kind == 4:
                return ns, f"g={self.guid()}"
            raw = self.bytestring() or b""
            return ns, "b=" + b64encode(raw[: STRING_CAP // 2]).decode("ascii")
        raise DecodeError(
            f"unknown NodeId encoding 0x{mask:02x} at offset {self.pos - 1 - self.base}"
        )

    def nodeid(self) -> str:
        """A NodeId as text."""
        data = self.data
        at = self.pos
        end = self.end
        if at < end:  # numeric NodeIds whole in the bytes: text from the cache
            mask = data[at]
            if mask == 0 and at + 2 <= end:
                self.pos = at + 2
                return _TWO_BYTE_TEXT[data[at + 1]]
            if mask == 1 and at + 4 <= end:
                self.pos = at + 4
                # numeric_text's cache looked up here: a hit costs no call
                text = _NUMERIC_TEXT.get(data[at + 1] << 32 | data[at + 2] | data[at + 3] << 8)
                if text is not None:
                    return text
                return numeric_text(data[at + 1], data[at + 2] | data[at + 3] << 8)
            if mask == 2 and at + 7 <= end:
                self.pos = at + 7
                ns, ident = NUMERIC_NODEID.unpack_from(data, at + 1)
                text = _NUMERIC_TEXT.get(ns << 32 | ident)
                return text if text is not None else numeric_text(ns, ident)
        at = self.take(1)
        mask = self.data[at]
        if mask & 0xF0:
            raise DecodeError(f"unknown NodeId encoding 0x{mask:02x} at offset {at - self.base}")
        ns, ident = self._nodeid_body(mask)
        return _ns(ns) + ident

    def skip_nodeid(self) -> None:
        """Read over a NodeId: the checks of :meth:`nodeid`, no text built."""
        at = self.pos
        end = self.end
        if at < end:
            mask = self.data[at]
            size = _NODEID_SIZES.get(mask)
            if size is not None and at + size <= end:
                self.pos = at + size
                return
            if (mask == 3 or mask == 5) and at + 3 <= end:  # String, ByteString
                self.pos = at + 3
                self.skip_bytestring()
                return
        self.nodeid()

    def skip_expanded_nodeid(self) -> None:
        """Read over an ExpandedNodeId: the checks of :meth:`expanded_nodeid`, no text built."""
        if self.pos < self.end and self.data[self.pos] <= 5:  # no URI, no server index
            self.skip_nodeid()
        else:
            self.expanded_nodeid()

    def numeric_nodeid(self) -> tuple[str, int | None]:
        """An ExpandedNodeId as text, and its number when it is numeric in namespace 0 on this
        server (as a service or data encoding id is)."""
        data = self.data
        at = self.pos
        end = self.end
        if at < end:  # numeric, no namespace URI, no server index, whole in the bytes
            mask = data[at]
            if mask == 0 and at + 2 <= end:
                self.pos = at + 2
                ident: int = data[at + 1]
                return _TWO_BYTE_TEXT[ident], ident
            if mask == 1 and at + 4 <= end:
                self.pos = at + 4
                ns, ident = data[at + 1], data[at + 2] | data[at + 3] << 8
                return numeric_text(ns, ident), None if ns else ident
            if mask == 2 and at + 7 <= end:
                self.pos = at + 7
                ns, ident = NUMERIC_NODEID.unpack_from(data, at + 1)
                return numeric_text(ns, ident), None if ns else ident
        mask = data[at] if at < end else 0
        text = self.expanded_nodeid()
        number: int | None = None
        if not mask & (EXPANDED_NAMESPACE_URI | EXPANDED_SERVER_INDEX) and text.startswith("i="):
            number = int(text[2:])
        return text, number

    def expanded_nodeid(self) -> str:
        """An ExpandedNodeId as text (``svr=`` and ``nsu=`` prefixes when flagged)."""
        if self.pos < self.end and self.data[self.pos] <= 2:  # a plain numeric NodeId
            return self.nodeid()
        at = self.take(1)
        mask = self.data[at]
        if mask & 0x30:
            raise DecodeError(
                f"unknown ExpandedNodeId encoding 0x{mask:02x} at offset {at - self.base}"
            )
        ns, ident = self._nodeid_body(mask)
        prefix = ""
        if mask & EXPANDED_NAMESPACE_URI:
            uri = self.string()
            prefix = f"nsu={uri};" if uri else _ns(ns)
        else:
            prefix = _ns(ns)
        if mask & EXPANDED_SERVER_INDEX:
            prefix = f"svr={self.uint32()};" + prefix
        return prefix + ident

    # -- names and texts ---------------------------------------------------------------------------
    def qualified_name(self) -> str:
        ns = self.uint16()
        name = self.string() or ""
        return f"{ns}:{name}" if ns else name

    def skip_qualified_name(self) -> None:
        at = self.pos
        end = self.end
        if at + 6 <= end:  # namespace and name length in the bytes: one step when it fits
            n: int = _I32(self.data, at + 2)[0]
            if -1 <= n <= end - at - 6:
                self.pos = at + 6 + n if n > 0 else at + 6
                return
        self.uint16()
        self.skip_bytestring()

    def skip_localized_text(self) -> None:
        at = self.pos
        if at >= self.end:
            self.take(1)  # raises: truncated
        self.pos = at + 1
        mask = self.data[at]
        if mask & 0x01:
            self.skip_bytestring()
        if mask & 0x02:
            self.skip_bytestring()

    def localized_text(self) -> str | None:
        """A LocalizedText's text (its locale is read and dropped); None when it has none."""
        mask = self.data[self.take(1)]
        if mask & 0x01:
            self.skip_bytestring()
        return self.string() if mask & 0x02 else None

    # -- structures -------------------------------------------------------------------------------
    def spend(self, n: int) -> None:
        """Count ``n`` array elements about to be parsed against :data:`MAX_ELEMENTS`."""
        self.elements -= n
        if self.elements < 0:
            raise DecodeError(f"more than {MAX_ELEMENTS} array elements in one message")

    def array_length(self) -> int:
        """An array's length (0 when null): at most :data:`MAX_ARRAY`, what the bytes allow and
        what is left of :data:`MAX_ELEMENTS`; the caller parses every element."""
        at = self.pos
        if at + 4 <= self.end:  # the common case: null, or a length that fits every limit
            n: int = _I32(self.data, at)[0]
            if n <= 0:
                if n >= -1:
                    self.pos = at + 4
                    return 0
            elif n <= MAX_ARRAY and n <= self.elements and n <= self.end - at - 4:
                self.pos = at + 4
                self.elements -= n
                return n
        n = self.length()
        if n > MAX_ARRAY:
            raise DecodeError(
                f"array of {n} elements at offset {self.pos - 4 - self.base} (limit {MAX_ARRAY})"
            )
        n = max(n, 0)
        self.spend(n)
        return n

    def extension_header(self) -> tuple[str, int | None, int, int]:
        """An ExtensionObject's type id (text and number), encoding byte and body length
        (-1 without a body); the reader is left at the first body byte."""
        text, number = self.numeric_nodeid()
        at = self.pos
        end = self.end
        if at + 5 <= end and self.data[at] == 1:  # a binary body whose length fits: in place
            n: int = _I32(self.data, at + 1)[0]
            if -1 <= n <= end - at - 5:
                self.pos = at + 5
                return text, number, 1, n if n > 0 else 0
        encoding = self.byte()
        if encoding == 0:
            return text, number, 0, -1
        if encoding not in (1, 2):
            raise DecodeError(
                f"unknown ExtensionObject encoding {encoding} at offset {self.pos - 1 - self.base}"
            )
        n = self.length()
        return text, number, encoding, max(n, 0)

    def extension_object(self) -> Record:
        """An ExtensionObject: ``type_id``, and the body decoded for the structures of
        :data:`EXTENSION_TYPES`, else its length (``body_length``); an XML body as text."""
        self.enter()
        text, number, encoding, n = self.extension_header()
        out: Record = {"type_id": text}
        if encoding == 1:
            known = EXTENSION_TYPES.get(number) if number is not None else None
            if known is None:
                self.skip(n)
                out["body_length"] = n
            else:
                out["type"] = known[0]
                # the body read by this reader with its end moved to the body's (what a sub()
                # reader would do, without making one); a fault leaves truncation as it was
                outer_end = self.end
                truncated = self.truncated
                self.end = body_end = self.pos + n
                try:
                    out["body"] = known[1](self)
                except DecodeError:
                    self.end = outer_end
                    self.truncated = truncated
                    raise
                self.end = outer_end
                self.pos = body_end
        elif encoding == 2:
            at = self.take(n)
            out["xml"] = bytes(self.data[at : at + min(n, 4 * STRING_CAP)]).decode(
                "utf-8", "replace"
            )[:STRING_CAP]
        self.leave()
        return out

    def diagnostic_info(self) -> Record | None:
        """A DiagnosticInfo: the fields present (None when the mask is empty)."""
        self.enter()
        mask = self.byte()
        out: Record = {}
        if mask & DI_SYMBOLIC:
            out["symbolic_id"] = self.int32()
        if mask & DI_NAMESPACE:
            out["namespace_uri"] = self.int32()
        if mask & DI_LOCALE:
            out["locale"] = self.int32()
        if mask & DI_LOCALIZED:
            out["localized_text"] = self.int32()
        if mask & DI_ADDITIONAL:
            info = self.string()
            if info is not None:
                out["additional_info"] = info
        if mask & DI_INNER_STATUS:
            out["inner_status"] = self.status()
        if mask & DI_INNER_INFO:
            inner = self.diagnostic_info()
            if inner is not None:
                out["inner_diagnostic_info"] = inner
        self.leave()
        return out or None

    def skip_diagnostic_infos(self) -> None:
        for _ in range(self.array_length()):
            self.diagnostic_info()

    def data_value(self) -> Record:
        """A DataValue as ``type``, ``value`` (see :meth:`variant`), ``status`` and
        ``status_name`` (Good when not encoded), ``source_timestamp``, ``server_timestamp``."""
        data = self.data
        at = self.pos
        end = self.end
        if at + 1 < end and self.depth + 2 <= MAX_DEPTH:
            # the common case in one pass: no Variant, or a Null or fixed-size scalar one,
            # and every field whole in the bytes
            mask = data[at]
            pos = at + 1
            size = _DATA_VALUE_SIZES[mask & 0x3E]
            out: Record
            if not mask & DV_VALUE:
                out = {}
            elif data[pos] == 0:
                out = {"type": "Null"}
                pos += 1
            else:
                kind = data[pos]
                fixed = _FIXED_SCALARS.get(kind)
                if fixed is None or pos + 1 + fixed[1] + size > end:
                    return self._data_value()
                out = self._scalar(kind, fixed, pos + 1)
                pos += 1 + fixed[1]
            if pos + size > end:
                return self._data_value()
            if mask & DV_STATUS:
                code: int = _U32(data, pos)[0]
                pos += 4
                out["status"] = code
                out["status_name"] = _GOOD if code == 0 else status_name(code)
            else:
                out["status"] = 0
                out["status_name"] = _GOOD
            if mask & DV_SOURCE_TS:
                ticks: int = _I64(data, pos)[0]
                pos += 8
                if ticks > 0:  # (ticks_to_iso's cache looked up here: a hit costs no call)
                    text = _TICKS.get(ticks)
                    out["source_timestamp"] = text if text is not None else ticks_to_iso(ticks)
            if mask & DV_SOURCE_PICO:
                pos += 2
            if mask & DV_SERVER_TS:
                ticks = _I64(data, pos)[0]
                pos += 8
                if ticks > 0:  # (ticks_to_iso's cache looked up here: a hit costs no call)
                    text = _TICKS.get(ticks)
                    out["server_timestamp"] = text if text is not None else ticks_to_iso(ticks)
            if mask & DV_SERVER_PICO:
                pos += 2
            self.pos = pos
            return out
        return self._data_value()

    def _data_value(self) -> Record:
        """:meth:`data_value`, any Variant, every check."""
        self.enter()
        mask = self.byte()
        out: Record = self.variant() if mask & DV_VALUE else {}  # a new dict: ours to extend
        code = self.uint32() if mask & DV_STATUS else 0
        out["status"] = code
        out["status_name"] = _GOOD if code == 0 else status_name(code)
        if mask & DV_SOURCE_TS:
            when = self.datetime()
            if when is not None:
                out["source_timestamp"] = when
        if mask & DV_SOURCE_PICO:
            self.skip(2)
        if mask & DV_SERVER_TS:
            when = self.datetime()
            if when is not None:
                out["server_timestamp"] = when
        if mask & DV_SERVER_PICO:
            self.skip(2)
        self.leave()
        return out

    def variant(self) -> Record:
        """A Variant as ``type`` (built-in type name, ``Array of <name>`` for arrays) and
        ``value`` (arrays as lists of at most the budget left, with ``array_length``;
        multi-dimensional ones flat, with ``dimensions``). A Null Variant is ``{"type": "Null"}``.
        """
        data = self.data
        at = self.pos
        if at < self.end and self.depth < MAX_DEPTH:  # a fixed-size scalar: one unpack
            kind = data[at]
            fixed = _FIXED_SCALARS.get(kind)
            if fixed is not None and at + fixed[1] < self.end:
                self.pos = at + 1 + fixed[1]
                return self._scalar(kind, fixed, at + 1)
        return self._variant()

    def _scalar(
        self, kind: int, fixed: tuple[str, int, Callable[[Buffer, int], tuple[Any, ...]]], at: int
    ) -> Record:
        """A fixed-size scalar Variant's record, its value unpacked at ``at`` while the value
        budget lasts (a Double as :func:`json_float` gives it)."""
        name, _, unpack = fixed
        out: Record = {"type": name}
        if self.budget > 0:
            self.budget -= 1
            value = unpack(self.data, at)[0]
            out["value"] = json_float(value) if kind == 11 else value
        else:
            self.truncated = True
        return out

    def _variant(self) -> Record:
        """:meth:`variant`, any type."""
        self.enter()
        mask = self.byte()
        kind = mask & _TYPE_MASK
        if kind > 31:
            raise DecodeError(f"unknown Variant type {kind} at offset {self.pos - 1 - self.base}")
        read = _SCALARS[15] if kind > 25 else _SCALARS.get(kind)  # 26-31: ByteString (5.2.2.16)
        name = BUILTIN_TYPES.get(kind, f"Reserved{kind}")
        out: Record = {}
        if mask & _ARRAY_BIT:
            out["type"] = f"Array of {name}"
            n = self.length()
            count = max(n, 0)
            out["array_length"] = count
            if read is not None:
                out["value"] = self._array(kind, read, count)
            if mask & _DIMENSIONS_BIT:
                dims = [self.int32() for _ in range(self.array_length())]
                out["dimensions"] = dims[:STRING_CAP]
        else:
            out["type"] = name
            if read is not None:
                value = read(self)
                if self.keep():
                    out["value"] = value
        self.leave()
        return out

    def _array(self, kind: int, read: Callable[[Reader], Any], count: int) -> list[Any]:
        """``count`` elements: kept while the budget lasts; the rest of a fixed-size type is
        skipped in one step, the rest of a variable-size one (at most :data:`MAX_ARRAY`) read."""
        size = FIXED_SIZES.get(kind)
        if size is None:
            if count > MAX_ARRAY:
                raise DecodeError(
                    f"array of {count} elements at offset {self.pos - self.base} "
                    f"(limit {MAX_ARRAY})"
                )
            self.spend(count)
        values: list[Any] = []
        for i in range(count):
            if size is not None and self.budget <= 0:
                self.take((count - i) * size)
                self.truncated = True
                break
            value = read(self)
            if self.budget > 0:  # (keep(), inline: once per element)
                self.budget -= 1
                values.append(value)
            else:
                self.truncated = True
        return values


#: Variant encoding byte of a fixed-size scalar → (type name, size, unpack); Float is left out
#: (its value is rounded to the shortest decimal, see :func:`_float32`)
_FIXED_SCALARS: dict[int, tuple[str, int, Callable[[Buffer, int], tuple[Any, ...]]]] = {
    kind: (BUILTIN_TYPES[kind], struct.size, struct.unpack_from)
    for kind, struct in (
        (1, Struct("<?")),
        (2, I8),
        (3, Struct("<B")),
        (4, I16),
        (5, U16),
        (6, I32),
        (7, U32),
        (8, I64),
        (9, U64),
        (11, F64),
        (19, U32),
    )
}
_GOOD = status_name(0)
#: bytes after a DataValue's Variant, by encoding mask (status, timestamps, picoseconds)
_DATA_VALUE_SIZES = tuple(
    (mask & DV_STATUS and 4)
    + (mask & DV_SOURCE_TS and 8)
    + (mask & DV_SERVER_TS and 8)
    + (mask & DV_SOURCE_PICO and 2)
    + (mask & DV_SERVER_PICO and 2)
    for mask in range(64)
)


def _variant_value(r: Reader) -> Any:
    """A Variant inside a Variant array: ``{"type": …, "value": …}``."""
    return r.variant()


def _status_value(r: Reader) -> Any:
    return r.status()


_SCALARS: dict[int, Callable[[Reader], Any]] = {
    1: Reader.boolean,
    2: Reader.sbyte,
    3: Reader.byte,
    4: Reader.int16,
    5: Reader.uint16,
    6: Reader.int32,
    7: Reader.uint32,
    8: Reader.int64,
    9: Reader.uint64,
    10: lambda r: json_float(r.float32()),
    11: lambda r: json_float(r.double()),
    12: Reader.string,
    13: Reader.datetime,
    14: Reader.guid,
    15: Reader.bytestring_hex,
    16: Reader.xml_element,
    17: Reader.nodeid,
    18: Reader.expanded_nodeid,
    19: _status_value,
    20: Reader.qualified_name,
    21: Reader.localized_text,
    22: Reader.extension_object,
    23: Reader.data_value,
    24: _variant_value,
    25: Reader.diagnostic_info,
}


# -- structures decoded inside ExtensionObjects (Part 5) -------------------------------------------
def _build_info(r: Reader) -> Record:
    out: Record = {
        "product_uri": r.string(),
        "manufacturer_name": r.string(),
        "product_name": r.string(),
        "software_version": r.string(),
        "build_number": r.string(),
        "build_date": r.datetime(),
    }
    return {k: v for k, v in out.items() if v is not None}


SERVER_STATES: dict[int, str] = {
    0: "Running",
    1: "Failed",
    2: "NoConfiguration",
    3: "Suspended",
    4: "Shutdown",
    5: "Test",
    6: "CommunicationFault",
    7: "Unknown",
}


def _server_status(r: Reader) -> Record:
    out: Record = {"start_time": r.datetime(), "current_time": r.datetime()}
    state = r.uint32()
    out["state"] = SERVER_STATES.get(state, state)
    out["build_info"] = _build_info(r)
    out["seconds_till_shutdown"] = r.uint32()
    out["shutdown_reason"] = r.localized_text()
    return {k: v for k, v in out.items() if v is not None}


def _range(r: Reader) -> Record:
    return {"low": json_float(r.double()), "high": json_float(r.double())}


def _eu_information(r: Reader) -> Record:
    out: Record = {
        "namespace_uri": r.string(),
        "unit_id": r.int32(),
        "display_name": r.localized_text(),
        "description": r.localized_text(),
    }
    return {k: v for k, v in out.items() if v is not None}


def _argument(r: Reader) -> Record:
    name = r.string()
    out: Record = {} if name is None else {"name": name}
    out["data_type"] = r.nodeid()
    out["value_rank"] = r.int32()
    n = r.array_length()
    if n:
        dims = [r.uint32() for _ in range(n)]
        out["array_dimensions"] = dims[:STRING_CAP]
    description = r.localized_text()
    if description is not None:
        out["description"] = description
    return out


def _enum_value(r: Reader) -> Record:
    out: Record = {
        "value": r.int64(),
        "display_name": r.localized_text(),
        "description": r.localized_text(),
    }
    return {k: v for k, v in out.items() if v is not None}


#: binary encoding id → (structure name, decoder) for ExtensionObject bodies worth reading
EXTENSION_TYPES: dict[int, tuple[str, Callable[[Reader], Record]]] = {
    298: ("Argument", _argument),
    340: ("BuildInfo", _build_info),
    864: ("ServerStatusDataType", _server_status),
    886: ("Range", _range),
    889: ("EUInformation", _eu_information),
    8251: ("EnumValueType", _enum_value),
}
