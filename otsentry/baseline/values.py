"""Value models of the registers and variables a segment reads and writes (``values`` aspect).

Every value a protocol event carries is a sample of one *variable*:

- Modbus: coils, discrete inputs, holding and input registers per (server, unit, address), from
  read responses (FC 1-4, 23) and write requests (FC 5, 6, 15, 16, 23);
- S7comm: the bytes of read var acks and write var jobs (hex in the events), per (server, area,
  offset): data blocks as REALs when every sample of an aligned 4-byte chunk is a plausible REAL,
  else as 16-bit words (``DB1.DBW24``); inputs, outputs and merkers as words and bytes
  (``IW2``, ``QB1``); bit items as bits;
- OPC UA: scalar values of the Value attribute in Read responses, Write requests and
  subscription notifications (Publish, mapped to nodes by the CreateMonitoredItems client
  handles).

After learning each variable is classified as Erez & Wool (2015) do for Modbus/TCP SCADA
traffic: **constant** (one value), **enumerated** (a small set that stopped growing), **counter**
(monotonic, wrapping at the word size) or **range** (min/max with a margin); a variable written
by a client (a setpoint) is never enumerated, since operators choose new setpoints. ``check``
reports a value outside its model as ``value_out_of_range`` (high for a write, medium for a
read): "HR 2 on 10.10.30.5 unit 1 was always 520 (constant, 100 samples); 10.10.30.66 wrote
1500".

Against false alarms:
- a variable with fewer than ``min_samples`` samples (default 20) is **never checked**; it is
  written as ``sparse`` with the values seen, so a reviewer sees what was too thin to model;
- ranges get a margin of half their span or a tenth of their magnitude, whichever is larger;
- a set is enumerated only when it has at most 8 values, its last new value came in the first
  half of the samples, and (for numbers) the values are not a dense run, which a range covers
  better;
- a monotonic variable is a counter (only a backward step that is no wrap is flagged), so a
  slowly rising measurement never becomes a range it will leave;
- one report per (variable, reading or writing client) and detector run.

Bounded: ``max_variables`` (main tier) plus as many in probation (``TieredTable``), so a sweep
of a whole register space stays in probation and is counted as ``dropped``; at most 16 distinct
values are kept per variable.
"""

from __future__ import annotations

import math
import re
import struct
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Any, Final, Self

from otsentry.baseline.aspect import (
    MAPPINGS,
    AnomalyKind,
    Aspect,
    AspectContext,
    AspectDataError,
    Deviation,
    ReportedOnce,
    iso,
)
from otsentry.baseline.items import iso_seconds
from otsentry.baseline.tiered import TieredTable
from otsentry.model import Event

__all__ = ["ValueModel", "ValueStats", "ValuesAspect", "classify", "samples"]

#: a variable: (protocol, server, space, view, address) — see ``_label``
Key = tuple[str, str, Any, str, Any]
Value = bool | int | float | str

MIN_SAMPLES = 20
ENUM_MAX = 8
DISTINCT_CAP = 16
MAX_VARIABLES = 20_000
MAX_HANDLES = 4_096
MAX_BLOCKS = 8_192
MODELS = ("constant", "enumerated", "counter", "range", "sparse", "any")

_READ_TABLES = {1: "coil", 2: "discrete_input", 3: "holding_register", 4: "input_register"}
_WRITE_TABLES = {5: "coil", 6: "holding_register", 15: "coil", 16: "holding_register"}
_SHORT = {"coil": "coil", "discrete_input": "DI", "holding_register": "HR", "input_register": "IR"}
_S7_AREAS = {0x81: "I", 0x82: "Q", 0x83: "M", 0x1C: "C", 0x1D: "T", 0x80: "P"}
_WIDTH = {"B": 256, "W": 65_536, "D": None}
_F32 = struct.Struct(">f")


