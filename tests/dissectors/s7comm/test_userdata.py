"""The S7comm userdata grammar: field by field against tshark 4.0 on public and lab captures,
identity against ICSNPP's logs, hand-made PDUs for what no capture holds, arbitrary bytes."""

from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.dissectors.s7comm import userdata as ud
from tests.conftest import LAB_PCAPS, SHARED_PCAPS
from tests.dissectors.s7comm.userdata_captures import UserdataPdu, tshark_userdata, userdata_pdus

S7 = "iti-ics-security-tools/pcaps/s7/"
ICSNPP = "icsnpp/icsnpp-s7comm/tests/"
CAPTURES = [
    S7 + "s7comm_reading_plc_status.pcap",
    S7 + "s7comm_program_blocklist_onlineview.pcap",
    S7 + "s7comm_reading_setting_plc_time.pcap",
    S7 + "s7comm_downloading_block_db1.pcap",
    ICSNPP + "traces/snap7.pcap",
    ICSNPP + "traces/s7ident.pcap",
    "ndpi/tests/cfgs/default/pcap/s7comm.pcap",
]
LAB = ["lab:s7comm_normal.pcap", "lab:s7comm_engineering.pcap"]
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


def capture(rel: str) -> Path:
    path = LAB_PCAPS / rel[4:] if rel.startswith("lab:") else SHARED_PCAPS / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def decode_all(
    pdus: tuple[UserdataPdu, ...],
) -> list[tuple[UserdataPdu, dict[str, Any], tuple[str, ...]]]:
    """Decode every PDU of a capture, with one reassembly state per connection."""
    states: dict[int, ud.UserdataReassembly] = {}
    out = []
    for p in pdus:
        rec: dict[str, Any] = {"rosctr": 7, "pdu_reference": p.pdu_reference}
        state = states.setdefault(p.flow, ud.UserdataReassembly())
        found = ud.decode_userdata(
            rec, p.pdu, p.param_off, p.param_len, p.data_off, p.data_len, state
        )
        out.append((p, rec, found))
    return out


# -- tshark ------------------------------------------------------------------------------------------
def _int(text: str) -> int:
    return int(text, 0)


#: our key → (tshark field, how its show string becomes our value); compared where either has it
SCALARS: dict[str, tuple[str, Any]] = {
    "userdata_type": ("s7comm.param.userdata.type", _int),
    "userdata_group": ("s7comm.param.userdata.funcgroup", _int),
    "userdata_subfunction": ("s7comm.param.userdata.subfunc", _int),
    "sequence": ("s7comm.param.userdata.seq_num", _int),
    "data_unit_reference": ("s7comm.param.userdata.dataunitref", _int),
    "last_data_unit": ("s7comm.param.userdata.lastdataunit", lambda s: _int(s) == 0),
    "userdata_error_code": ("s7comm.param.errcod", _int),
    "return_code": ("s7comm.data.returncode", _int),
    "transport_size": ("s7comm.data.transportsize", _int),
    "szl_id": ("s7comm.data.userdata.szl_id", _int),
    "szl_index": ("s7comm.data.userdata.szl_index", _int),
    "szl_record_length": ("s7comm.data.userdata.szl_id.partlist_len", _int),
    "szl_record_count": ("s7comm.data.userdata.szl_id.partlist_cnt", _int),
    "subscriber": ("s7comm.cpu.msg.username", str),
    "message_result": ("s7comm.cpu.msg.res_result", _int),
    "filesystem": ("s7comm.data.blockinfo.filesys", lambda s: ud.FILESYSTEMS[ord(s)]),
    "block_number": ("s7comm.data.blockinfo.block_number", int),
}
BLOCK_NAMES = {k.decode(): v for k, v in ud.BLOCK_TYPES.items()}
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def ws_clock(show: str) -> str:
    """``Aug 20, 2014 11:59:43.912000000 UTC`` → ``2014-08-20T11:59:43.912``."""
    month, day, year, clock = show.replace(",", "").split()[:4]
    return f"{year}-{MONTHS.index(month) + 1:02d}-{int(day):02d}T{clock[:12]}"


