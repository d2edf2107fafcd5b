"""Readers for the Zeek / ICSNPP Modbus baselines under ../shared/pcaps.

Three kinds of expected output exist for Modbus captures (see ``../shared/pcaps/MANIFEST.tsv``,
notes column, and ``../shared/pcaps/icsnpp/SCHEMAS.md``):

* Zeek ASCII logs (TSV with a ``#fields`` header): Zeek's own ``modbus.log`` (columns
  ``ts uid id.* tid unit func pdu_type exception``) and ICSNPP's ``modbus_detailed.log``,
  ``modbus_mask_write_register.log``, ``modbus_read_write_multiple_registers.log``.
* ICSNPP's ``modbus.log`` baseline is post-filtered by the plugin's test script: rows holding a
  ``REQ`` cell are dropped, the ``tid unit pdu_type`` columns are cut and the header is gone, so
  the file is headerless with columns ``ts uid id.orig_h id.orig_p id.resp_h id.resp_p func
  exception`` and holds responses only.
* Zeek's ``coil_parsing_*`` btests print events (``modbus_message, [conn id], [headers],
  is_orig``) through ``sort | uniq -c``, so each line starts with a repeat count; other btests
  (``register_parsing``) print events without a count.

Timestamps are masked by btest (``XXXXXXXXXX.XXXXXX``) and kept as text. ``uid`` and the random
``*_link_id`` columns are dropped. Zeek's ``-`` (unset) becomes None, ``(empty)`` an empty tuple
or string.

Zeek names function codes with ``Modbus::function_codes`` (base/protocols/modbus/consts.zeek):
``READ_HOLDING_REGISTERS``; an exception response gets the suffix ``_EXCEPTION``; a code not in
the table is ``unknown-N`` with N the *raw* code, exception bit included (``unknown-156`` = 0x9C =
exception response to FC 28). Exceptions are named by ``Modbus::exception_codes``
(``ILLEGAL_DATA_ADDRESS``; unknown ones ``unknown-N``). ``zeek_function`` /
``zeek_exception`` turn those names back into numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Modbus::function_codes (Zeek base/protocols/modbus/consts.zeek).
FUNCTION_NAMES: dict[int, str] = {
    0x01: "READ_COILS",
    0x02: "READ_DISCRETE_INPUTS",
    0x03: "READ_HOLDING_REGISTERS",
    0x04: "READ_INPUT_REGISTERS",
    0x05: "WRITE_SINGLE_COIL",
    0x06: "WRITE_SINGLE_REGISTER",
    0x07: "READ_EXCEPTION_STATUS",
    0x08: "DIAGNOSTICS",
    0x0B: "GET_COMM_EVENT_COUNTER",
    0x0C: "GET_COMM_EVENT_LOG",
    0x0F: "WRITE_MULTIPLE_COILS",
    0x10: "WRITE_MULTIPLE_REGISTERS",
    0x11: "REPORT_SLAVE_ID",
    0x14: "READ_FILE_RECORD",
    0x15: "WRITE_FILE_RECORD",
    0x16: "MASK_WRITE_REGISTER",
    0x17: "READ_WRITE_MULTIPLE_REGISTERS",
    0x18: "READ_FIFO_QUEUE",
    0x2B: "ENCAP_INTERFACE_TRANSPORT",
    0x5B: "OBJECT_MESSAGING",
    0x09: "PROGRAM_484",
    0x0A: "POLL_484",
    0x0D: "PROGRAM_584_984",
    0x0E: "POLL_584_984",
    0x12: "PROGRAM_884_U84",
    0x13: "RESET_COMM_LINK_884_U84",
    0x28: "PROGRAM_CONCEPT",
    0x29: "MULTIPLE_FUNCTION_CODES",
    0x5A: "PROGRAM_UNITY",
    0x7D: "FIRMWARE_REPLACEMENT",
    0x7E: "PROGRAM_584_984_2",
    0x7F: "REPORT_LOCAL_ADDRESS",
}

#: Modbus::exception_codes.
EXCEPTION_NAMES: dict[int, str] = {
    0x01: "ILLEGAL_FUNCTION",
    0x02: "ILLEGAL_DATA_ADDRESS",
    0x03: "ILLEGAL_DATA_VALUE",
    0x04: "SLAVE_DEVICE_FAILURE",
    0x05: "ACKNOWLEDGE",
    0x06: "SLAVE_DEVICE_BUSY",
    0x08: "MEMORY_PARITY_ERROR",
    0x0A: "GATEWAY_PATH_UNAVAILABLE",
    0x0B: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}

_FUNCTION_CODES = {name: code for code, name in FUNCTION_NAMES.items()}
_EXCEPTION_CODES = {name: code for code, name in EXCEPTION_NAMES.items()}


def zeek_function(name: str) -> tuple[int, bool]:
    """Zeek's ``func`` → (function code with the exception bit cleared, is exception response).

    ``READ_COILS`` → (1, False); ``READ_COILS_EXCEPTION`` → (1, True); ``unknown-156`` → (28, True).
    """
    if name in _FUNCTION_CODES:
        return _FUNCTION_CODES[name], False
    if name.endswith("_EXCEPTION") and name[: -len("_EXCEPTION")] in _FUNCTION_CODES:
        return _FUNCTION_CODES[name[: -len("_EXCEPTION")]], True
    m = re.fullmatch(r"unknown-(\d+)", name)
    if m:
        raw = int(m.group(1))
        return raw & 0x7F, bool(raw & 0x80)
    raise ValueError(f"not a Zeek Modbus function name: {name!r}")


def zeek_exception(name: str | None) -> int | None:
    """Zeek's ``exception`` / ``exception_code`` name → exception code (None for ``-``)."""
    if name is None:
        return None
    if name in _EXCEPTION_CODES:
        return _EXCEPTION_CODES[name]
    m = re.fullmatch(r"unknown-(\d+)", name)
    if m:
        return int(m.group(1))
    raise ValueError(f"not a Zeek Modbus exception name: {name!r}")


