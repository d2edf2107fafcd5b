"""The OPC UA built-in type reader: every type against asyncua's encoder (a real protocol stack),
hand-made bytes for what asyncua does not write (or writes in its own way), the caps, and
arbitrary bytes."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime

import pytest
from asyncua import ua
from asyncua.ua import ua_binary
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.dissectors.opcua import binary
from otsentry.dissectors.opcua.binary import DecodeError, Reader
from otsentry.dissectors.opcua.statuscodes import STATUS_CODES, status_name


def reader(data: bytes) -> Reader:
    return Reader(data, 0, len(data))


def variant(value: ua.Variant) -> dict[str, object]:
    data = ua_binary.variant_to_binary(value)
    r = reader(data)
    out = r.variant()
    assert r.pos == len(data)
    return out


# -- status codes ----------------------------------------------------------------------------------
def test_status_names() -> None:
    assert len(STATUS_CODES) == 274
    assert STATUS_CODES[0x80340000] == "BadNodeIdUnknown"
    assert status_name(0) == "Good"
    assert status_name(0x80340000) == "BadNodeIdUnknown"
    assert status_name(0x00A60000) == "GoodMoreData"
    assert status_name(0x80E70000) == "BadDataSetIdInvalid"  # the last row of StatusCode.csv
    # info bits (low 16) do not change the name: a Good value with the overflow bit
    assert status_name(0x00000480) == "Good"
    assert status_name(0x12345678) == "0x12345678"
    assert status_name(0x80FF0000) == "0x80FF0000"


def test_status_codes_match_asyncua() -> None:
    """asyncua generates its table from the same StatusCode.csv."""
    from asyncua.ua.status_codes import StatusCodes

    theirs = {
        value: name
        for name, value in vars(StatusCodes).items()
        if not name.startswith("_") and isinstance(value, int)
    }
    assert theirs == STATUS_CODES


# -- scalars ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vtype", "value", "expected", "name"),
    [
        (ua.VariantType.Boolean, True, True, "Boolean"),
        (ua.VariantType.SByte, -5, -5, "SByte"),
        (ua.VariantType.Byte, 250, 250, "Byte"),
        (ua.VariantType.Int16, -30000, -30000, "Int16"),
        (ua.VariantType.UInt16, 65000, 65000, "UInt16"),
        (ua.VariantType.Int32, -(2**31), -(2**31), "Int32"),
        (ua.VariantType.UInt32, 2**32 - 1, 2**32 - 1, "UInt32"),
        (ua.VariantType.Int64, -(2**63), -(2**63), "Int64"),
        (ua.VariantType.UInt64, 2**64 - 1, 2**64 - 1, "UInt64"),
        (ua.VariantType.Float, 0.1, 0.1, "Float"),
        (ua.VariantType.Float, 62.5, 62.5, "Float"),
        (ua.VariantType.Double, 4.177, 4.177, "Double"),
        (ua.VariantType.Double, float("nan"), "NaN", "Double"),
        (ua.VariantType.Double, float("-inf"), "-Infinity", "Double"),
        (ua.VariantType.String, "Pumpe Süd", "Pumpe Süd", "String"),
        (ua.VariantType.String, None, None, "String"),
        (ua.VariantType.ByteString, b"\x00\x01\xff", "0001ff", "ByteString"),
        (ua.VariantType.StatusCode, ua.StatusCode(0x803B0000), 0x803B0000, "StatusCode"),
    ],
)
def test_scalar_variants(vtype: ua.VariantType, value: object, expected: object, name: str) -> None:
    out = variant(ua.Variant(value, vtype))
    assert out == {"type": name, "value": expected}


def test_datetime_guid_xml() -> None:
    when = datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert variant(ua.Variant(when, ua.VariantType.DateTime))["value"] == (
        "2024-05-01T10:00:00.123456Z"
    )
    guid = uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a")
    assert variant(ua.Variant(guid, ua.VariantType.Guid))["value"] == str(guid)
    xml = ua.Variant(ua.XmlElement("<a>b</a>"), ua.VariantType.XmlElement)
    assert variant(xml) == {"type": "XmlElement", "value": "<a>b</a>"}


def test_datetime_edges() -> None:
    assert binary.ticks_to_iso(0) is None  # the null DateTime
    assert binary.ticks_to_iso(-5) is None
    assert binary.ticks_to_iso(2**63 - 1) == binary.MAX_TIME
    assert binary.ticks_to_iso(1) == "1601-01-01T00:00:00.000000Z"
    # 2009-09-01T23:29:28Z, as tshark shows the freeze capture's request header timestamps
    assert binary.ticks_to_iso(128963213680000000) == "2009-09-01T23:29:28.000000Z"


@pytest.mark.parametrize(
    ("node", "text"),
    [
        (ua.NodeId(85, 0), "i=85"),  # two-byte
        (ua.NodeId(2258, 0), "i=2258"),  # four-byte
        (ua.NodeId(4, 2), "ns=2;i=4"),
        (ua.NodeId(70000, 300), "ns=300;i=70000"),  # numeric
        (ua.NodeId("Pump.Speed", 2), "ns=2;s=Pump.Speed"),
        (
            ua.NodeId(uuid.UUID("09087e75-8e5e-499b-954f-f2a9603db28a"), 1),
            "ns=1;g=09087e75-8e5e-499b-954f-f2a9603db28a",
        ),
        (ua.NodeId(b"\x01\x02\x03", 3), "ns=3;b=AQID"),
    ],
)
def test_nodeids(node: ua.NodeId, text: str) -> None:
    data = ua_binary.nodeid_to_binary(node)
    r = reader(data)
    assert r.nodeid() == text
    assert r.pos == len(data)
    assert reader(data).expanded_nodeid() == text
    assert variant(ua.Variant(node, ua.VariantType.NodeId)) == {"type": "NodeId", "value": text}


def test_expanded_nodeids() -> None:
    both = ua.ExpandedNodeId(5, 0, NamespaceUri="urn:plant", ServerIndex=2)
    data = ua_binary.nodeid_to_binary(both)
    r = reader(data)
    assert r.expanded_nodeid() == "svr=2;nsu=urn:plant;i=5"
    assert r.pos == len(data)
    server_only = ua.ExpandedNodeId("Tank", 3, ServerIndex=1)
    assert reader(ua_binary.nodeid_to_binary(server_only)).expanded_nodeid() == "svr=1;ns=3;s=Tank"
    # a plain NodeId field does not take the ExpandedNodeId flags
    with pytest.raises(DecodeError):
        reader(data).nodeid()


def test_numeric_nodeid() -> None:
    assert reader(bytes.fromhex("01007702")).numeric_nodeid() == ("i=631", 631)
    assert reader(bytes.fromhex("01027702")).numeric_nodeid() == ("ns=2;i=631", None)
    assert reader(bytes.fromhex("0302000100000041")).numeric_nodeid() == ("ns=2;s=A", None)


def test_names_and_texts() -> None:
    assert variant(ua.Variant(ua.QualifiedName("Speed", 2))) == {
        "type": "QualifiedName",
        "value": "2:Speed",
    }
    assert variant(ua.Variant(ua.QualifiedName("Objects", 0)))["value"] == "Objects"
    assert variant(ua.Variant(ua.LocalizedText("Pumpe", "de")))["value"] == "Pumpe"
    assert variant(ua.Variant(ua.LocalizedText(None, "de")))["value"] is None
    assert reader(bytes.fromhex("00")).localized_text() is None


# -- structures ------------------------------------------------------------------------------------
def test_arrays_and_dimensions() -> None:
    out = variant(ua.Variant([1.5, 2.5], ua.VariantType.Double))
    assert out == {"type": "Array of Double", "array_length": 2, "value": [1.5, 2.5]}
    matrix = ua.Variant([[1, 2, 3], [4, 5, 6]], ua.VariantType.Int32, Dimensions=[2, 3])
    out = variant(matrix)
    assert out == {
        "type": "Array of Int32",
        "array_length": 6,
        "value": [1, 2, 3, 4, 5, 6],
        "dimensions": [2, 3],
    }
    strings = variant(ua.Variant(["a", None, "c"], ua.VariantType.String))
    assert strings["value"] == ["a", None, "c"]
    nested = variant(ua.Variant([ua.Variant(1), ua.Variant("a")], ua.VariantType.Variant))
    assert nested["value"] == [{"type": "Int64", "value": 1}, {"type": "String", "value": "a"}]


def test_null_variant_and_reserved_types() -> None:
    assert reader(b"\x00").variant() == {"type": "Null"}
    # built-in type ids 26-31 are read as ByteString (Part 6 5.2.2.16)
    r = reader(bytes.fromhex("1a02000000abcd"))
    assert r.variant() == {"type": "Reserved26", "value": "abcd"}
    with pytest.raises(DecodeError):
        reader(bytes.fromhex("2000")).variant()  # 32: not a type


def test_data_value() -> None:
    src = datetime(2024, 1, 1, tzinfo=UTC)
    dv = ua.DataValue(
        ua.Variant(18.5),
        ua.StatusCode(0x40920000),
        SourceTimestamp=src,
        ServerTimestamp=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
    )
    data = ua_binary.struct_to_binary(dv)
    r = reader(data)
    assert r.data_value() == {
        "type": "Double",
        "value": 18.5,
        "status": 0x40920000,
        "status_name": "UncertainInitialValue",
        "source_timestamp": "2024-01-01T00:00:00.000000Z",
        "server_timestamp": "2024-01-01T00:00:01.000000Z",
    }
    assert r.pos == len(data)
    # no status encoded: Good (Part 6 5.2.2.17)
    assert reader(b"\x00").data_value() == {"status": 0, "status_name": "Good"}


def test_data_value_picoseconds_in_spec_order() -> None:
    """Part 6 Table 16: SourceTimestamp, SourcePicoseconds, ServerTimestamp, ServerPicoseconds.
    (asyncua 2.1 writes both picoseconds after the server timestamp; Wireshark and the spec
    do not.)"""
    ticks = 128963213680000000
    data = (
        bytes([0x3D, 0x06])  # value, source ts, server ts, both picoseconds; Int32
        + struct.pack("<i", 7)
        + struct.pack("<q", ticks)
        + struct.pack("<H", 10)
        + struct.pack("<q", ticks + 10_000_000)
        + struct.pack("<H", 20)
    )
    r = reader(data)
    assert r.data_value() == {
        "type": "Int32",
        "value": 7,
        "status": 0,
        "status_name": "Good",
        "source_timestamp": "2009-09-01T23:29:28.000000Z",
        "server_timestamp": "2009-09-01T23:29:29.000000Z",
    }
    assert r.pos == len(data)


def test_diagnostic_info() -> None:
    info = ua.DiagnosticInfo(
        SymbolicId=1,
        NamespaceURI=2,
        Locale=3,
        LocalizedText=4,
        AdditionalInfo="more",
        InnerStatusCode=ua.StatusCode(0x80340000),
    )
    data = ua_binary.struct_to_binary(info)
    r = reader(data)
    out = r.diagnostic_info()
    assert r.pos == len(data)
    assert out is not None
    assert out["symbolic_id"] == 1 and out["namespace_uri"] == 2
    assert {out["locale"], out["localized_text"]} == {3, 4}
    assert out["additional_info"] == "more" and out["inner_status"] == 0x80340000
    assert reader(b"\x00").diagnostic_info() is None
    # inner diagnostic infos nest: 16 levels decode, 17 do not
    assert reader(b"\x40" * 15 + b"\x01" + b"\x07\x00\x00\x00").diagnostic_info() is not None
    with pytest.raises(DecodeError):
        reader(b"\x40" * 17 + b"\x00").diagnostic_info()


def test_extension_objects() -> None:
    build = ua.BuildInfo(
        ProductUri="urn:vendor:plc",
        ManufacturerName="Vendor",
        ProductName="PLC 9000",
        SoftwareVersion="4.2.1",
        BuildNumber="1234",
        BuildDate=datetime(2024, 1, 1, tzinfo=UTC),
    )
    out = variant(ua.Variant(build))
    assert out["type"] == "ExtensionObject"
    assert out["value"] == {
        "type_id": "i=340",
        "type": "BuildInfo",
        "body": {
            "product_uri": "urn:vendor:plc",
            "manufacturer_name": "Vendor",
            "product_name": "PLC 9000",
            "software_version": "4.2.1",
            "build_number": "1234",
            "build_date": "2024-01-01T00:00:00.000000Z",
        },
    }
    status = ua.ServerStatusDataType(
        StartTime=datetime(2024, 1, 1, tzinfo=UTC),
        CurrentTime=datetime(2024, 1, 2, tzinfo=UTC),
        State=ua.ServerState.Running,
        BuildInfo=build,
    )
    body = variant(ua.Variant(status))["value"]["body"]
    assert body["state"] == "Running" and body["build_info"]["software_version"] == "4.2.1"
    rng = variant(ua.Variant(ua.Range(Low=0.0, High=100.0)))["value"]
    assert rng["body"] == {"low": 0.0, "high": 100.0}
    # a structure not decoded here: its type id and length
    other = ua.Variant(ua.ReadValueId(NodeId=ua.NodeId(5, 2)))
    value = variant(other)["value"]
    assert value["type_id"] == "i=628" and value["body_length"] > 0
    # no body; an XML body
    assert reader(bytes.fromhex("000000")).extension_object() == {"type_id": "i=0"}
    xml = bytes.fromhex("0100f40102") + struct.pack("<i", 4) + b"<a/>"
    assert reader(xml).extension_object() == {"type_id": "i=500", "xml": "<a/>"}
    with pytest.raises(DecodeError):
        reader(bytes.fromhex("000003")).extension_object()  # encoding 3


# -- caps and faults -------------------------------------------------------------------------------
def test_strings_are_capped() -> None:
    long = "x" * 5000
    out = variant(ua.Variant(long))
    assert out["value"] == "x" * binary.STRING_CAP
    blob = variant(ua.Variant(bytes(1000), ua.VariantType.ByteString))
    assert blob["value"] == "00" * (binary.STRING_CAP // 2)


def test_values_are_budgeted() -> None:
    data = ua_binary.variant_to_binary(ua.Variant(list(range(200)), ua.VariantType.UInt32))
    r = reader(data)
    out = r.variant()
    assert out["array_length"] == 200 and out["value"] == list(range(binary.VALUE_CAP))
    assert r.truncated and r.pos == len(data)
    # a long array of a fixed-size type is skipped past the cap, of any length
    big = ua_binary.variant_to_binary(ua.Variant(bytes(50_000), ua.VariantType.ByteString))
    assert reader(big).variant()["type"] == "ByteString"
    many = struct.pack("<Bi", 0x83, 50_000) + bytes(50_000)  # Array of Byte
    r = reader(many)
    assert r.variant()["array_length"] == 50_000 and r.pos == len(many)
    # … but not of a variable-size one
    strings = struct.pack("<Bi", 0x8C, 20_000) + struct.pack("<i", -1) * 20_000
    with pytest.raises(DecodeError):
        reader(strings).variant()


def test_elements_per_message_are_capped() -> None:
    """Nested one-byte elements: at most MAX_ELEMENTS parsed per reader, across arrays."""
    row = struct.pack("<Bi", 0x98, 10_000) + b"\x00" * 10_000  # Array of 10,000 Null Variants
    fits = struct.pack("<Bi", 0x98, 9) + row * 9
    r = reader(fits)
    out = r.variant()
    assert out["array_length"] == 9 and r.pos == len(fits)
    too_many = struct.pack("<Bi", 0x98, 11) + row * 11
    with pytest.raises(DecodeError, match="array elements in one message"):
        reader(too_many).variant()


@pytest.mark.parametrize(
    "data",
    [
        b"",  # nothing
        b"\x06\x01\x00",  # Int32 cut short
        b"\x0c\x05\x00\x00\x00ab",  # String longer than the bytes
        b"\x0c\xfe\xff\xff\xff",  # String length -2
        b"\x8b\x02\x00\x00\x00" + bytes(8),  # Array of 2 Double with one
        b"\x11\x06",  # NodeId encoding 6
        b"\x8c\xff\xff\xff\x7f",  # an array length of 2^31 - 1
    ],
)
def test_faults_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        reader(data).variant()


def test_end_bounds_the_reader() -> None:
    data = ua_binary.variant_to_binary(ua.Variant(7, ua.VariantType.Int32)) + b"\xff" * 4
    assert Reader(data, 0, 5).variant() == {"type": "Int32", "value": 7}
    with pytest.raises(DecodeError):
        Reader(data, 0, 4).variant()
    with pytest.raises(DecodeError):
        Reader(data, 0, 100).skip(10)  # end past the data is the data's end


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    for read in (
        Reader.variant,
        Reader.data_value,
        Reader.diagnostic_info,
        Reader.extension_object,
        Reader.expanded_nodeid,
        Reader.localized_text,
    ):
        r = reader(data)
        try:
            read(r)
        except DecodeError:
            continue
        assert 0 <= r.pos <= len(data)