def expected(ws: dict[str, Any]) -> dict[str, Any]:
    """What our record should hold, from one tshark S7comm tree."""
    want: dict[str, Any] = {}
    for key, (field, conv) in SCALARS.items():
        if field in ws:
            want[key] = conv(ws[field][0])
    group, sub = want.get("userdata_group"), want.get("userdata_subfunction")
    utype = want.get("userdata_type")
    complete = want.get("last_data_unit", True) and want.get("return_code") == 0xFF
    if group == 3 and "s7comm.blockinfo.subblk_type" in ws:  # block info response
        want.update(block_info(ws))
    elif group == 3 and "s7comm.blockinfo.blocktype" in ws:
        types = [BLOCK_NAMES.get(t, t) for t in ws["s7comm.blockinfo.blocktype"]]
        if sub == 1:
            want["block_counts"] = dict(
                zip(types, map(int, ws["s7comm.blockinfo.block_count"]), strict=True)
            )
        else:
            want["block_type"] = types[0]
    elif group == 3 and sub == 1 and utype == 8 and complete:
        want["block_counts"] = {}  # an empty list
    if group == 3 and sub == 2 and utype == 8 and complete:
        want["blocks"] = [int(n) for n in ws.get("s7comm.blockinfo.block_num", [])]
    if group == 7 and "s7comm.data.ts" in ws:
        want["clock"] = ws_clock(ws["s7comm.data.ts"][0])
    if "s7comm.cpu.msg.events" in ws:
        bits = _int(ws["s7comm.cpu.msg.events"][0])
        want["subscribed_events"] = [n for b, n in ud.MSG_EVENTS if bits & b]
    records = [ws_record(r) for r in ws["szl_records"]]
    if any("diag" in r for r in records):
        want["diagnostic_events"] = [r["diag"] for r in records]
    elif any(records):
        want["szl_records"] = records
    return want


BLOCK_INFO_FIELDS: dict[str, tuple[str, Any]] = {
    "block_number": ("block_num", int),
    "block_info_length": ("res_infolength", int),
    "block_language": ("block_lang", lambda s: ud.BLOCK_LANGUAGES[int(s)]),
    "load_memory_length": ("load_mem_len", int),
    "block_security": ("blocksecurity", lambda s: ud.BLOCK_SECURITY[int(s)]),
    "code_timestamp": ("code_timestamp", lambda s: ws_clock(s)),
    "interface_timestamp": ("interface_timestamp", lambda s: ws_clock(s)),
    "ssb_length": ("ssb_len", int),
    "add_length": ("add_len", int),
    "local_data_length": ("localdata_len", int),
    "mc7_length": ("mc7_len", int),
    "author": ("author", str.rstrip),
    "family": ("family", str.rstrip),
    "block_name": ("headername", str.rstrip),
    "block_version": ("headerversion", str),
    "block_checksum": ("checksum", _int),
}


def block_info(ws: dict[str, Any]) -> dict[str, Any]:
    """A get-block-info response as our record holds it (the type from the subblock byte)."""
    subblock = int(ws["s7comm.blockinfo.subblk_type"][0])
    want: dict[str, Any] = {"subblock_type": subblock}
    block_type = ud.SUBBLOCK_TYPES.get(subblock) or BLOCK_NAMES.get(
        ws["s7comm.blockinfo.blocktype"][0]
    )
    if block_type is not None:
        want["block_type"] = block_type
    want["block_flags"] = _int(ws["s7comm.param.userdata.blockinfo.flags"][0])
    for key, (field, conv) in BLOCK_INFO_FIELDS.items():
        want[key] = conv(ws["s7comm.blockinfo." + field][0])
    return want