# --- generic Zeek ASCII log reader -------------------------------------------------------------


@dataclass(frozen=True)
class ZeekLog:
    """A Zeek ASCII log: its column names and rows (cells as text; None for unset)."""

    path: Path
    fields: tuple[str, ...]
    rows: tuple[tuple[int, dict[str, str | None]], ...]  # (1-based line number, row)
    set_separator: str
    empty_field: str


def read_zeek_log(path: Path, fields: tuple[str, ...] | None = None) -> ZeekLog:
    """Read a Zeek TSV log. ``fields`` names the columns of a headerless file (a header, when
    present, must agree with it). btest's ``### BTest`` banner and ``#open``/``#close`` lines
    are skipped."""
    separator, set_sep, empty, unset = "\t", ",", "(empty)", "-"
    header: tuple[str, ...] | None = None
    rows: list[tuple[int, dict[str, str | None]]] = []
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("###"):
            continue
        if line.startswith("#"):
            if line.startswith("#separator "):
                separator = line.split(" ", 1)[1].encode().decode("unicode_escape")
                continue
            key, _, value = line[1:].partition(separator)
            if key == "set_separator":
                set_sep = value
            elif key == "empty_field":
                empty = value
            elif key == "unset_field":
                unset = value
            elif key == "fields":
                header = tuple(value.split(separator))
            continue
        columns = header or fields
        if columns is None:
            raise ValueError(f"{path}:{lineno}: data line before any #fields header")
        cells = line.split(separator)
        if len(cells) != len(columns):
            raise ValueError(
                f"{path}:{lineno}: {len(cells)} cells for {len(columns)} columns {columns}"
            )
        rows.append(
            (lineno, {c: (None if v == unset else v) for c, v in zip(columns, cells, strict=True)})
        )
    columns = header or fields
    if columns is None:
        raise ValueError(f"{path}: no #fields header and no column list given")
    if header is not None and fields is not None and header != fields:
        raise ValueError(f"{path}: header {header} is not the expected {fields}")
    return ZeekLog(Path(path), columns, tuple(rows), set_sep, empty)


def _count(v: str | None) -> int | None:
    return None if v is None else int(v)


def _vector(log: ZeekLog, v: str | None) -> tuple[int, ...] | None:
    if v is None:
        return None
    if v == log.empty_field:
        return ()
    return tuple(int(x) for x in v.split(log.set_separator))


def _bool(v: str | None) -> bool | None:
    return None if v is None else v == "T"


def _port(v: str | None) -> int:
    assert v is not None
    return int(v.split("/")[0])


