"""Readers for ICSNPP's S7comm / S7comm-plus baselines under ../shared/pcaps.

cisagov/icsnpp-s7comm's btests (``tests/baseline/analyzer.*``, see
``../shared/pcaps/icsnpp/SCHEMAS.md``) keep the Zeek ASCII logs whole, headers included, with
timestamps masked by btest. The generic Zeek log reader and ``endpoint`` come from the Modbus
helpers (``tests.dissectors.modbus.zeek_logs``).

Quirks of the plugin (binpac, ``src/s7comm-protocol.pac`` / ``s7comm-analyzer.pac`` /
``scripts/icsnpp/s7comm/main.zeek``) that a comparison has to undo or know about:

* **PDU reference byte order**: the plugin swaps the two bytes of the (big-endian) header field
  ("PDU Reference is little endian so we need to do an endian swap"): Wireshark's ``pduref``
  256 is ICSNPP's ``pdu_reference`` 1. ``swap16`` undoes it.
* **function_code**: for Job / Ack / Ack-Data the parameter's function code (``0xf0``...); an
  Ack-Data without parameter gets 0xff, which the script prints as unset (``-``). For User-Data
  it is the parameter byte holding type and group (``0x44`` = request, CPU functions; type
  nibble 4 request, 8 response, 0 push) and ``subfunction_code`` the sub-function; for a PI
  service Job (0x28) ``subfunction_code`` is the PI service name (``_MODU``).
* **error_class / error_code**: for Ack / Ack-Data the header's error class (by name, from
  ``s7comm_error_class``) and code; for User-Data responses the parameter's 16-bit error code
  (``No error`` + ``0x00``, or ``Parameter Error`` + the code); unset for requests.
* **datagram parsing**: the analyzer parses each TCP delivery as one TPKT/COTP/S7 unit
  (``datagram = S7COMM_PDU``): a second TPKT in the same segment, a TPDU split over segments and
  a PDU whose parsing fails are not logged. Parsing fails for an Ack (ROSCTR 2) without
  parameter (the record wants a function code byte after the error fields), for User-Data
  whose CPU-function data is not a complete Read-SZL header (follow-up requests of a fragmented
  SZL answer, first fragments whose data length exceeds the PDU), and so on. The
  conformance tests pin every such difference to tshark exactly.
* **s7comm_read_szl.log** rows come from Read-SZL User-Data PDUs with data unit reference 0 or
  ``last_data_unit`` 1 (the *first* fragment of a fragmented answer, where the SZL header is).
* **s7comm_plus.log**: the header is read as ``version, length, digest_length, digest[..],
  opcode, opcode_data (uint32)`` (the V3 integrity layout); ``function_code`` is the low 16
  bits of ``opcode_data`` for Request (0x31) and Response (0x32), unset otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.dissectors.modbus.zeek_logs import ZeekLog, endpoint, read_zeek_log

#: S7COMM::rosctr_types (scripts/consts.zeek).
ROSCTR_NAMES: dict[str, int] = {"Job-Request": 1, "ACK": 2, "ACK-Data": 3, "User-Data": 7}

#: S7COMM::s7comm_error_class.
ERROR_CLASS_NAMES: dict[str, int] = {
    "No error": 0x00,
    "Application relationship error": 0x81,
    "Object definition error": 0x82,
    "No ressources available error": 0x83,
    "Error on service processing": 0x84,
    "Error on supplies": 0x85,
    "Access error": 0x87,
}

#: S7COMM::s7comm_functions, the names s7comm_upload_download.log writes.
FUNCTION_NAMES: dict[str, int] = {
    "CPU Services": 0x00,
    "Read Variable": 0x04,
    "Write Variable": 0x05,
    "Request Download": 0x1A,
    "Download Block": 0x1B,
    "Download Ended": 0x1C,
    "Start Upload": 0x1D,
    "Upload": 0x1E,
    "End Upload": 0x1F,
    "PLC Control": 0x28,
    "PLC Stop": 0x29,
    "Setup Communication": 0xF0,
}


def swap16(value: int) -> int:
    """Swap the two bytes of a 16-bit value (ICSNPP's PDU reference ↔ the wire's)."""
    return ((value & 0xFF) << 8) | (value >> 8)


def error_class_code(name: str | None) -> int | None:
    """ICSNPP's error class name → code (``Unknown error class-0x..`` included)."""
    if name is None:
        return None
    if name in ERROR_CLASS_NAMES:
        return ERROR_CLASS_NAMES[name]
    prefix = "Unknown error class-"
    if name.startswith(prefix):
        return int(name[len(prefix) :], 16)
    raise ValueError(f"not an ICSNPP S7comm error class: {name!r}")


