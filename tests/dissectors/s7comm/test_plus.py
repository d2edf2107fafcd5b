"""The S7comm-plus grammar (``dissectors/s7comm/plus.py``): real PDUs from public captures, the
ICSNPP ``s7comm_plus.log`` baseline, hand-made malformed PDUs and property tests.

Captures (``../shared/pcaps``, skipped when absent) are cut into COTP TSDUs by
``plus_captures``; per direction, a TSDU that follows one without trailer is decoded with
``continuation=True`` and the run is reassembled with ``decode_plus_fragments``, as the session
is expected to do.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SHARED_PCAPS

from .plus_captures import Tsdu, plus_tsdus


def _load() -> ModuleType:
    """The module, from the package when it imports, else by path (the package ``__init__`` is
    another engineer's and may be mid-edit)."""
    try:
        from otsentry.dissectors.s7comm import plus as module
    except Exception:  # pragma: no cover - only while the package is broken
        name = "_s7comm_plus_under_test"
        spec = importlib.util.spec_from_file_location(name, ROOT / "dissectors/s7comm/plus.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    loaded: ModuleType = module
    return loaded


plus = _load()
decode_plus = plus.decode_plus
decode_plus_fragments = plus.decode_plus_fragments
looks_like_plus = plus.looks_like_plus

ANOMALY_IDS = {
    "s7comm_plus.invalid_length",
    "s7comm_plus.invalid_trailer",
    "s7comm_plus.unknown_opcode",
    "s7comm_plus.unknown_function",
    "s7comm_plus.unknown_version",
    "s7comm_plus.truncated",
    "s7comm_plus.invalid_protocol_id",
}
RECORD_KEYS = {
    "version",
    "data_length",
    "opcode",
    "opcode_name",
    "function",
    "function_name",
    "sequence",
    "session_id",
    "transport_flags",
    "integrity",
    "integrity_id",
    "trailer_ok",
    "return_code",
    "objects",
    "decoded",
    "undecoded_bytes",
    "fragment",
    "fragments",
}

# -- real PDUs (bytes from the public captures named) -------------------------------------------
#: icsnpp s7comm_plus.pcap (S7-1500, V3): GetMultiVariables response, 3 values
V3_GET_MULTI_RESPONSE = bytes.fromhex(
    "72030043203dcac8ee113108f0defe64eff4faf6106fe1fa3d75064cde9b8314d9f1e276a3320000054c0000"
    "831d3400010004010200088372030008be04000083a1100000000072030000"
)
#: same: notification of subscription 0x70000E51, 4 values (0x92 items)
V3_NOTIFICATION = bytes.fromhex(
    "720300622008c83ace381dfdbc42201789dec03b099172858efb6f3ef2e5e8ecb8bd2546653370000e5104"
    "0000000000c98ec148019200000005000e41aa70aa9200000019000e417e538e920000001a000e41467956"
    "920000001b000e4193eb85000000000072030000"
)
#: same: SetMultiVariables request writing DB5, LID 0x71
V3_SET_MULTI_REQUEST = bytes.fromhex(
    "7203006620726f50a7c0071584f3a59971df5c79d639c586451158aa4adeb9cd02b5ee76f83100000542000"
    "0833370000e4d3400000000010588dbd6a75e88d0b88005029376710100010100000004e88969001200000000"
    "896a001300896b0004000084eb3b0000000072030000"
)
#: same: SetVariable request (attribute 1053 of the subscription object)
V3_SET_VARIABLE_REQUEST = bytes.fromhex(
    "7203005920e969a95a852ab0e288480ccecb618e48779f4b68a1ce9a9c42cd6aa53680068331000004f200"
    "00831a70000e4d7470000e5101881d000700ce000004e88969001200000000896a001300896b0004000000"
    "84eb270000000072030000"
)
#: S7-1511_db2_var1_HMI.pcap (V2, digest at the end): GetMultiVariables request, DB2 LID 0xA
V2_GET_MULTI_REQUEST = bytes.fromhex(
    "7202005b310000054c00000004000003883400000000010588cdf1cd6688d0b880020293760a000004e88969"
    "001200000000896a001300896b0004000002208d4e7c6363b11c45f6f0baf60d3b2fa3a5afca5d4e85c98d52"
    "b1f827f467be4572020000"
)
#: same: DeleteObject response whose integrity part has no integrity id
V2_DELETE_RESPONSE = bytes.fromhex(
    "7202003032000004d400000009340000000388205" + "8a62600649a22eeb5be53920fe687176f698afa1e9be854"
    "7abd42bc83afd1e472020000"
)
#: modbusBig.pcap (old S7-1200, V2): notification without values, and SetVariable
V2_NOTIFICATION = bytes.fromhex("72020012331000006e0400000000000006000000000072020000")
V2_SET_VARIABLE_REQUEST = bytes.fromhex(
    "7202003431000004f200007f6e000003e2347000000a019517000201000004e88969001200000000896a0013"
    "00896b00040000000000000072020000"
)
V2_SET_VARIABLE_RESPONSE = bytes.fromhex("7202000f32000004f200007f6e34000000000072020000")

SAMPLES = [
    V3_GET_MULTI_RESPONSE,
    V3_NOTIFICATION,
    V3_SET_MULTI_REQUEST,
    V3_SET_VARIABLE_REQUEST,
    V2_GET_MULTI_REQUEST,
    V2_DELETE_RESPONSE,
    V2_NOTIFICATION,
    V2_SET_VARIABLE_REQUEST,
    V2_SET_VARIABLE_RESPONSE,
]


Result = tuple[dict[str, Any], tuple[str, ...]]


def decode(pdu: bytes, **kw: Any) -> Result:
    result: Result = decode_plus(pdu, 0, len(pdu), **kw)
    return result


def check_record(rec: dict[str, Any], anomalies: tuple[str, ...]) -> None:
    """Shape every record must have, whatever the input."""
    assert set(rec) <= RECORD_KEYS, set(rec) - RECORD_KEYS
    assert set(anomalies) <= ANOMALY_IDS
    assert isinstance(rec["decoded"], bool)
    assert isinstance(rec["undecoded_bytes"], int) and rec["undecoded_bytes"] >= 0
    json.dumps(rec)


def fragments(pdu: bytes, cuts: list[int]) -> list[bytes]:
    """Split a whole PDU into TSDUs as a sender does: each with a header (and, in V3, the
    digest), only the last with the trailer. ``cuts`` are offsets into the body."""
    version = pdu[1]
    data = pdu[4:-4]
    digest = data[:33] if version == 3 else b""
    body = data[len(digest) :]
    bounds = [0, *cuts, len(body)]
    out = []
    for a, b in pairwise(bounds):
        chunk = digest + body[a:b]
        out.append(bytes((0x72, version)) + len(chunk).to_bytes(2, "big") + chunk)
    out[-1] += pdu[-4:]
    return out


# -- real PDUs ---------------------------------------------------------------------------------
def test_v3_get_multi_variables_response() -> None:
    rec, anomalies = decode(V3_GET_MULTI_RESPONSE)
    assert anomalies == ()
    assert rec == {
        "version": 3,
        "data_length": 0x43,
        "trailer_ok": True,
        "integrity": True,
        "opcode": 0x32,
        "opcode_name": "response",
        "function": 0x054C,
        "function_name": "get_multi_variables",
        "sequence": 0x831D,
        "transport_flags": 0x34,
        "decoded": True,
        "integrity_id": (0x03 << 14) | (0x21 << 7) | 0x10,  # VLQ 83 A1 10, after the body
        "return_code": 0,
        "objects": {"item_count": 3},
        "undecoded_bytes": 0,  # 4 zero bytes of fill remain
    }


def test_v3_notification() -> None:
    rec, anomalies = decode(V3_NOTIFICATION)
    assert anomalies == ()
    assert rec["opcode_name"] == "notification"
    assert "function" not in rec and "sequence" not in rec and "session_id" not in rec
    assert rec["integrity"] is True and rec["decoded"] is True
    assert rec["objects"] == {
        "object_id": 0x70000E51,
        "credit_tick": 0xC9,
        "notification_sequence": (0x0E << 14) | (0x41 << 7) | 0x48,
        "item_count": 4,
    }
    assert rec["undecoded_bytes"] == 0


def test_v3_set_multi_variables_request_addresses() -> None:
    rec, anomalies = decode(V3_SET_MULTI_REQUEST)
    assert anomalies == ()
    assert rec["function_name"] == "set_multi_variables"
    assert rec["session_id"] == 0x70000E4D
    assert rec["objects"] == {
        "item_count": 1,
        "field_count": 5,
        "addresses": [
            {
                "symbol_crc": 0x8B7593DE,
                "area": 0x8A0E0005,
                "db_number": 5,
                "sub_area": 2550,  # DB.ValueActual
                "lids": [0x71],
            }
        ],
    }
    assert rec["decoded"] is True and rec["undecoded_bytes"] == 0


def test_v3_set_variable_request() -> None:
    rec, _ = decode(V3_SET_VARIABLE_REQUEST)
    assert rec["objects"] == {
        "object_id": 0x70000E51,
        "address_count": 1,
        "attribute_ids": [1053],
    }
    assert rec["transport_flags"] == 0x74 and rec["decoded"] is True


def test_v2_digest_at_the_end() -> None:
    """1500 firmware < 1.5 speaks V2 with the integrity part last: id, 0x20, digest."""
    rec, anomalies = decode(V2_GET_MULTI_REQUEST)
    assert anomalies == ()
    assert rec["integrity"] is True and rec["integrity_id"] == 2
    (address,) = rec["objects"]["addresses"]
    assert address["db_number"] == 2 and address["lids"] == [10]
    assert rec["undecoded_bytes"] == 0


def test_v2_digest_without_integrity_id() -> None:
    rec, anomalies = decode(V2_DELETE_RESPONSE)
    assert anomalies == ()
    assert rec["function_name"] == "delete_object" and rec["return_code"] == 0
    assert rec["objects"] == {"object_id": 0x388}
    assert rec["integrity"] is True and "integrity_id" not in rec
    assert rec["undecoded_bytes"] == 0


def test_v2_old_s7_1200() -> None:
    rec, _ = decode(V2_NOTIFICATION)
    assert rec["objects"] == {"object_id": 0x1000006E, "notification_sequence": 0}
    assert rec["integrity"] is False and rec["decoded"] is True
    rec, _ = decode(V2_SET_VARIABLE_REQUEST)
    assert rec["objects"] == {"object_id": 0x7000000A, "address_count": 1, "attribute_ids": [2711]}
    rec, _ = decode(V2_SET_VARIABLE_RESPONSE)
    assert rec["return_code"] == 0 and rec["undecoded_bytes"] == 0


@pytest.mark.parametrize("pdu", SAMPLES, ids=range(len(SAMPLES)))
def test_samples_are_plus(pdu: bytes) -> None:
    assert looks_like_plus(pdu, 0, len(pdu))
    rec, anomalies = decode(pdu)
    check_record(rec, anomalies)
    assert anomalies == () and rec["decoded"] and rec["trailer_ok"]


def test_offsets_are_honoured() -> None:
    pdu = V3_GET_MULTI_RESPONSE
    framed = b"\x03\x00\x00\x00\x02\xf0\x80" + pdu + b"junk"
    assert decode_plus(framed, 7, 7 + len(pdu)) == decode(pdu)
    assert looks_like_plus(framed, 7, 7 + len(pdu))


# -- fragmentation -----------------------------------------------------------------------------
@pytest.mark.parametrize("pdu", SAMPLES, ids=range(len(SAMPLES)))
def test_fragments_reassemble_to_the_whole(pdu: bytes) -> None:
    whole, _ = decode(pdu)
    body = len(pdu) - 8 - (33 if pdu[1] == 3 else 0)
    parts = fragments(pdu, sorted({1, body // 2, body - 1}))
    first, anomalies = decode(parts[0])
    assert first["fragment"] == "first" and first["trailer_ok"] is False and anomalies == ()
    assert first["opcode"] == whole["opcode"] and first["decoded"] is False
    assert first.get("function") in (None, whole.get("function"))  # None: cut inside the header
    for part in parts[1:-1]:
        rec, anomalies = decode(part, continuation=True)
        assert rec["fragment"] == "inner" and anomalies == ()
        assert "opcode" not in rec and rec["decoded"] is False
    last, anomalies = decode(parts[-1], continuation=True)
    assert last["fragment"] == "last" and last["trailer_ok"] is True and anomalies == ()
    rec, anomalies = decode_plus_fragments(parts)
    assert anomalies == ()
    assert rec.pop("fragment") == "reassembled" and rec.pop("fragments") == len(parts)
    assert rec.pop("data_length") == len(pdu) - 8 - (33 if pdu[1] == 3 else 0)  # no digests
    whole.pop("data_length")
    assert rec == whole


def test_fragments_of_mixed_versions_are_refused() -> None:
    parts = fragments(V2_SET_VARIABLE_REQUEST, [10])
    bad = [parts[0], b"\x72\x03" + parts[1][2:]]
    rec, anomalies = decode_plus_fragments(bad)
    assert rec["decoded"] is False
    check_record(rec, anomalies)
    assert decode_plus_fragments([])[0]["decoded"] is False


# -- anomalies ---------------------------------------------------------------------------------
def test_invalid_trailer() -> None:
    rec, anomalies = decode(V2_SET_VARIABLE_RESPONSE[:-1] + b"\x01")
    assert anomalies == ("s7comm_plus.invalid_trailer",)
    assert rec["trailer_ok"] is False and rec["decoded"] is True


def test_invalid_length() -> None:
    rec, anomalies = decode(V2_SET_VARIABLE_RESPONSE + b"\x00\x00")
    assert anomalies == ("s7comm_plus.invalid_length",)
    assert rec["trailer_ok"] is True and rec["function_name"] == "set_variable"
    longer = V2_SET_VARIABLE_RESPONSE[:2] + b"\x00\x40" + V2_SET_VARIABLE_RESPONSE[4:]
    _, anomalies = decode(longer)
    assert anomalies[0] == "s7comm_plus.truncated"


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 10, 20, 37, 40])
def test_truncated(n: int) -> None:
    rec, anomalies = decode(V3_GET_MULTI_RESPONSE[:n])
    check_record(rec, anomalies)
    assert "s7comm_plus.truncated" in anomalies
    assert rec["decoded"] is False


def test_unknown_opcode_and_function() -> None:
    pdu = bytearray(V2_SET_VARIABLE_RESPONSE)
    pdu[4] = 0x44
    rec, anomalies = decode(bytes(pdu))
    assert anomalies == ("s7comm_plus.unknown_opcode",)
    assert rec["opcode"] == 0x44 and "opcode_name" not in rec and rec["decoded"] is False
    pdu[4] = 0x32
    pdu[7:9] = b"\x07\x77"
    rec, anomalies = decode(bytes(pdu))
    assert anomalies == ("s7comm_plus.unknown_function",)
    assert rec["function"] == 0x777 and "function_name" not in rec
    assert rec["sequence"] == 0x7F6E and rec["decoded"] is False
    assert rec["undecoded_bytes"] == 5


def test_unknown_version_and_protocol_id() -> None:
    pdu = b"\x72\x07" + V2_SET_VARIABLE_RESPONSE[2:-4] + b"\x72\x07\x00\x00"
    rec, anomalies = decode(pdu)
    assert anomalies == ("s7comm_plus.unknown_version",)
    assert rec["version"] == 7 and rec["decoded"] is False and not looks_like_plus(pdu, 0, 23)
    rec, anomalies = decode(b"\x32\x01\x00\x00")
    assert anomalies == ("s7comm_plus.invalid_protocol_id",)


def test_keep_alive_and_system_event() -> None:
    rec, anomalies = decode(b"\x72\xff\x05\x00")
    assert rec == {"version": 0xFF, "sequence": 5, "decoded": True, "undecoded_bytes": 0}
    assert anomalies == () and looks_like_plus(b"\x72\xff\x05\x00", 0, 4)
    event = b"\x72\xfe\x00\x16" + bytes(4) + (1234).to_bytes(4, "big") + bytes(8) + b"LOGOUT"
    rec, anomalies = decode(event)
    assert anomalies == () and looks_like_plus(event, 0, len(event))
    assert rec["objects"] == {"confirmed_bytes": 1234, "message": "LOGOUT"}
    assert "trailer_ok" not in rec


def test_looks_like_plus() -> None:
    pdu = V2_SET_VARIABLE_RESPONSE
    assert looks_like_plus(pdu, 0, len(pdu))
    assert looks_like_plus(pdu[:-4], 0, len(pdu) - 4)  # a first fragment
    assert not looks_like_plus(pdu[:-1], 0, len(pdu) - 1)
    assert not looks_like_plus(pdu[:-1] + b"\x01", 0, len(pdu))
    assert not looks_like_plus(b"\x32" + pdu[1:], 0, len(pdu))
    assert not looks_like_plus(pdu, 0, 3)
    assert not looks_like_plus(b"\x72\x02\x00\x00", 0, 4)


# -- bounds ------------------------------------------------------------------------------------
def response(body: bytes, function: int = 0x054C) -> bytes:
    data = b"\x32\x00\x00" + function.to_bytes(2, "big") + b"\x00\x00\x00\x01\x34" + body
    return b"\x72\x02" + len(data).to_bytes(2, "big") + data + b"\x72\x02\x00\x00"


@pytest.mark.parametrize(
    "body",
    [
        # one item: a sparse array of nulls with 65 000 keys
        b"\x00\x01\x40\x00" + b"\x01" * 65_000,
        # structs nested far deeper than MAX_DEPTH
        b"\x00\x01\x00\x17\x00\x00\x00\x01" + b"\x01\x00\x17\x00\x00\x00\x01" * 9_000,
        # an array claiming 2**32 - 1 elements of a VLQ type
        b"\x00\x01\x10\x04\x8f\xff\xff\xff\x7f" + b"\x01" * 100,
        # an array claiming 2**32 - 1 LWORDs
        b"\x00\x01\x10\x0d\x8f\xff\xff\xff\x7f" + b"\x01" * 100,
        # 60 000 item/value pairs
        b"\x00" + b"\x01\x00\x01\x01" * 15_000,
    ],
    ids=["sparse", "deep", "huge_vlq_array", "huge_fixed_array", "many_items"],
)
def test_adversarial_bodies_are_bounded(body: bytes) -> None:
    pdu = response(body[:65_000])
    t0 = time.perf_counter()
    rec, anomalies = decode(pdu)
    assert time.perf_counter() - t0 < 2.0
    check_record(rec, anomalies)
    assert rec["decoded"] is False and rec["undecoded_bytes"] == len(pdu) - 18


def test_vlq() -> None:
    r = plus._Reader(bytes.fromhex("7f 8100 ffffffff7f 8f ffffff7f 00 7f 4040"), 0, 17)
    assert [r.vlq32(), r.vlq32(), r.vlq32()] == [0x7F, 0x80, 0xFFFFFFFF]
    assert r.vlq32() == 0xFFFFFFFF  # 5 bytes at most
    r = plus._Reader(bytes.fromhex("00 7f 40 c000 3f"), 0, 6)
    assert [r.svlq32(), r.svlq32(), r.svlq32(), r.svlq32(), r.svlq32()] == [0, -1, -64, -8192, 63]
    r = plus._Reader(bytes.fromhex("ff" * 8 + "ff" + "81 00"), 0, 11)
    assert [r.vlq64(), r.vlq64()] == [0xFFFFFFFFFFFFFFFF, 0x80]


# -- properties --------------------------------------------------------------------------------
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def timed(data: bytes, **kw: Any) -> Result:
    t0 = time.perf_counter()
    result: Result = decode_plus(data, 0, len(data), **kw)
    assert time.perf_counter() - t0 < 2.0
    check_record(*result)
    looks_like_plus(data, 0, len(data))
    return result


@SETTINGS
@given(data=st.binary(max_size=600), continuation=st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, continuation: bool) -> None:
    timed(data, continuation=continuation)
    timed(b"\x72" + data, continuation=continuation)


@st.composite
def framed(draw: st.DrawFn) -> bytes:
    """Valid header, length and trailer around a data part with a known opcode and function."""
    version = draw(st.sampled_from([1, 2, 3]))
    opcode = draw(st.sampled_from(sorted(plus.OPCODES)))
    function = draw(st.sampled_from(sorted(plus.FUNCTIONS)))
    body = draw(st.binary(max_size=300))
    head = bytes([opcode])
    if opcode != 0x33:
        head += b"\x00\x00" + function.to_bytes(2, "big") + b"\x00\x00\x00\x07"
        head += b"\x00\x00\x01\x20\x34" if opcode == 0x31 else b"\x34"
    digest = b"\x20" + bytes(32) if version == 3 else b""
    data = digest + head + body
    trailer = draw(st.sampled_from([bytes([0x72, version, 0, 0]), b""]))
    return bytes([0x72, version]) + len(data).to_bytes(2, "big") + data + trailer


@SETTINGS
@given(pdu=framed())
def test_framed_random_bodies_never_raise(pdu: bytes) -> None:
    rec, anomalies = timed(pdu)
    assert "s7comm_plus.unknown_opcode" not in anomalies
    assert rec["integrity"] is (pdu[1] == 3) or rec.get("integrity") is True


@SETTINGS
@given(
    pdu=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 400),
)
def test_mutated_real_pdus_never_raise(pdu: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(pdu)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    timed(bytes(data))
    timed(bytes(data[:cut]))


@SETTINGS
@given(parts=st.lists(st.binary(max_size=200), max_size=5))
def test_arbitrary_fragments_never_raise(parts: list[bytes]) -> None:
    rec, anomalies = decode_plus_fragments([b"\x72\x02" + p for p in parts])
    check_record(rec, anomalies)


# -- captures ----------------------------------------------------------------------------------
#: capture → (TSDUs starting with 0x72, fragments among them, PDUs with the body decoded,
#: reassembled fragment runs, of which decoded)
CAPTURES: dict[str, tuple[int, int, int, int, int]] = {
    "icsnpp/icsnpp-s7comm/tests/traces/s7comm_plus.pcap": (121, 0, 121, 0, 0),
    "iti-ics-security-tools/pcaps/s7/S7-1200-Uploading-OB1-TIAV12.pcap": (88, 3, 85, 1, 1),
    "iti-ics-security-tools/pcaps/s7/S7-1511-opc-request-all-types.pcap": (18, 0, 18, 0, 0),
    "iti-ics-security-tools/pcaps/s7/S7-1511_db2_var1_HMI.pcap": (18, 0, 18, 0, 0),
    "iti-ics-security-tools/pcaps/s7/S7-1511_db3_var1_HMI.pcap": (19, 0, 19, 0, 0),
    "iti-ics-security-tools/pcaps/s7/S7-1511_db6w0_HMI.pcap": (8, 0, 8, 0, 0),
    "iti-ics-security-tools/pcaps/s7/"
    "V13_1200_TP1200sim_MW100_Int_SPS_5s_MW102_Int_SPS_10s_MW102_ab_1000_Timer_sync.pcapng": (
        72,
        0,
        72,
        0,
        0,
    ),
    "iti-ics-security-tools/pcaps/s7/"
    "V13_1200_TP1200sim_MW100_Int_SPS_5s_MW102_Int_SPS_10s_MW102_ab_1000_Timer_sync_"
    "FehlerbeiMW100.pcapng": (66, 0, 66, 0, 0),
    "ndpi/tests/cfgs/default/pcap/s7comm-plus.pcap": (24, 0, 24, 0, 0),
    "zeek/testing/btest/Traces/modbus/modbusBig.pcap": (1139, 76, 1063, 38, 38),
}
ICSNPP_LOG = "icsnpp/icsnpp-s7comm/tests/baseline/analyzer.s7comm_plus/s7comm_plus.log"

Decoded = list[tuple[Tsdu, dict[str, Any], tuple[str, ...]]]


def capture(rel: str) -> Path:
    path = SHARED_PCAPS / rel
    if not path.is_file():
        pytest.skip(f"{rel} is absent (public captures are not part of a clone)")
    return path


def decode_capture(path: Path) -> tuple[Decoded, list[tuple[dict[str, Any], tuple[str, ...]]]]:
    """Every 0x72 TSDU decoded as the session would, and every fragment run reassembled."""
    out: Decoded = []
    runs: dict[tuple[bytes, int, bytes, int], list[bytes]] = {}
    reassembled = []
    for t in plus_tsdus(path):
        pending = runs.get(t.flow)
        rec, anomalies = decode_plus(t.data, 0, len(t.data), continuation=pending is not None)
        out.append((t, rec, anomalies))
        fragment = rec.get("fragment")
        if fragment in ("first", "inner"):
            runs.setdefault(t.flow, []).append(t.data)
        elif pending is not None:
            del runs[t.flow]
            reassembled.append(decode_plus_fragments([*pending, t.data]))
    return out, reassembled


@pytest.mark.parametrize("rel", sorted(CAPTURES), ids=lambda r: Path(r).stem[:40])
def test_capture(rel: str) -> None:
    decoded, reassembled = decode_capture(capture(rel))
    pdus, n_fragments, n_decoded, n_runs, n_runs_decoded = CAPTURES[rel]
    assert len(decoded) == pdus
    for t, rec, anomalies in decoded:
        check_record(rec, anomalies)
        assert anomalies == (), (rec, t.data.hex())
        assert rec["version"] in (1, 2, 3)
        if rec.get("fragment") in ("inner", "last"):
            continue
        assert rec["opcode"] in plus.OPCODES
        assert (rec["opcode"] == 0x31) is t.to_server
        if rec["opcode"] != 0x33:
            assert rec["function"] in plus.FUNCTIONS
        if rec.get("fragment") is None:
            assert rec["trailer_ok"] is True
            assert rec["decoded"] is True and rec["undecoded_bytes"] == 0, t.data.hex()
            assert looks_like_plus(t.data, 0, len(t.data))
    assert sum(1 for _, rec, _ in decoded if "fragment" in rec) == n_fragments
    assert sum(1 for _, rec, _ in decoded if rec["decoded"]) == n_decoded
    assert len(reassembled) == n_runs
    assert sum(1 for rec, _ in reassembled if rec["decoded"]) == n_runs_decoded
    for rec, anomalies in reassembled:
        assert anomalies == () and rec["trailer_ok"] is True and rec["undecoded_bytes"] == 0


def read_icsnpp_plus_log(path: Path) -> list[dict[str, str]]:
    rows = []
    fields: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def test_agrees_with_icsnpp() -> None:
    """Same (version, opcode, function) multiset as ICSNPP's s7comm_plus.log. ICSNPP reads a
    digest-length byte after the header whatever the version, which is right only for V3 (the
    only version in its trace), and logs no function for notifications."""
    decoded, _ = decode_capture(capture(next(iter(CAPTURES))))
    rows = read_icsnpp_plus_log(capture(ICSNPP_LOG))
    theirs = Counter(
        (
            int(row["version"]),
            int(row["opcode"], 16),
            None if row["function_code"] == "-" else int(row["function_code"], 16),
        )
        for row in rows
    )
    ours = Counter((rec["version"], rec["opcode"], rec.get("function")) for _, rec, _ in decoded)
    assert ours == theirs
    names = Counter((rec["opcode_name"], rec.get("function_name")) for _, rec, _ in decoded)
    assert names == Counter(
        (
            row["opcode_name"].lower(),
            None if row["function_name"] == "-" else row["function_name"].lower().replace(" ", "_"),
        )
        for row in rows
    )


def test_integrity_is_recognised() -> None:
    decoded, _ = decode_capture(capture(next(iter(CAPTURES))))
    assert all(rec["version"] == 3 and rec["integrity"] for _, rec, _ in decoded)
    assert all("integrity_id" in rec for _, rec, _ in decoded if rec["opcode"] != 0x33)
    decoded, _ = decode_capture(
        capture("iti-ics-security-tools/pcaps/s7/S7-1511_db2_var1_HMI.pcap")
    )
    by_version = Counter((rec["version"], rec["integrity"]) for _, rec, _ in decoded)
    # V1 session setup without, V2 with the digest at the end except SetMultiVariables
    assert by_version == Counter({(1, False): 2, (2, True): 14, (2, False): 2})