# -- samples ----------------------------------------------------------------------------------
def samples(event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
    """(variable, value, written) for every value ``event`` carries; the value is None for an
    S7 chunk whose bytes are no plausible REAL (the REAL view of that chunk then dies)."""
    protocol = event.envelope.protocol
    if protocol == "modbus":
        yield from _modbus(event)
    elif protocol == "s7comm":
        yield from _s7(event)
    elif protocol == "opcua":
        yield from _opcua_direct(event)


def _modbus(event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
    f = event.fields
    fc = f.get("function_code")
    server = event.envelope.conn.server_ip
    unit = f.get("unit_id")
    table = _READ_TABLES.get(fc) if isinstance(fc, int) else None
    if table is not None or fc == 23:
        values = f.get("values")
        address = f.get("address")
        if event.outcome == "success" and isinstance(values, list) and isinstance(address, int):
            table = table or "holding_register"
            for i, v in enumerate(values):
                yield ("modbus", server, unit, table, address + i), v, False
        if fc != 23:
            return
        values, address, table = f.get("write_values"), f.get("write_address"), "holding_register"
    else:
        table = _WRITE_TABLES.get(fc) if isinstance(fc, int) else None
        if table is None:
            return
        values, address = f.get("values"), f.get("address")
    if isinstance(values, list) and isinstance(address, int):
        for i, v in enumerate(values):
            yield ("modbus", server, unit, table, address + i), v, True


def _s7(event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
    action = event.action
    if action == "s7comm-read-var":
        if event.outcome != "success":
            return
        write = False
    elif action == "s7comm-write-var":
        write = True
    else:
        return
    f = event.fields
    items, values = f.get("items"), f.get("values")
    if not isinstance(items, list) or not isinstance(values, list):
        return
    server = event.envelope.conn.server_ip
    for item, value in zip(items, values, strict=False):
        if not isinstance(item, MAPPINGS) or not isinstance(value, MAPPINGS):
            continue
        if not write and value.get("return_code") != 255:
            continue
        hexdata = value.get("value")
        area = item.get("area")
        start = item.get("byte")
        if not isinstance(hexdata, str) or not isinstance(start, int):
            continue
        try:
            data = bytes.fromhex(hexdata)
        except ValueError:
            continue
        space = f"DB{item.get('db')}" if area in (0x84, 0x85) else _S7_AREAS.get(area)  # type: ignore[arg-type]
        if space is None:
            continue
        if item.get("transport_size_name") == "bit":
            if data:
                bit = item.get("bit", 0)
                yield ("s7comm", server, space, f"X{bit}", start), bool(data[0] & 1), write
            continue
        yield from _s7_bytes(server, space, start, data, write)


def _s7_bytes(
    server: str, space: str, start: int, data: bytes, write: bool
) -> Iterator[tuple[Key, Value | None, bool]]:
    """Data blocks: aligned 4-byte chunks as a REAL view plus two words, 2-byte words, bytes;
    other areas: bytes and aligned words."""
    end = start + len(data)
    if space.startswith("DB"):
        o = start
        while o < end:
            i = o - start
            if o % 4 == 0 and o + 4 <= end:
                yield ("s7comm", server, space, "D", o), _real(data[i : i + 4]), write
                yield ("s7comm", server, space, "W", o), (data[i] << 8) | data[i + 1], write
                yield ("s7comm", server, space, "W", o + 2), (data[i + 2] << 8) | data[i + 3], write
                o += 4
            elif o % 2 == 0 and o + 2 <= end:
                yield ("s7comm", server, space, "W", o), (data[i] << 8) | data[i + 1], write
                o += 2
            else:
                yield ("s7comm", server, space, "B", o), data[i], write
                o += 1
        return
    for i, byte in enumerate(data):
        o = start + i
        yield ("s7comm", server, space, "B", o), byte, write
        if o % 2 == 0 and i + 1 < len(data):
            yield ("s7comm", server, space, "W", o), (byte << 8) | data[i + 1], write


def _real(chunk: bytes) -> float | None:
    """The big-endian REAL in ``chunk``, or None when it is no plausible measurement (cached:
    a polled block brings the same few values again and again)."""
    if chunk in _REALS:
        return _REALS[chunk]
    value: float = _F32.unpack(chunk)[0]
    found: float | None
    if value == 0.0:
        found = 0.0
    elif not math.isfinite(value) or not 1e-6 <= abs(value) <= 1e9:
        found = None
    else:
        found = float(f"{value:.7g}")
    if len(_REALS) >= _REALS_CAP:
        _REALS.clear()
    _REALS[chunk] = found
    return found


#: 4-byte chunk → ``_real``'s answer (bounded: cleared when full)
_REALS: dict[bytes, float | None] = {}
_REALS_CAP: Final = 65_536


def _scalar(value: Any) -> Value | None:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _opcua_direct(event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
    """Read results and Write requests (Publish goes through the aspect's handle map)."""
    action = event.action
    f = event.fields
    server = event.envelope.conn.server_ip
    nodes = f.get("nodes")
    if not isinstance(nodes, list):
        return
    if action == "opcua-write":
        for node in nodes:
            if isinstance(node, MAPPINGS) and node.get("attribute_id") == 13:
                value = _scalar(node.get("value"))
                if value is not None:
                    yield ("opcua", server, "", "node", str(node.get("node_id"))), value, True
    elif action == "opcua-read":
        results = f.get("results")
        if not isinstance(results, list) or len(results) != len(nodes):
            return
        for node, result in zip(nodes, results, strict=True):
            if not isinstance(node, MAPPINGS) or node.get("attribute_id") != 13:
                continue
            if not isinstance(result, MAPPINGS) or result.get("status", 0) != 0:
                continue
            value = _scalar(result.get("value"))
            if value is not None:
                yield ("opcua", server, "", "node", str(node.get("node_id"))), value, False


# -- learning statistics ----------------------------------------------------------------------
def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "text"
    return "number"


class ValueStats:
    """What learning saw of one variable: counts, distinct values (capped), min/max and the
    steps between successive samples (for counters)."""

    __slots__ = (
        "count",
        "distinct",
        "downs",
        "first",
        "floats",
        "hi",
        "implausible",
        "kind",
        "last",
        "last_new",
        "lo",
        "overflow",
        "prev",
        "reads",
        "ups",
        "wraps",
        "writes",
    )

    def __init__(self) -> None:
        self.count = self.reads = self.writes = 0
        self.first = self.last = 0
        self.distinct: dict[Value, int] = {}
        self.overflow = False
        self.last_new = 0  # sample number of the last value not seen before
        self.kind = ""  # "bool", "number", "text" or "mixed"
        self.lo = math.inf
        self.hi = -math.inf
        self.prev: float | None = None
        self.ups = self.downs = self.wraps = 0
        self.floats = False
        self.implausible = 0

    def add(self, value: Value, write: bool, ts: int, modulus: int | None) -> None:
        """Fold one sample in."""
        count = self.count + 1
        self.count = count
        if count == 1:
            self.first = ts
        if ts > self.last:
            self.last = ts
        if write:
            self.writes += 1
        else:
            self.reads += 1
        t = type(value)
        kind = "number" if t is int or t is float else "bool" if t is bool else "text"
        if kind != self.kind:
            self.kind = kind if not self.kind else "mixed"
        distinct = self.distinct
        seen = distinct.get(value)
        if seen is not None:
            distinct[value] = seen + 1
        elif len(distinct) < DISTINCT_CAP:
            distinct[value] = 1
            self.last_new = count
        else:
            self.overflow = True
            self.last_new = count
        if kind != "number":
            return
        v = float(value)
        if t is float and not v.is_integer():
            self.floats = True
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v
        prev = self.prev
        if prev is not None and v != prev:
            if v > prev:
                self.ups += 1
            elif _wrapped(prev, v, modulus):
                self.wraps += 1
            else:
                self.downs += 1
        self.prev = v


def _wrapped(prev: float, value: float, modulus: int | None) -> bool:
    """A step from ``prev`` down to ``value`` that is a counter passing its word size."""
    return modulus is not None and prev >= modulus / 2 and (value - prev) % modulus <= modulus / 4


def _modulus(key: Key) -> int | None:
    if key[0] == "modbus":
        return 65_536
    if key[0] == "s7comm":
        return _WIDTH.get(key[3])
    return None


# -- learned models ---------------------------------------------------------------------------
class ValueModel:
    """The learned model of one variable and its check."""

    __slots__ = (
        "allowed",
        "first",
        "hi",
        "high",
        "key",
        "last",
        "lo",
        "low",
        "model",
        "modulus",
        "reads",
        "resets",
        "samples",
        "values",
        "vtype",
        "writes",
    )

    def __init__(self, key: Key, model: str) -> None:
        self.key = key
        self.model = model
        self.samples = self.reads = self.writes = 0
        self.first = self.last = 0
        self.values: list[Value] = []  # constant / enumerated / sparse
        self.lo = self.hi = self.low = self.high = 0.0  # range: seen and checked bounds
        self.modulus = _modulus(key)
        self.resets = False  # counter: a backward step was accepted
        self.allowed: frozenset[Value] = frozenset()
        self.vtype: type = type(None)

    def settle(self) -> None:
        """Precompute what ``ok`` needs (after a change of model)."""
        self.allowed = (
            frozenset(self.values)
            if self.model in ("constant", "enumerated") and self.values
            else frozenset()
        )
        self.vtype = type(self.values[0]) if self.values else type(None)

    def ok(self, value: Value | None) -> bool:
        """The common case at once: True when ``value`` surely fits (counters always go on to
        ``violation``, which needs the run's last value)."""
        if self.allowed:
            return type(value) is self.vtype and value in self.allowed
        if self.model == "range":
            return (type(value) is int or type(value) is float) and (self.low <= value <= self.high)
        return self.model != "counter"

    @property
    def checked(self) -> bool:
        """Whether ``violation`` can ever report (sparse and any models never do)."""
        return self.model in ("constant", "enumerated", "counter", "range")

    def violation(self, value: Value | None, prev: float | None) -> bool:
        """True when ``value`` departs from the model (``prev``: the counter's last value in this
        run)."""
        model = self.model
        if model in ("constant", "enumerated"):
            if value is None:
                return True
            if isinstance(value, float) and isinstance(self.values[0], float):
                return not any(
                    math.isclose(value, v, rel_tol=1e-6)
                    for v in self.values
                    if isinstance(v, float)
                )
            return value not in self.values or type(value) is not type(self.values[0])
        if model == "range":
            if value is None or isinstance(value, bool | str):
                return True
            return not self.low <= value <= self.high
        if model == "counter":
            if value is None or isinstance(value, bool | str):
                return True
            if prev is None or value >= prev or self.resets:
                return False
            return not _wrapped(prev, value, self.modulus) and prev - value > self._slack()
        return False

    def _slack(self) -> float:
        """How far back a counter may step without a report: half its learned span, so that a
        rising measurement taken for a counter never reports when it falls again, while a
        reset or an overwrite with a small value does."""
        return max(2.0, 0.5 * (self.hi - self.lo))

    def describe(self) -> str:
        """What learning saw, in words: "always 520 (constant, 100 samples)"."""
        n = f"{self.samples:,} samples"
        if self.model == "constant":
            return f"always {_show(self.values[0], self.key)} (constant, {n})"
        if self.model == "enumerated":
            shown = ", ".join(_show(v, self.key) for v in self.values)
            return f"always one of {shown} (enumerated, {n})"
        if self.model == "range":
            return (
                f"always {_num(self.lo)}-{_num(self.hi)} "
                f"(range, checked {_num(self.low)}-{_num(self.high)}, {n})"
            )
        if self.model == "counter":
            return f"a counter from {_num(self.lo)} to {_num(self.hi)} that only counted up ({n})"
        return f"{self.model} ({n})"

    def expected(self) -> dict[str, Any]:
        """The model as alert data."""
        out: dict[str, Any] = {"model": self.model, "samples": self.samples}
        if self.model in ("constant", "enumerated"):
            out["values"] = list(self.values)
        if self.model in ("range", "counter"):
            out.update(min=self.lo, max=self.hi)
        if self.model == "range":
            out.update(low=self.low, high=self.high)
        return out

    # -- file form --------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """The model as plain data (key fields first)."""
        out = _key_data(self.key)
        out["label"] = _label(self.key)
        out["model"] = self.model
        if self.model in ("constant", "enumerated", "sparse"):
            out["values"] = list(self.values)
        if self.model in ("range", "counter"):
            out["min"] = _num_data(self.lo)
            out["max"] = _num_data(self.hi)
        if self.model == "range":
            out["low"] = _num_data(self.low)
            out["high"] = _num_data(self.high)
        if self.model == "counter" and self.resets:
            out["resets"] = True
        out["samples"] = self.samples
        out["reads"] = self.reads
        out["writes"] = self.writes
        out["first_seen"] = iso(self.first)
        out["last_seen"] = iso(self.last)
        return out

    @classmethod
    def from_data(cls, data: Mapping[str, Any], where: str) -> ValueModel:
        """Rebuild from ``to_data``'s output."""
        key = _key_from_data(data, where)
        model = data.get("model")
        if model not in MODELS:
            raise AspectDataError(f"{where}.model", f"unknown model {model!r}")
        m = cls(key, model)
        try:
            m.samples = int(data.get("samples", 0))
            m.reads = int(data.get("reads", 0))
            m.writes = int(data.get("writes", 0))
            m.values = list(data.get("values") or [])
            if model in ("range", "counter"):
                m.lo, m.hi = float(data["min"]), float(data["max"])
            if model == "range":
                m.low, m.high = float(data["low"]), float(data["high"])
            m.resets = bool(data.get("resets", False))
            m.first = _parse_ts(data.get("first_seen"))
            m.last = _parse_ts(data.get("last_seen"))
        except (KeyError, TypeError, ValueError) as exc:
            raise AspectDataError(where, f"bad {model} model: {exc}") from None
        if model in ("constant", "enumerated") and not m.values:
            raise AspectDataError(f"{where}.values", f"a {model} model needs values")
        m.settle()
        return m


def classify(key: Key, stats: ValueStats, min_samples: int = MIN_SAMPLES) -> ValueModel:
    """The Erez & Wool class of a variable from its learning statistics (see the module doc)."""
    values = sorted(stats.distinct, key=_value_order)
    if stats.count < min_samples:
        m = ValueModel(key, "sparse")
        m.values = values[:ENUM_MAX]
    elif stats.kind == "mixed" or (key[0] == "s7comm" and key[3] == "D" and stats.implausible):
        m = ValueModel(key, "any")
    elif len(values) == 1 and not stats.overflow:
        m = ValueModel(key, "constant")
        m.values = values
    elif stats.kind in ("bool", "text"):
        saturated = not stats.overflow and stats.last_new <= stats.count / 2
        m = ValueModel(key, "enumerated" if saturated else "any")
        m.values = values if saturated else []
    elif (
        stats.downs == 0
        and not stats.writes
        and not stats.floats
        and stats.ups >= max(3, stats.count // 20)
    ):
        m = ValueModel(key, "counter")
        m.lo, m.hi = stats.lo, stats.hi
    elif (
        not stats.overflow
        and len(values) <= ENUM_MAX
        and not stats.writes
        and not stats.floats
        and stats.last_new <= stats.count / 2
        and stats.hi - stats.lo + 1 > 2 * len(values)
    ):
        m = ValueModel(key, "enumerated")
        m.values = values
    else:
        m = ValueModel(key, "range")
        _set_range(m, stats.lo, stats.hi, integral=not stats.floats)
    m.samples, m.reads, m.writes = stats.count, stats.reads, stats.writes
    m.first, m.last = stats.first, stats.last
    m.settle()
    return m


def _set_range(m: ValueModel, lo: float, hi: float, *, integral: bool) -> None:
    span = hi - lo
    margin = max(0.5 * span, 0.1 * max(abs(lo), abs(hi)), 1.0 if integral else 0.0)
    m.lo, m.hi = lo, hi
    low, high = lo - margin, hi + margin
    if integral:
        low, high = math.floor(low), math.ceil(high)
    m.low, m.high = float(f"{low:.7g}"), float(f"{high:.7g}")


# -- labels and file keys ---------------------------------------------------------------------
def _label(key: Key) -> str:
    """The variable in an engineer's words: "HR 40 on 10.10.30.5 unit 1", "DB2.DBD0 (REAL) on
    10.10.30.6", "node ns=2;i=4 on 10.10.30.7"."""
    protocol, server, space, view, address = key
    if protocol == "modbus":
        return f"{_SHORT.get(view, view)} {address} on {server} unit {space}"
    if protocol == "s7comm":
        return f"{_s7_address(space, view, address)} on {server}"
    return f"node {address} on {server}"


def _s7_address(space: str, view: str, offset: int) -> str:
    prefix = f"{space}.DB" if space.startswith("DB") else space
    if view.startswith("X"):
        return f"{prefix}X{offset}.{view[1:]}"
    text = f"{prefix}{view}{offset}"
    return f"{text} (REAL)" if view == "D" else text


def _key_data(key: Key) -> dict[str, Any]:
    protocol, server, space, view, address = key
    if protocol == "modbus":
        return {
            "protocol": protocol,
            "server": server,
            "unit": space,
            "table": view,
            "address": address,
        }
    if protocol == "s7comm":
        return {
            "protocol": protocol,
            "server": server,
            "area": space,
            "view": view,
            "offset": address,
        }
    return {"protocol": protocol, "server": server, "node": address}


def _key_from_data(data: Mapping[str, Any], where: str) -> Key:
    try:
        protocol, server = str(data["protocol"]), str(data["server"])
        if protocol == "modbus":
            unit = data["unit"]
            return (protocol, server, unit, str(data["table"]), int(data["address"]))
        if protocol == "s7comm":
            return (protocol, server, str(data["area"]), str(data["view"]), int(data["offset"]))
        if protocol == "opcua":
            return (protocol, server, "", "node", str(data["node"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise AspectDataError(where, f"bad variable key: {exc}") from None
    raise AspectDataError(f"{where}.protocol", f"unknown protocol {protocol!r}")


def _sort_key(key: Key) -> tuple[Any, ...]:
    protocol, server, space, view, address = key
    try:
        ip: tuple[int, int] = (ip_address(server).version, int(ip_address(server)))
    except ValueError:
        ip = (9, 0)
    return (protocol, ip, server, str(space), str(view), str(type(address)), address)


def _value_order(value: Value) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _show(value: Value, key: Key) -> str:
    if isinstance(value, bool) and key[0] == "modbus":
        return "on" if value else "off"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _num(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:.6g}"


def _num_data(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def _parse_ts(text: Any) -> int:
    """ISO text (``iso``) back to ns; 0 when absent."""
    if not text:
        return 0
    text = str(text)
    found = _ISO_US.fullmatch(text)
    if found is not None:
        whole, frac = found.groups()
        return iso_seconds(whole) * 1_000_000_000 + int(frac.ljust(6, "0")) * 1000
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(dt.replace(tzinfo=UTC).timestamp()) * 1_000_000_000 + dt.microsecond * 1000


_ISO_US: Final = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{1,6})Z")


# -- the aspect -------------------------------------------------------------------------------
class ValuesAspect(Aspect):
    """Learns a value model per variable and reports values outside it (``value_out_of_range``).

    Options (``baseline.values``): ``min_samples`` (20), ``max_variables`` (20 000).
    """

    name = "values"
    protocols = frozenset({"modbus", "s7comm", "opcua"})

    def __init__(self, context: AspectContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        self.min_samples = int(opts.get("min_samples", MIN_SAMPLES))
        self.max_variables = int(opts.get("max_variables", MAX_VARIABLES))
        self.stats_table: TieredTable[Key, ValueStats] = TieredTable(
            self.max_variables, self.max_variables // 4
        )
        self.models: dict[Key, ValueModel] = {}
        self._dirty = False
        #: (client, server, client handle) → node id, from CreateMonitoredItems (LRU, per run)
        self._handles: OrderedDict[tuple[str, str, int], str] = OrderedDict()
        self._counter_last: dict[Key, float] = {}
        #: block read → the variables it covers (index, S7 view, model); the last values read
        self._plans: dict[tuple[Any, ...], list[tuple[int, str, ValueModel]]] = {}
        self._last_read: dict[tuple[Any, ...], Any] = {}
        self._reported = ReportedOnce(16_384)
        self.loaded_dropped = 0
        self.checked_values = 0
        self.deviations = 0
        self.suppressed = 0

    # -- events → samples -------------------------------------------------------------------
    def _samples(self, event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
        if event.envelope.protocol == "opcua":
            action = event.action
            if action == "opcua-publish":
                yield from self._publish(event)
                return
            if action == "opcua-create-monitored-items":
                self._map_handles(event)
                return
        yield from samples(event)

    def _map_handles(self, event: Event) -> None:
        conn = event.envelope.conn
        items = event.fields.get("items")
        if not isinstance(items, list):
            return
        for item in items:
            if isinstance(item, Mapping) and item.get("attribute_id", 13) == 13:
                handle = item.get("client_handle")
                if isinstance(handle, int):
                    handles = self._handles
                    handles[(conn.client_ip, conn.server_ip, handle)] = str(item.get("node_id"))
                    if len(handles) > MAX_HANDLES:
                        handles.popitem(last=False)

    def _publish(self, event: Event) -> Iterator[tuple[Key, Value | None, bool]]:
        values = event.fields.get("values")
        if not isinstance(values, list):
            return
        conn = event.envelope.conn
        for v in values:
            if not isinstance(v, MAPPINGS) or v.get("status", 0) != 0:
                continue
            handle = v.get("client_handle")
            if not isinstance(handle, int):
                continue
            node = self._handles.get((conn.client_ip, conn.server_ip, handle))
            value = _scalar(v.get("value"))
            if node is not None and value is not None:
                yield ("opcua", conn.server_ip, "", "node", node), value, False

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        ts = event.envelope.ts
        table = self.stats_table
        for key, value, write in self._samples(event):
            stats = table.touch(key, ValueStats)
            if value is None:
                stats.implausible += 1
                continue
            stats.add(value, write, ts, _modulus(key))
            self._dirty = True

    def _settle(self) -> None:
        if not self._dirty:
            return
        models = self.models
        for key, stats in self.stats_table.items():
            if stats.count or stats.implausible:
                models[key] = classify(key, stats, self.min_samples)
        # a data block chunk is a REAL or two words, never both
        for key in [k for k in models if k[0] == "s7comm" and k[3] == "D"]:
            if models[key].checked:
                protocol, server, space, _, offset = key
                models.pop((protocol, server, space, "W", offset), None)
                models.pop((protocol, server, space, "W", offset + 2), None)
            else:
                del models[key]
        self._plans.clear()
        self._last_read.clear()
        self._dirty = False

    def end_learning(self, ts: int) -> None:
        self._settle()

    def to_data(self) -> dict[str, Any]:
        self._settle()
        counts = {m: 0 for m in MODELS}
        rows = []
        for key in sorted(self.models, key=_sort_key):
            m = self.models[key]
            counts[m.model] += 1
            rows.append(m.to_data())
        return {
            "min_samples": self.min_samples,
            "max_variables": self.max_variables,
            "models": {k: v for k, v in counts.items() if v},
            "dropped": self.stats_table.dropped + self.stats_table.evicted + self.loaded_dropped,
            "variables": rows,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        aspect = cls(context)
        try:
            aspect.min_samples = int(data.get("min_samples", MIN_SAMPLES))
            aspect.loaded_dropped = int(data.get("dropped", 0))
        except (TypeError, ValueError) as exc:
            raise AspectDataError("min_samples", str(exc)) from None
        rows = data.get("variables") or []
        if not isinstance(rows, list):
            raise AspectDataError("variables", "not a list")
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise AspectDataError(f"variables[{i}]", "not a mapping")
            model = ValueModel.from_data(row, f"variables[{i}]")
            aspect.models[model.key] = model
        return aspect

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        if self._dirty:
            self._settle()
        if not self.models:
            return []
        protocol = event.envelope.protocol
        if protocol == "modbus":
            f = event.fields
            table = _READ_TABLES.get(f.get("function_code", 0))
            values = f.get("values")
            address = f.get("address")
            if (
                table is not None
                and event.outcome == "success"
                and isinstance(values, list)
                and isinstance(address, int)
            ):
                server = event.envelope.conn.server_ip
                block = ("modbus", server, f.get("unit_id"), table, address, len(values))
                return self._check_block(event, block, values)
        elif protocol == "s7comm" and event.action == "s7comm-read-var":
            return self._check_s7_read(event)
        return self._check_samples(event)

    def _check_samples(self, event: Event) -> list[Deviation]:
        """Every value of the event, one by one (writes, OPC UA, S7 bits)."""
        models = self.models
        out: list[Deviation] = []
        for key, value, write in self._samples(event):
            m = models.get(key)
            if m is not None and m.checked:
                self.checked_values += 1
                if not m.ok(value):
                    dev = self._judge(m, value, write, event)
                    if dev is not None:
                        out.append(dev)
        return out

    def _check_s7_read(self, event: Event) -> list[Deviation]:
        if event.outcome != "success":
            return []
        f = event.fields
        items, values = f.get("items"), f.get("values")
        if not isinstance(items, list) or not isinstance(values, list):
            return []
        server = event.envelope.conn.server_ip
        out: list[Deviation] = []
        for item, value in zip(items, values, strict=False):
            if not isinstance(item, MAPPINGS) or not isinstance(value, MAPPINGS):
                continue
            hexdata = value.get("value")
            start = item.get("byte")
            area = item.get("area")
            if (
                value.get("return_code") != 255
                or not isinstance(hexdata, str)
                or not isinstance(start, int)
                or item.get("transport_size_name") == "bit"
            ):
                if item.get("transport_size_name") == "bit":
                    return self._check_samples(event)
                continue
            space = f"DB{item.get('db')}" if area in (0x84, 0x85) else _S7_AREAS.get(area)  # type: ignore[arg-type]
            if space is None:
                continue
            block = ("s7comm", server, space, start, len(hexdata) // 2)
            out.extend(self._check_block(event, block, hexdata))
        return out

    def _check_block(self, event: Event, block: tuple[Any, ...], values: Any) -> list[Deviation]:
        """A read of consecutive values (Modbus registers, S7 bytes as hex): the variables it
        covers are looked up once per block (``_plans``); a poll answering exactly what the last
        one did is passed over."""
        plan = self._plans.get(block)
        if plan is None:
            plan = self._plan(block)
        if not plan:
            return []
        last = self._last_read
        if last.get(block) == values:
            return []
        if len(last) >= MAX_BLOCKS:
            last.clear()
        last[block] = values
        data = bytes.fromhex(values) if isinstance(values, str) else None
        out: list[Deviation] = []
        n = len(values) if data is None else len(data)
        checked = 0
        for i, view, m in plan:
            if data is None:
                if i >= n:
                    break
                value: Value | None = values[i]
            elif view == "D":
                if i + 4 > n:
                    break
                value = _real(data[i : i + 4])
            elif view == "W":
                if i + 2 > n:
                    break
                value = (data[i] << 8) | data[i + 1]
            else:
                if i >= n:
                    break
                value = data[i]
            checked += 1
            if not m.ok(value):
                dev = self._judge(m, value, False, event)
                if dev is not None:
                    out.append(dev)
        self.checked_values += checked
        return out

    def _plan(self, block: tuple[Any, ...]) -> list[tuple[int, str, ValueModel]]:
        models = self.models
        plan: list[tuple[int, str, ValueModel]] = []
        if block[0] == "modbus":
            _, server, unit, table, address, n = block
            for i in range(n):
                m = models.get(("modbus", server, unit, table, address + i))
                if m is not None and m.checked:
                    plan.append((i, "", m))
        else:
            _, server, space, start, n = block
            for key, _v, _w in _s7_bytes(server, space, start, bytes(n), False):
                m = models.get(key)
                if m is not None and m.checked:
                    plan.append((key[4] - start, key[3], m))
        if len(self._plans) >= MAX_BLOCKS:
            self._plans.clear()
        self._plans[block] = plan
        return plan

    def _judge(
        self, m: ValueModel, value: Value | None, write: bool, event: Event
    ) -> Deviation | None:
        prev: float | None = None
        if m.model == "counter":
            prev = self._counter_last.get(m.key)
            if type(value) is int or type(value) is float:
                self._counter_last[m.key] = float(value)
        if not m.violation(value, prev):
            return None
        return self._deviation(m, value, write, prev, event)

    def _deviation(
        self, m: ValueModel, value: Value | None, write: bool, prev: float | None, event: Event
    ) -> Deviation | None:
        conn = event.envelope.conn
        client = conn.client_ip
        if not self._reported.first((m.key, client, write)):
            self.suppressed += 1
            return None
        self.deviations += 1
        shown = "no plausible REAL" if value is None else _show(value, m.key)
        verb = "wrote" if write else "read"
        observed = f"{client} {verb} {shown}"
        if m.model == "counter" and prev is not None:
            observed += f" after {_num(prev)}"
        return Deviation(
            kind=AnomalyKind.VALUE_OUT_OF_RANGE,
            aspect=self.name,
            item={**_key_data(m.key), "value": value},
            reason=f"{_label(m.key)} was {m.describe()}; {observed}",
            expected=m.expected(),
            observed={"value": value, "access": "write" if write else "read", "client": client},
            level="high" if write else "medium",
            event=event,
            hosts=(client, conn.server_ip),
        )

    def accept(self, item: Mapping[str, Any]) -> bool:
        try:
            key = _key_from_data(item, "item")
        except AspectDataError:
            return False
        m = self.models.get(key)
        if m is None or "value" not in item:
            return False
        value = item["value"]
        if m.model in ("constant", "enumerated"):
            if value not in m.values:
                m.values = sorted([*m.values, value], key=_value_order)
            m.model = "enumerated" if len(m.values) > 1 else "constant"
        elif m.model == "range" and isinstance(value, int | float) and not isinstance(value, bool):
            integral = m.low.is_integer() and m.high.is_integer()
            _set_range(m, min(m.lo, value), max(m.hi, value), integral=integral)
        elif m.model == "counter":
            m.resets = True
        else:
            return False
        m.settle()
        self._plans.clear()
        self._last_read.clear()
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "variables": len(self.models) or len(self.stats_table),
            "dropped": self.stats_table.dropped + self.stats_table.evicted,
            "checked_values": self.checked_values,
            "deviations": self.deviations,
            "suppressed": self.suppressed,
        }