def _hex(v: str | None) -> int | None:
    return None if v is None else int(v, 16)


def _count(v: str | None) -> int | None:
    return None if v is None else int(v)


def _port(v: str | None) -> int:
    assert v is not None
    return int(v.split("/")[0])


@dataclass(frozen=True)
class Row:
    """The columns every ICSNPP S7 row starts with."""

    source: str  # "path:line"
    orig: str  # id.orig_h:id.orig_p (the connection originator: the S7 client)
    resp: str
    is_orig: bool | None  # T: sent by the originator

    @property
    def direction(self) -> str | None:
        """The transport direction, as ours and the port rule name it."""
        if self.is_orig is None:
            return None
        return "request" if self.is_orig else "response"


def _row(log: ZeekLog, lineno: int, row: dict[str, str | None]) -> dict[str, Any]:
    orig_h, resp_h = row["id.orig_h"], row["id.resp_h"]
    assert orig_h is not None and resp_h is not None
    is_orig = row.get("is_orig")
    return {
        "source": f"{log.path}:{lineno}",
        "orig": endpoint(orig_h, _port(row["id.orig_p"])),
        "resp": endpoint(resp_h, _port(row["id.resp_p"])),
        "is_orig": None if is_orig is None else is_orig == "T",
    }


@dataclass(frozen=True)
class S7commRow(Row):
    """An s7comm.log row: one S7comm PDU."""

    rosctr: int
    pdu_reference: int  # as logged (byte-swapped; see module doc)
    function_code: int | None  # raw code; for User-Data the type|group byte
    subfunction_code: str | None  # "0x01", or a PI service name for a 0x28 Job
    error_class: str | None
    error_code: int | None

    @property
    def wire_pdu_reference(self) -> int:
        return swap16(self.pdu_reference)

    @property
    def function(self) -> int | None:
        """The parameter function code (Job / Ack / Ack-Data); None for User-Data."""
        return None if self.rosctr == 7 else self.function_code

    @property
    def userdata_group(self) -> int | None:
        if self.rosctr != 7 or self.function_code is None:
            return None
        return self.function_code & 0x0F

    @property
    def userdata_type(self) -> int | None:
        if self.rosctr != 7 or self.function_code is None:
            return None
        return self.function_code >> 4

    @property
    def userdata_subfunction(self) -> int | None:
        if self.rosctr != 7 or self.subfunction_code is None:
            return None
        return int(self.subfunction_code, 16)

    @property
    def header_error(self) -> tuple[int | None, int | None] | None:
        """(error class, error code) of the header of an Ack / Ack-Data; None otherwise."""
        if self.rosctr not in (2, 3):
            return None
        return error_class_code(self.error_class), self.error_code


@dataclass(frozen=True)
class PlusRow(Row):
    """An s7comm_plus.log row: one S7comm-plus PDU (as ICSNPP parses it)."""

    version: int
    opcode: int
    function_code: int | None  # Request / Response only


@dataclass(frozen=True)
class SzlRow(Row):
    """An s7comm_read_szl.log row."""

    pdu_reference: int  # as logged (byte-swapped)
    method: str  # Request / Response
    szl_id: int
    szl_index: int
    return_code: int | None

    @property
    def wire_pdu_reference(self) -> int:
        return swap16(self.pdu_reference)