def ws_record(r: dict[str, str]) -> dict[str, Any]:
    """One tshark SZL data tree of 0x0011 / 0x001C as our record; {} for other lists."""
    out: dict[str, Any] = {}
    if "s7comm.cpu.diag_msg.eventid" in r:
        out["diag"] = {
            "event_id": _int(r["s7comm.cpu.diag_msg.eventid"]),
            "priority_class": _int(r["s7comm.cpu.diag_msg.prioclass"]),
            "ob_number": _int(r["s7comm.cpu.diag_msg.obnumber"]),
            "time": ws_clock(r["s7comm.data.ts"]),
        }
    elif "s7comm.szl.xy11.0001.index" in r:
        out["index"] = _int(r["s7comm.szl.xy11.0001.index"])
        out["mlfb"] = r["s7comm.szl.xy11.0001.anz"].rstrip()
        ints = {"bgtyp": "module_type_id", "ausbg": "ausbg", "ausbe": "ausbe"}
        for suffix, key in ints.items():  # a short (malformed) record ends early
            if "s7comm.szl.xy11.0001." + suffix in r:
                out[key] = _int(r["s7comm.szl.xy11.0001." + suffix])
    elif "s7comm.szl.001c.000x.index" in r:
        out["index"] = _int(r["s7comm.szl.001c.000x.index"])
        names = {
            "0001.name": "system_name",
            "0002.name": "module_name",
            "0003.tag": "plant_id",
            "0004.copyright": "copyright",
            "0005.serialn": "serial_number",
            "0007.cputypname": "module_type_name",
            "0008.snmcmmc": "memory_card_serial",
            "000a.oem_copyright_string": "oem_copyright",
            "000b.loc_id": "location",
        }
        for suffix, key in names.items():
            if "s7comm.szl.001c." + suffix in r:
                out[key] = r["s7comm.szl.001c." + suffix].rstrip()
        ints = {
            "0009.manufacturer_id": "manufacturer_id",
            "0009.profile_id": "profile_id",
            "0009.profile_spec_typ": "profile_specific_type",
            "000a.oem_id": "oem_id",
            "000a.oem_add_id": "oem_additional_id",
        }
        for suffix, key in ints.items():
            if "s7comm.szl.001c." + suffix in r:
                out[key] = _int(r["s7comm.szl.001c." + suffix])
    return out


COMPARED = (
    *SCALARS,
    "block_counts",
    "block_type",
    "blocks",
    "clock",
    "subscribed_events",
    "diagnostic_events",
    *BLOCK_INFO_FIELDS,
    "block_flags",
    "subblock_type",
)


