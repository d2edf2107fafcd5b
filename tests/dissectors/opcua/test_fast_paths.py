"""The reader's fast paths (fixed-size scalar Variants and DataValues in one pass, numeric NodeIds
from the text cache, values read over without building them) against the general paths they
stand in for: the same value or the same DecodeError, and the reader left in the same state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.dissectors.opcua import binary, services
from otsentry.dissectors.opcua.binary import MAX_DEPTH, DecodeError, Reader
from otsentry.dissectors.opcua.services import decode_body

#: Variant encoding bytes: every fixed-size scalar, Null, Float, String, arrays, a bad type
_VARIANT_BYTES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 19, 0x86, 0xC6, 0x3F]
#: NodeId / ExpandedNodeId encoding bytes: every kind, the URI and server index flags, junk
_NODEID_BYTES = [0, 1, 2, 3, 4, 5, 6, 0x10, 0x40, 0x80, 0xC1]


def _outcome(read: Callable[[Reader], Any], r: Reader) -> tuple[Any, ...]:
    """What a read gave (value or error text) and the state it left the reader in."""
    try:
        result: Any = ("value", read(r))
    except DecodeError as exc:
        result = ("error", str(exc))
    return result, r.pos, r.budget, r.truncated, r.depth, r.elements


def _reader(data: bytes, budget: int, depth: int) -> Reader:
    r = Reader(data, 0, len(data), budget)
    r.depth = depth
    return r


def _same(fast: Callable[[Reader], Any], general: Callable[[Reader], Any], data: bytes) -> None:
    for budget in (0, 1, binary.VALUE_CAP):
        for depth in (0, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH):
            expected = _outcome(general, _reader(data, budget, depth))
            assert _outcome(fast, _reader(data, budget, depth)) == expected, (data.hex(), budget)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_VARIANT_BYTES), st.binary(max_size=24))
def test_variant_fast_path_matches_the_general_path(kind: int, tail: bytes) -> None:
    _same(Reader.variant, Reader._variant, bytes([kind]) + tail)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 255), st.sampled_from(_VARIANT_BYTES), st.binary(max_size=40))
def test_data_value_fast_path_matches_the_general_path(mask: int, kind: int, tail: bytes) -> None:
    _same(Reader.data_value, Reader._data_value, bytes([mask, kind]) + tail)


def test_data_value_fast_path_is_taken_and_complete() -> None:
    # value (Double 1.5), status, source and server timestamps with picoseconds
    ticks = 133_000_000_000_000_000
    data = (
        bytes([0x3F, 11])
        + binary.F64.pack(1.5)
        + binary.U32.pack(0x80340000)
        + binary.I64.pack(ticks)
        + binary.U16.pack(7)
        + binary.I64.pack(ticks + 10)
        + binary.U16.pack(9)
    )
    r = Reader(data, 0, len(data))
    assert r.data_value() == {
        "type": "Double",
        "value": 1.5,
        "status": 0x80340000,
        "status_name": "BadNodeIdUnknown",
        "source_timestamp": binary.ticks_to_iso(ticks),
        "server_timestamp": binary.ticks_to_iso(ticks + 10),
    }
    assert r.pos == len(data) and r.budget == binary.VALUE_CAP - 1
    assert _outcome(Reader.data_value, Reader(data, 0, len(data))) == _outcome(
        Reader._data_value, Reader(data, 0, len(data))
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_NODEID_BYTES), st.binary(max_size=24))
def test_skipping_reads_what_decoding_reads(mask: int, tail: bytes) -> None:
    data = bytes([mask]) + tail
    pairs: list[tuple[Callable[[Reader], Any], Callable[[Reader], Any]]] = [
        (Reader.skip_nodeid, Reader.nodeid),
        (Reader.skip_expanded_nodeid, Reader.expanded_nodeid),
        (Reader.skip_qualified_name, Reader.qualified_name),
        (Reader.skip_localized_text, Reader.localized_text),
    ]
    for skip, read in pairs:
        skipped = _outcome(skip, Reader(data, 0, len(data)))
        decoded = _outcome(read, Reader(data, 0, len(data)))
        assert skipped[1:] == decoded[1:]
        assert skipped[0][0] == decoded[0][0]
        if decoded[0][0] == "error":
            assert skipped[0] == decoded[0]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0, 1, 2]), st.binary(min_size=0, max_size=8))
def test_numeric_nodeids_as_the_general_path_reads_them(mask: int, tail: bytes) -> None:
    data = bytes([mask]) + tail
    r = Reader(data, 0, len(data))
    try:
        text = r.nodeid()
    except DecodeError:
        return
    if mask == 0:
        ns, ident = 0, data[1]
    elif mask == 1:
        ns, ident = data[1], data[2] | data[3] << 8
    else:
        ns, ident = binary.NUMERIC_NODEID.unpack_from(data, 1)
    assert text == (f"ns={ns};i={ident}" if ns else f"i={ident}")
    assert r.pos == {0: 2, 1: 4, 2: 7}[mask]
    number = Reader(data, 0, len(data)).numeric_nodeid()
    assert number == (text, None if ns else ident)


def test_numeric_text_cache_stays_bounded_and_right() -> None:
    for ident in range(5000):
        assert binary.numeric_text(3, ident) == f"ns=3;i={ident}"
    assert len(binary._NUMERIC_TEXT) <= 4096
    assert binary.numeric_text(0, 2258) == "i=2258"
    assert binary.numeric_text(0, 2258) == "i=2258"  # from the cache


def test_decode_body_into_a_record_updates_it_in_place() -> None:
    body = (
        bytes.fromhex("01007702")  # ReadRequest_Encoding_DefaultBinary, i=631
        + bytes.fromhex("0000")  # authentication token i=0
        + binary.I64.pack(133_000_000_000_000_000)  # timestamp
        + binary.U32.pack(42)  # request handle
        + binary.U32.pack(0)  # return diagnostics
        + binary.I32.pack(-1)  # audit entry id: null
        + binary.U32.pack(4000)  # timeout hint
        + bytes(3)  # additional header: none
        + binary.F64.pack(0.0)  # max age
        + binary.U32.pack(2)  # timestamps to return: Both
        + binary.I32.pack(0)  # nodes to read: none
    )
    fresh, anomalies = decode_body(body, 0, len(body))
    assert anomalies == () and fresh["service"] == "ReadRequest"
    assert fresh["request_handle"] == 42 and fresh["timeout_hint"] == 4000
    head = {"message_type": "MSG", "service": "placeholder"}
    into, again = decode_body(body, 0, len(body), head)
    assert into is head and again == anomalies
    assert list(head) == ["message_type", "service", *[k for k in fresh if k != "service"]]
    assert {k: v for k, v in head.items() if k != "message_type"} == fresh


def test_read_value_id_with_and_without_range_and_encoding() -> None:
    def read_value_id(index_range: bytes, ns: int, name: bytes) -> tuple[dict[str, Any], int]:
        data = (
            bytes.fromhex("010204")  # ns=2;i=... four-byte NodeId: ns 2, id 4
            + bytes.fromhex("00")
            + binary.U32.pack(13)  # attribute: Value
            + index_range
            + binary.U16.pack(ns)
            + name
            + b"\xee"  # the next structure's first byte, not read
        )
        r = Reader(data, 0, len(data))
        return services._read_value_id(r), len(data) - 1 - r.pos

    base = {"node_id": "ns=2;i=4", "attribute_id": 13, "attribute": "Value"}
    null, empty = binary.I32.pack(-1), binary.I32.pack(0)
    for index_range in (null, empty):
        for name in (null, empty):
            assert read_value_id(index_range, 0, name) == (base, 0)
    assert read_value_id(null, 2, null) == ({**base, "data_encoding": "2:"}, 0)
    ranged = binary.I32.pack(3) + b"1:2"
    assert read_value_id(ranged, 0, binary.I32.pack(1) + b"x") == (
        {**base, "index_range": "1:2", "data_encoding": "x"},
        0,
    )