@dataclass(frozen=True)
class UploadDownloadRow(Row):
    """An s7comm_upload_download.log row: one upload / download step."""

    rosctr: int
    pdu_reference: int  # as logged (byte-swapped)
    function: int
    function_status: int | None
    session_id: int | None
    blocklength: int | None
    filename: str | None

    @property
    def wire_pdu_reference(self) -> int:
        return swap16(self.pdu_reference)


def read_s7comm_log(path: Path) -> list[S7commRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        rosctr, pduref = row["rosctr_code"], row["pdu_reference"]
        assert rosctr is not None and pduref is not None
        out.append(
            S7commRow(
                **_row(log, lineno, row),
                rosctr=int(rosctr),
                pdu_reference=int(pduref),
                function_code=_hex(row.get("function_code")),
                subfunction_code=row.get("subfunction_code"),
                error_class=row.get("error_class"),
                error_code=_hex(row.get("error_code")),
            )
        )
    return out


def read_plus_log(path: Path) -> list[PlusRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        version, opcode = row["version"], row["opcode"]
        assert version is not None and opcode is not None
        out.append(
            PlusRow(
                **_row(log, lineno, row),
                version=int(version),
                opcode=int(opcode, 16),
                function_code=_hex(row.get("function_code")),
            )
        )
    return out


def read_szl_log(path: Path) -> list[SzlRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        pduref, method, szl_id, szl_index = (
            row["pdu_reference"],
            row["method"],
            row["szl_id"],
            row["szl_index"],
        )
        assert pduref is not None and method is not None
        assert szl_id is not None and szl_index is not None
        fields = _row(log, lineno, row)
        if fields["is_orig"] is None:  # older plugin versions log no is_orig: use the method
            fields["is_orig"] = method == "Request"
        out.append(
            SzlRow(
                **fields,
                pdu_reference=int(pduref),
                method=method,
                szl_id=int(szl_id, 16),
                szl_index=int(szl_index, 16),
                return_code=_hex(row.get("return_code")),
            )
        )
    return out


def read_upload_download_log(path: Path) -> list[UploadDownloadRow]:
    log = read_zeek_log(path)
    out = []
    for lineno, row in log.rows:
        rosctr, pduref, name = row["rosctr"], row["pdu_reference"], row["function_name"]
        assert rosctr is not None and pduref is not None and name is not None
        out.append(
            UploadDownloadRow(
                **_row(log, lineno, row),
                rosctr=ROSCTR_NAMES[rosctr],
                pdu_reference=int(pduref),
                function=FUNCTION_NAMES[name],
                function_status=_hex(row.get("function_status")),
                session_id=_count(row.get("session_id")),
                blocklength=_count(row.get("blocklength")),
                filename=row.get("filename"),
            )
        )
    return out


# --- which baseline belongs to which capture -----------------------------------------------------


@dataclass(frozen=True)
class IcsnppReference:
    """ICSNPP's expected logs for one capture (paths relative to ../shared/pcaps)."""

    capture: str
    s7comm_log: str
    plus_log: str | None = None
    szl_log: str | None = None
    upload_download_log: str | None = None


_TRACES = "icsnpp/icsnpp-s7comm/tests/traces/"
_BASE = "icsnpp/icsnpp-s7comm/tests/baseline/"

ICSNPP_REFERENCES: dict[str, IcsnppReference] = {
    ref.capture: ref
    for ref in (
        IcsnppReference(
            capture=_TRACES + "snap7.pcap",
            s7comm_log=_BASE + "analyzer.snap7/s7comm.log",
            szl_log=_BASE + "analyzer.snap7/s7comm_read_szl.log",
            upload_download_log=_BASE + "analyzer.snap7/s7comm_upload_download.log",
        ),
        IcsnppReference(
            capture=_TRACES + "s7ident.pcap",
            s7comm_log=_BASE + "analyzer.s7ident/s7comm.log",
        ),
        IcsnppReference(
            capture=_TRACES + "s7comm_plus.pcap",
            s7comm_log=_BASE + "analyzer.s7comm_plus/s7comm.log",
            plus_log=_BASE + "analyzer.s7comm_plus/s7comm_plus.log",
        ),
    )
}