def compare(rec: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """The keys on which our record and tshark's tree disagree (present on one side only, too)."""
    bad = []
    for key in COMPARED:
        if rec.get(key) != want.get(key):
            bad.append(f"{key}: ours {rec.get(key)!r} tshark {want.get(key)!r}")
    if "szl_records" in want:
        ours = [{k: v for k, v in r.items() if k != "version"} for r in rec.get("szl_records", [])]
        if ours != want["szl_records"]:
            bad.append(f"szl_records: ours {ours!r} tshark {want['szl_records']!r}")
    return bad


@pytest.mark.parametrize("rel", [*CAPTURES, *LAB])
def test_fields_agree_with_tshark(rel: str, tshark: str) -> None:
    path = capture(rel)
    decoded = decode_all(userdata_pdus(path))
    ws = tshark_userdata(tshark, path)
    ours_by_frame: dict[int, list[dict[str, Any]]] = {}
    for p, rec, _found in decoded:
        ours_by_frame.setdefault(p.frame, []).append(rec)
    assert {f: len(v) for f, v in ours_by_frame.items()} == {f: len(v) for f, v in ws.items()}
    mismatches, compared = [], Counter[str]()
    for frame, recs in ours_by_frame.items():
        for rec, tree in zip(recs, ws[frame], strict=True):
            want = expected(tree)
            compared.update(k for k in want if k in rec)
            mismatches += [f"frame {frame}: {m}" for m in compare(rec, want)]
    assert not mismatches, "\n".join(mismatches[:20])
    # the keys tshark has for every userdata PDU were all compared
    for key in ("userdata_type", "userdata_group", "userdata_subfunction", "sequence"):
        assert compared[key] == len(decoded)


def test_every_capture_field_was_compared(tshark: str) -> None:
    """Across the captures, each kind of field met tshark at least once (the test has teeth)."""
    seen = Counter[str]()
    for rel in CAPTURES:
        path = capture(rel)
        ws = tshark_userdata(tshark, path)
        for trees in ws.values():
            for tree in trees:
                seen.update(list(expected(tree)))
    keys = (*SCALARS, *BLOCK_INFO_FIELDS, "block_counts", "block_type", "blocks", "clock")
    for key in (*keys, "szl_records", "diagnostic_events", "subscribed_events"):
        assert seen[key] > 0, key


def test_well_formed_captures_raise_no_anomaly() -> None:
    for rel in CAPTURES:
        for p, rec, found in decode_all(userdata_pdus(capture(rel))):
            assert found == (), (rel, p.frame, rec, found)


def test_fragmented_szl_needs_the_reassembly_state() -> None:
    """Without state the last part of a split answer is left undecoded (its start is elsewhere:
    read alone, its first bytes would pass for an SZL header, 0x4d4d here)."""
    pdus = userdata_pdus(capture(ICSNPP + "traces/snap7.pcap"))
    last = next(p for p in pdus if p.frame == 8)
    rec: dict[str, Any] = {}
    found = ud.decode_userdata(
        rec, last.pdu, last.param_off, last.param_len, last.data_off, last.data_len
    )
    assert rec["data_unit_reference"] == 213 and rec["last_data_unit"] is True
    assert found == () and rec["userdata_subfunction_name"] == "read_szl"
    assert rec.keys().isdisjoint({"szl_id", "szl_records", "szl_record_count"})
    with_state = {p.frame: rec for p, rec, _ in decode_all(pdus)}
    assert with_state[8]["szl_id"] == 0x001C and with_state[8]["reassembled"] is True
    assert with_state[6].keys().isdisjoint({"szl_id", "szl_records"})  # the first part


# -- ICSNPP ------------------------------------------------------------------------------------------
def zeek_rows(path: Path) -> list[dict[str, str]]:
    fields: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def swap16(value: int) -> int:
    """ICSNPP reads the PDU reference little-endian."""
    return (value >> 8) | (value & 0xFF) << 8


def test_identity_matches_icsnpp_known_devices() -> None:
    log = capture(ICSNPP + "baseline/analyzer.s7ident/s7comm_known_devices.log")
    (row,) = zeek_rows(log)
    decoded = decode_all(userdata_pdus(capture(ICSNPP + "traces/s7ident.pcap")))
    ids = [ud.identity_of(rec) for _p, rec, _ in decoded if rec.get("szl_id") == 0x001C]
    ids = [i for i in ids if i]
    assert len(ids) == 1
    identity = ids[0]
    assert identity["system_name"] == row["automation_system_name"]
    assert identity["module_name"] == row["module_name"]
    assert identity["serial_number"] == row["module_serial"]
    assert row["plant_name"] == "(empty)" and "plant_id" not in identity
    assert identity["module_type_name"] == "CPU 315-2 PN/DP"
    assert identity["copyright"] == "Original Siemens Equipment"
    assert identity["memory_card_serial"] == "MMC 267FF11F"
    assert identity["manufacturer_id"] == "0x002a"
    module = [
        ud.identity_of(rec)
        for _p, rec, _ in decoded
        if rec.get("szl_id") == 0x0011 and rec["userdata_type"] == 8
    ]
    assert module[0] == {
        "order_number": "6ES7 315-2EH14-0AB0",
        "module_id": "0x00c0",
        "hardware_order_number": "6ES7 315-2EH14-0AB0",
        "hardware_version": "4",
        "firmware_version": "V3.2.6",
        "firmware_extension": "Boot Loader",
        "firmware_extension_version": "A32.9.9",
    }


def test_read_szl_rows_match_icsnpp() -> None:
    log = capture(ICSNPP + "baseline/analyzer.snap7/s7comm_read_szl.log")
    decoded = decode_all(userdata_pdus(capture(ICSNPP + "traces/snap7.pcap")))
    ours = {
        (swap16(rec["pdu_reference"]), "Request" if rec["userdata_type"] == 4 else "Response"): rec
        for _p, rec, _ in decoded
        if rec.get("userdata_subfunction_name") == "read_szl"
    }
    rows = zeek_rows(log)
    assert rows
    for row in rows:
        rec = ours[(int(row["pdu_reference"]), row["method"])]
        assert f"0x{rec['szl_id']:04x}" == row["szl_id"]
        assert f"0x{rec['szl_index']:04x}" == row["szl_index"]
        assert f"0x{rec['return_code']:02x}" == row["return_code"]
        assert rec["return_code_name"] == row["return_code_name"].lower()
    # and every SZL PDU we decode on its own (not joined from parts) is one of ICSNPP's rows
    logged = {(int(r["pdu_reference"]), r["method"]) for r in rows}
    whole = {k for k, rec in ours.items() if "szl_id" in rec and not rec.get("reassembled")}
    assert whole == logged


# -- the lab: python-snap7's server ------------------------------------------------------------------
def test_lab_snap7_component_reply_is_flagged_not_guessed() -> None:
    """python-snap7's 0x001C reply says 0 records of 0 bytes, then carries 206 bytes: flagged."""
    decoded = decode_all(userdata_pdus(capture("lab:s7comm_normal.pcap")))
    (reply,) = [
        (rec, f) for _p, rec, f in decoded if rec.get("userdata_type") == 8 and "szl_id" in rec
    ]
    rec, found = reply
    assert rec["szl_id"] == 0x001C and rec["szl_record_length"] == rec["szl_record_count"] == 0
    assert found == (ud.INVALID_SZL,)
    assert "szl_records" not in rec and ud.identity_of(rec) is None
    clock = [rec for _p, rec, _f in decoded if rec.get("userdata_subfunction_name") == "read_clock"]
    assert "clock" not in clock[0] and ISO.fullmatch(clock[1]["clock"])


def test_lab_engineering_station() -> None:
    """python-snap7's engineering session: its malformed SZL answers are flagged (the short
    0x0011 records still give the order number), the session password is never kept."""
    decoded = decode_all(userdata_pdus(capture("lab:s7comm_engineering.pcap")))
    answers = {
        rec["szl_id"]: (rec, found)
        for _p, rec, found in decoded
        if rec["userdata_type"] == 8 and "szl_id" in rec
    }
    assert set(answers) == {0x0000, 0x0011, 0x001C, 0x0131, 0x0232}
    assert all(found == (ud.INVALID_SZL,) for _rec, found in answers.values())
    module, _ = answers[0x0011]
    assert module["szl_record_length"] == 26
    assert ud.identity_of(module) == {
        "order_number": "6ES7 315-2EH14-0AB0",
        "module_id": "0x0003",
        "hardware_version": "768",
    }
    by_name = Counter(rec.get("userdata_subfunction_name") for _p, rec, _f in decoded)
    assert by_name["plc_password"] == by_name["clear_password"] == 2
    for p, rec, _found in decoded:
        if rec.get("userdata_subfunction_name") == "plc_password" and rec["userdata_type"] == 4:
            assert rec["password_present"] is True
            sent = p.pdu[p.data_off + 4 :]
            assert sent and sent.hex() not in repr(rec) and "plant30" not in repr(rec)
    clocks = [rec["clock"] for _p, rec, _f in decoded if "clock" in rec]
    assert "2024-03-18T06:00:00.000" in clocks and all(ISO.fullmatch(c) for c in clocks)
    info = [rec for _p, rec, _f in decoded if "block_name" in rec]
    assert [(r["block_type"], r["block_number"], r["author"]) for r in info] == [
        ("DB", 1, "SNAP7EMU")
    ]


# -- hand-made PDUs ----------------------------------------------------------------------------------
def param(
    type_group: int, sub: int, seq: int = 0, ext: tuple[int, int, int] | None = None
) -> bytes:
    if ext is None:
        return bytes([0, 1, 0x12, 4, 0x11, type_group, sub, seq])
    return bytes([0, 1, 0x12, 8, 0x12, type_group, sub, seq]) + struct.pack(">BBH", *ext)


def data_part(payload: bytes, ret: int = 0xFF, tsize: int = 9) -> bytes:
    return struct.pack(">BBH", ret, tsize, len(payload)) + payload


def run(
    p: bytes, d: bytes, state: ud.UserdataReassembly | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    buf = b"\x00" * 10 + p + d
    rec: dict[str, Any] = {}
    found = ud.decode_userdata(rec, buf, 10, len(p), 10 + len(p), len(d), state)
    return rec, found


def test_names_and_action_tables() -> None:
    assert ud.GROUPS[4] == "cpu_functions" and ud.GROUPS[0xF] == "nc_programming"
    assert ud.SUBFUNCTIONS[4][1] == "read_szl"
    assert ud.SUBFUNCTIONS[3][1] == "list_blocks"
    assert ud.SUBFUNCTIONS[7][2] == "set_clock" and ud.SUBFUNCTIONS[7][4] == "set_clock_2"
    assert ud.SUBFUNCTIONS[5] == {1: "plc_password", 2: "clear_password"}
    for table in ud.SUBFUNCTIONS.values():
        assert all(name.isidentifier() and name == name.lower() for name in table.values())


def test_password_is_never_kept() -> None:
    secret = bytes.fromhex("a1b2c3d4e5f60718")
    rec, found = run(param(0x45, 1), data_part(secret))
    assert found == ()
    assert rec["userdata_subfunction_name"] == "plc_password" and rec["password_present"] is True
    assert secret.hex() not in repr(rec) and secret not in repr(rec).encode("latin-1")
    rec, _ = run(param(0x45, 2), data_part(b"", ret=0x0A, tsize=0))
    assert rec["userdata_subfunction_name"] == "clear_password" and "password_present" not in rec


def test_set_clock_and_invalid_bcd() -> None:
    ts = bytes.fromhex("00202403141530450125")
    rec, found = run(param(0x47, 2), data_part(ts))
    assert found == () and rec["clock"] == "2024-03-14T15:30:45.012"
    rec, found = run(param(0x47, 2), data_part(bytes.fromhex("0019991a201159439124")))
    assert "clock" not in rec and found == (ud.INVALID_USERDATA,)
    rec, _ = run(param(0x47, 2), data_part(bytes.fromhex("00199912311159439124")))
    assert rec["clock"] == "1999-12-31T11:59:43.912"


def test_block_info_response() -> None:
    info = struct.pack(
        ">2sHH2sBBBBHII6s6sHHHH8s8s8sBBHII",
        b"0A", 0x5C, 0, b"pp", 0, 0x01, 5, 0x0A, 42, 1234, 3,
        struct.pack(">IH", 3_600_000, 14_000), struct.pack(">IH", 0, 1),
        20, 2, 0, 100, b"ACME\x00\x00\x00\x00", b"pumps   ", b"DB_PROC\x00", 0x21, 0, 0xBEEF, 0, 0,
    )  # fmt: skip
    rec, found = run(param(0x83, 3, 1, (0, 0, 0)), data_part(info))
    assert found == ()
    assert rec["userdata_subfunction_name"] == "get_block_info"
    assert (rec["block_type"], rec["block_number"], rec["block_language"]) == ("DB", 42, "db")
    assert rec["load_memory_length"] == 1234 and rec["block_security"] == "know_how_protect"
    assert rec["code_timestamp"] == "2022-05-01T01:00:00.000"
    assert rec["interface_timestamp"] == "1984-01-02T00:00:00.000"
    assert (rec["author"], rec["family"], rec["block_name"]) == ("ACME", "pumps", "DB_PROC")
    assert rec["block_version"] == "2.1" and rec["mc7_length"] == 100
    rec, found = run(param(0x43, 3), data_part(b"0E00017B"))
    assert found == () and rec["block_type"] == "FB" and rec["block_number"] == 17
    assert rec["filesystem"] == "active_and_passive"
    rec, found = run(param(0x83, 3, 1, (0, 0, 0)), data_part(info[:40]))
    assert found == (ud.TRUNCATED,) and "block_name" not in rec


def test_block_list_is_capped() -> None:
    entries = b"".join(struct.pack(">HBB", n, 0x42, 1) for n in range(1000))
    rec, found = run(param(0x83, 2, 1, (0, 0, 0)), data_part(entries))
    assert found == () and rec["block_count"] == 1000 and len(rec["blocks"]) == ud.BLOCK_CAP
    assert rec["block_languages"] == ["awl"]


def test_szl_counts_are_capped_and_checked() -> None:
    records = b"".join(struct.pack(">H20sHHH", 1, b"6ES7 000", 0, 1, 1) for _ in range(1500))
    head = struct.pack(">HHHH", 0x0011, 0, 28, 1500)
    rec, found = run(param(0x84, 1, 1, (0, 0, 0)), data_part(head + records))
    assert found == () and len(rec["szl_records"]) == ud.SZL_RECORD_CAP
    head = struct.pack(">HHHH", 0x0011, 0, 28, 65535)  # more records announced than carried
    rec, found = run(param(0x84, 1, 1, (0, 0, 0)), data_part(head + records[:56]))
    assert found == (ud.INVALID_SZL,) and len(rec["szl_records"]) == 2
    head = struct.pack(">HHHH", 0x0F11, 0, 28, 4)  # header only: no records expected
    rec, found = run(param(0x84, 1, 1, (0, 0, 0)), data_part(head))
    assert found == () and rec["szl_record_count"] == 4 and "szl_records" not in rec


def test_cpu_mode_from_szl_0424() -> None:
    body = struct.pack(">HHHH", 0x0424, 0, 20, 1) + bytes.fromhex("5144ff08") + bytes(16)
    rec, found = run(param(0x84, 1, 1, (0, 0, 0)), data_part(body))
    assert found == () and rec["cpu_mode"] == "run" and "cpu_previous_mode" not in rec


def test_mode_transition_and_usend_forms() -> None:
    rec, found = run(bytes.fromhex("0101000000000200"), b"")
    assert found == () and rec["userdata_group_name"] == "mode_transition"
    assert rec["userdata_subfunction_name"] == "run" and rec["userdata_type_name"] == "push"
    rec, found = run(bytes.fromhex("000112081300123456780000"), data_part(b"\x00\x00"))
    assert found == () and rec["pbc_r_id"] == 0x12345678
    rec, found = run(param(0x00, 0), data_part(b"", 0x0A, 0))
    assert rec["userdata_subfunction_name"] == "stop" and found == ()


def test_diagnostic_message_and_alarm_push() -> None:
    diag = struct.pack(">HBBHHI", 0x4302, 0x01, 0x64, 0, 0, 0) + bytes.fromhex("2403141530450125")
    rec, found = run(param(0x04, 3, 0, (0, 0, 0)), data_part(diag))
    assert (
        found == () and rec["event_id"] == 0x4302 and rec["event_time"] == "2024-03-14T15:30:45.012"
    )
    alarm = (
        bytes.fromhex("2403141530450125")
        + bytes([0x00, 1])
        + bytes.fromhex("120816010000abcd")
        + bytes(8)
    )
    rec, found = run(param(0x04, 0x12, 0, (0, 0, 0)), data_part(alarm))
    assert found == () and rec["alarm_event_ids"] == [0xABCD] and rec["alarm_object_count"] == 1


def test_cyclic_and_nc_and_unknown() -> None:
    rec, found = run(param(0x42, 1), data_part(bytes([0, 2, 1, 5]) + bytes(24)))
    assert found == () and rec["item_count"] == 2 and rec["cycle_timebase"] == "1s"
    rec, found = run(param(0x42, 4), data_part(bytes([1, 7])))
    assert rec["job_id"] == 7
    rec, found = run(param(0x7F, 1), data_part(b"_N_TEST_MPF"))
    assert rec["userdata_type_name"] == "nc_request" and rec["filename"] == "_N_TEST_MPF"
    rec, found = run(param(0x4A, 1), data_part(b"\x00\x00"))
    assert found == (ud.UNKNOWN_FUNCTION,) and "userdata_group_name" not in rec
    rec, found = run(param(0x44, 0x30), data_part(b"\x00\x00"))
    assert found == (ud.UNKNOWN_FUNCTION,) and rec["userdata_group_name"] == "cpu_functions"


def test_bad_heads_and_lengths() -> None:
    assert run(b"\x00\x01\x12\x04", b"")[1] == (ud.INVALID_USERDATA,)
    rec, found = run(bytes.fromhex("0001120411440100"), b"")
    assert found == (ud.TRUNCATED,) and rec["userdata_subfunction_name"] == "read_szl"
    rec, found = run(bytes.fromhex("0001120511440100"), data_part(b"\x00\x11\x00\x00"))
    assert found == (ud.INVALID_USERDATA,) and rec["szl_id"] == 0x11
    rec, found = run(bytes.fromhex("0001120812840100"), data_part(b"\x00\x11"))
    assert ud.INVALID_USERDATA in found  # response method without its extension
    rec, found = run(param(0x44, 1), data_part(b"\x00\x11\x00\x00")[:6])
    assert found == (ud.TRUNCATED,) and "szl_id" not in rec


def test_reassembly_is_bounded() -> None:
    state = ud.UserdataReassembly(max_pending=2, max_bytes=100)
    for ref in range(1, 6):
        run(param(0x84, 1, 1, (ref, 1, 0)), data_part(bytes(80)), state)
    assert len(state) == 2
    run(param(0x84, 1, 1, (5, 1, 0)), data_part(bytes(80)), state)
    rec, _ = run(param(0x84, 1, 1, (5, 0, 0)), data_part(bytes(80)), state)
    assert rec["reassembled"] is True and len(state) == 1


# -- arbitrary bytes -----------------------------------------------------------------------------------
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300),
    st.integers(-4, 320),
    st.integers(-4, 320),
    st.integers(-4, 320),
    st.integers(-4, 320),
)
def test_arbitrary_bytes_never_raise(data: bytes, po: int, pl: int, do: int, dl: int) -> None:
    rec: dict[str, Any] = {}
    found = ud.decode_userdata(rec, data, po, pl, do, dl, ud.UserdataReassembly())
    assert all(a.startswith("s7comm.") for a in found)
    ud.identity_of(rec)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from([0x00, 0x03, 0x04, 0x07, 0x08, 0x0B]),
    st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 0xF, 0xA]),
    st.integers(0, 0x20),
    st.binary(max_size=4),
    st.binary(max_size=400),
    st.booleans(),
)
def test_plausible_heads_with_arbitrary_payloads(
    utype: int, group: int, sub: int, ext: bytes, payload: bytes, szl: bool
) -> None:
    """Past a sane head, into every group's payload decoder (SZL headers forced half the time)."""
    p = bytes([0, 1, 0x12, 4 + len(ext), 0x12 if ext else 0x11, utype << 4 | group, sub, 1]) + ext
    if szl:
        payload = (
            struct.pack(">HHHH", 0x0011 if sub & 1 else 0x001C, 0, 28 if sub & 2 else 34, 9)
            + payload
        )
    d = data_part(payload, ret=0xFF)
    state = ud.UserdataReassembly()
    for _ in range(2):
        rec, found = run(p, d, state)
        assert all(a.startswith("s7comm.") for a in found)
        assert len(rec.get("szl_records", ())) <= ud.SZL_RECORD_CAP
        ud.identity_of(rec)