def endpoint(host: str, port: int) -> str:
    """``ip:port`` (IPv6 in brackets), the form our dump and the tshark helper use."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- Modbus log rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModbusLogRow:
    """A modbus.log row (one PDU). ``tid``/``unit``/``pdu_type`` are None where the log lacks
    them (ICSNPP's post-filtered baseline)."""

    source: str  # "path:line"
    ts: str
    orig: str  # id.orig_h:id.orig_p (Zeek's connection originator = the Modbus client)
    resp: str
    tid: int | None
    unit: int | None
    func: str
    function_code: int
    is_exception: bool
    pdu_type: str | None  # "REQ" / "RESP"
    exception: str | None
    exception_code: int | None

    @property
    def direction(self) -> str | None:
        return {"REQ": "request", "RESP": "response"}.get(self.pdu_type or "")


@dataclass(frozen=True)
class DetailedRow:
    """An ICSNPP modbus_detailed.log row: a request/response pair, or one unmatched half."""

    source: str
    ts: str
    orig: str
    resp: str
    tid: int | None
    unit: int | None
    func: str
    function_code: int
    is_exception: bool
    address: int | None
    quantity: int | None
    request_values: tuple[int, ...] | None
    response_values: tuple[int, ...] | None
    matched: bool | None
    request_subfunction_code: str | None
    response_subfunction_code: str | None
    request_data: str | None
    response_data: str | None
    exception_code: int | None
    exception: str | None
    mei_type: str | None


@dataclass(frozen=True)
class MaskWriteRow:
    """An ICSNPP modbus_mask_write_register.log row (one FC 22 PDU)."""

    source: str
    ts: str
    orig: str
    resp: str
    is_orig: bool | None
    src: str  # source_h:source_p (the real sender of this PDU)
    dst: str
    tid: int | None
    unit: int | None
    func: str
    function_code: int
    is_exception: bool
    request_response: str | None  # "REQUEST" / "RESPONSE"
    address: int | None
    and_mask: int | None
    or_mask: int | None


@dataclass(frozen=True)
class ReadWriteMultipleRow:
    """An ICSNPP modbus_read_write_multiple_registers.log row (one FC 23 PDU)."""

    source: str
    ts: str
    orig: str
    resp: str
    is_orig: bool | None
    src: str
    dst: str
    tid: int | None
    unit: int | None
    func: str
    function_code: int
    is_exception: bool
    request_response: str | None
    write_start_address: int | None
    write_registers: tuple[int, ...] | None
    read_start_address: int | None
    read_quantity: int | None
    read_registers: tuple[int, ...] | None


#: Columns of ICSNPP's post-filtered, headerless modbus.log baseline.
ICSNPP_MODBUS_LOG_FIELDS = (
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "func",
    "exception",
)


def _conn(row: dict[str, str | None]) -> tuple[str, str]:
    orig_h, resp_h = row["id.orig_h"], row["id.resp_h"]
    assert orig_h is not None and resp_h is not None
    return (
        endpoint(orig_h, _port(row["id.orig_p"])),
        endpoint(resp_h, _port(row["id.resp_p"])),
    )


def _func(row: dict[str, str | None]) -> tuple[str, int, bool]:
    func = row["func"]
    if func is None:
        raise ValueError(f"row without func: {row}")
    code, exc = zeek_function(func)
    return func, code, exc


def read_modbus_log(path: Path, headerless: bool = False) -> list[ModbusLogRow]:
    """modbus.log rows; ``headerless`` for ICSNPP's post-filtered baseline (responses only)."""
    log = read_zeek_log(path, ICSNPP_MODBUS_LOG_FIELDS if headerless else None)
    out = []
    for lineno, row in log.rows:
        orig, resp = _conn(row)
        func, code, exc = _func(row)
        out.append(
            ModbusLogRow(
                source=f"{path}:{lineno}",
                ts=row["ts"] or "",
                orig=orig,
                resp=resp,
                tid=_count(row.get("tid")),
                unit=_count(row.get("unit")),
                func=func,
                function_code=code,
                is_exception=exc,
                pdu_type=row.get("pdu_type"),
                exception=row.get("exception"),
                exception_code=zeek_exception(row.get("exception")),
            )
        )
    return out


def _row_header(path: Path, lineno: int, row: dict[str, str | None]) -> dict[str, Any]:
    """The fields every ICSNPP detail row starts with: where, when, who, which function."""
    orig, resp = _conn(row)
    func, code, exc = _func(row)
    return {
        "source": f"{path}:{lineno}",
        "ts": row["ts"] or "",
        "orig": orig,
        "resp": resp,
        "tid": _count(row.get("tid")),
        "unit": _count(row.get("unit")),
        "func": func,
        "function_code": code,
        "is_exception": exc,
    }


def _pdu_header(row: dict[str, str | None]) -> dict[str, Any]:
    """The per-PDU fields of the FC 22 / FC 23 detail logs: the real sender and the side."""
    is_orig, src, dst = _direction_block(row)
    return {
        "is_orig": is_orig,
        "src": src,
        "dst": dst,
        "request_response": row.get("request_response"),
    }


def read_detailed_log(path: Path) -> list[DetailedRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        out.append(
            DetailedRow(
                **_row_header(path, lineno, row),
                address=_count(row.get("address")),
                quantity=_count(row.get("quantity")),
                request_values=_vector(log, row.get("request_values")),
                response_values=_vector(log, row.get("response_values")),
                matched=_bool(row.get("matched")),
                request_subfunction_code=row.get("request_subfunction_code"),
                response_subfunction_code=row.get("response_subfunction_code"),
                request_data=row.get("request_data"),
                response_data=row.get("response_data"),
                exception_code=zeek_exception(row.get("exception_code")),
                exception=row.get("exception_code"),
                mei_type=row.get("mei_type"),
            )
        )
    return out


def _direction_block(row: dict[str, str | None]) -> tuple[bool | None, str, str]:
    src_h, dst_h = row["source_h"], row["destination_h"]
    assert src_h is not None and dst_h is not None
    return (
        _bool(row.get("is_orig")),
        endpoint(src_h, _port(row["source_p"])),
        endpoint(dst_h, _port(row["destination_p"])),
    )


def read_mask_write_log(path: Path) -> list[MaskWriteRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        out.append(
            MaskWriteRow(
                **_row_header(path, lineno, row),
                **_pdu_header(row),
                address=_count(row.get("address")),
                and_mask=_count(row.get("and_mask")),
                or_mask=_count(row.get("or_mask")),
            )
        )
    return out


def read_rw_multiple_log(path: Path) -> list[ReadWriteMultipleRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        out.append(
            ReadWriteMultipleRow(
                **_row_header(path, lineno, row),
                **_pdu_header(row),
                write_start_address=_count(row.get("write_start_address")),
                write_registers=_vector(log, row.get("write_registers")),
                read_start_address=_count(row.get("read_start_address")),
                read_quantity=_count(row.get("read_quantity")),
                read_registers=_vector(log, row.get("read_registers")),
            )
        )
    return out


# --- Zeek btest event output ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModbusEvent:
    """One printed Modbus event line, e.g. ``modbus_message, [orig_h=..., ...], [tid=..., ...],
    F``. ``count`` is the ``uniq -c`` repeat count (1 when the output has none); ``args`` are
    the event's remaining arguments as text (``is_orig`` for modbus_message)."""

    source: str
    count: int
    event: str
    orig: str
    resp: str
    tid: int
    pid: int
    unit: int
    raw_function_code: int  # as on the wire: exception responses keep bit 0x80
    length: int
    args: tuple[str, ...]

    @property
    def function_code(self) -> int:
        return self.raw_function_code & 0x7F

    @property
    def is_exception(self) -> bool:
        return bool(self.raw_function_code & 0x80)

    @property
    def is_orig(self) -> bool | None:
        """modbus_message's is_orig (T: sent by the connection originator = a request)."""
        if self.event == "modbus_message" and self.args:
            return self.args[-1] == "T"
        return None


_EVENT_RE = re.compile(
    r"^(?:(?P<count>\d+) )?(?P<event>modbus_\w+), "
    r"\[orig_h=(?P<orig_h>[^,]+), orig_p=(?P<orig_p>\d+)/tcp, "
    r"resp_h=(?P<resp_h>[^,]+), resp_p=(?P<resp_p>\d+)/tcp"
    r"(?:, proto=\d+)?(?:, ctx=\[[^\]]*\])?\], "
    r"\[tid=(?P<tid>\d+), pid=(?P<pid>\d+), uid=(?P<uid>\d+), "
    r"function_code=(?P<fc>\d+), len=(?P<len>\d+)\]"
    r"(?:, (?P<rest>.*))?$"
)


def _split_args(rest: str) -> tuple[str, ...]:
    """Top-level comma-separated arguments (``[..]`` lists kept whole)."""
    args: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(rest):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(rest[start:i].strip())
            start = i + 1
    if rest[start:].strip():
        args.append(rest[start:].strip())
    return tuple(args)


def read_event_output(path: Path) -> list[ModbusEvent]:
    """Events printed by a Zeek btest (lines that are not Modbus events are skipped; a masked
    ``tid=XXX`` line does not match and is skipped too)."""
    out = []
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _EVENT_RE.match(line)
        if not m:
            continue
        out.append(
            ModbusEvent(
                source=f"{path}:{lineno}",
                count=int(m["count"] or 1),
                event=m["event"],
                orig=endpoint(m["orig_h"], int(m["orig_p"])),
                resp=endpoint(m["resp_h"], int(m["resp_p"])),
                tid=int(m["tid"]),
                pid=int(m["pid"]),
                unit=int(m["uid"]),
                raw_function_code=int(m["fc"]),
                length=int(m["len"]),
                args=_split_args(m["rest"] or ""),
            )
        )
    return out


def parse_int_list(arg: str) -> tuple[int, ...]:
    """``[1, 2, 3]`` (a printed Zeek vector) → (1, 2, 3)."""
    inner = arg.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise ValueError(f"not a printed vector: {arg!r}")
    body = inner[1:-1].strip()
    return tuple(int(x) for x in body.split(",")) if body else ()


# --- which baseline belongs to which capture -----------------------------------------------------


@dataclass(frozen=True)
class ZeekReference:
    """The expected Zeek output of one capture (paths relative to ../shared/pcaps)."""

    capture: str
    modbus_log: str | None = None  # Zeek's modbus.log (with tid unit pdu_type)
    icsnpp_modbus_log: str | None = None  # ICSNPP's post-filtered modbus.log (responses only)
    detailed_log: str | None = None
    mask_write_log: str | None = None
    rw_multiple_log: str | None = None
    events: str | None = None  # btest event output holding modbus_message lines
    notes: str = ""


_ICSNPP = "icsnpp/icsnpp-modbus/testing/baseline/analyzer.basic/"
_ZEEK = "zeek/testing/btest/Baseline/scripts.base.protocols.modbus."
_TRACES = "zeek/testing/btest/Traces/modbus/"

ZEEK_REFERENCES: dict[str, ZeekReference] = {
    ref.capture: ref
    for ref in (
        ZeekReference(
            capture="icsnpp/icsnpp-modbus/testing/traces/modbus_example.pcap",
            icsnpp_modbus_log=_ICSNPP + "modbus.log",
            detailed_log=_ICSNPP + "modbus_detailed.log",
            mask_write_log=_ICSNPP + "modbus_mask_write_register.log",
            rw_multiple_log=_ICSNPP + "modbus_read_write_multiple_registers.log",
            notes="zeek -C with icsnpp-modbus; modbus.log post-filtered to responses",
        ),
        ZeekReference(
            capture=_TRACES + "fuzz-1011.pcap",
            modbus_log=_ZEEK + "register_parsing/modbus.log",
            events=_ZEEK + "register_parsing/output",
            notes="zeek -b; output prints read_input_registers request/response events",
        ),
        ZeekReference(
            capture=_TRACES + "fuzz-72.pcap",
            modbus_log=_ZEEK + "exception_handling/modbus.log",
        ),
        ZeekReference(
            capture=_TRACES + "modbus-and-non-modbus-p502.pcap",
            modbus_log=_ZEEK + "modbus_and_non_modbus_on_port_502/modbus.log",
        ),
        ZeekReference(
            capture=_TRACES + "modbusSmall.pcap",
            events=_ZEEK + "coil_parsing_small/output",
            notes="zeek -b -C; events through sort | uniq -c",
        ),
        ZeekReference(
            capture=_TRACES + "modbusBig.pcap",
            events=_ZEEK + "coil_parsing_big/output",
            notes="zeek -b -C; events through sort | uniq -c",
        ),
    )
}


def iter_modbus_messages(events: list[ModbusEvent]) -> Iterator[ModbusEvent]:
    """The ``modbus_message`` events (one per PDU Zeek parsed), each repeated ``count`` times."""
    for ev in events:
        if ev.event == "modbus_message":
            for _ in range(ev.count):
                yield ev
