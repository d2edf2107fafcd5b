"""The list elements read in place (BrowseResult and its ReferenceDescriptions, ...) against the
general reads they stand in for: the same value or the same DecodeError, the reader in the same
state (position, value budget, truncation, depth, elements left)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.dissectors.opcua import binary, services
from otsentry.dissectors.opcua.binary import DecodeError, Reader


def _outcome(read: Callable[[Reader], Any], data: bytes, end: int, budget: int) -> tuple[Any, ...]:
    r = Reader(data, 0, end, budget)
    r.elements = 40
    try:
        result: Any = ("value", read(r))
    except DecodeError as exc:
        result = ("error", str(exc))
    return result, r.pos, r.budget, r.truncated, r.depth, r.elements


def _same(fast: Callable[[Reader], Any], general: Callable[[Reader], Any], data: bytes) -> None:
    for end in range(len(data) + 1):
        for budget in (0, 1, 64):
            expected = _outcome(general, data, end, budget)
            assert _outcome(fast, data, end, budget) == expected, (data.hex(), end, budget)


def _i32(n: int) -> bytes:
    return n.to_bytes(4, "little", signed=True)


#: lengths at the edges: null, empty, short, negative, past the end, over the limits
_LENGTHS = [-2, -1, 0, 1, 2, 3, 41, 10_001, 0x7FFFFFFF, -0x80000000]
#: NodeId / ExpandedNodeId encoding bytes: every kind, the URI and server index flags, junk
_NODEID_BYTES = [0, 1, 2, 3, 4, 5, 6, 0x10, 0x40, 0x80, 0xC1]


def _general_reference(r: Reader) -> str:
    r.skip_nodeid()  # reference type
    r.boolean()  # is forward
    target = r.expanded_nodeid()
    r.skip_qualified_name()  # browse name
    r.skip_localized_text()  # display name
    r.uint32()  # node class
    r.skip_expanded_nodeid()  # type definition
    return target


def _general_browse_result(r: Reader) -> dict[str, Any]:
    out = services._status(r.status())
    if r.skip_bytestring() > 0:
        out["continuation_point"] = True
    n = r.array_length()
    targets: list[str] = []
    for _ in range(n):
        target = _general_reference(r)
        if r.keep():
            targets.append(target)
    out["reference_count"] = n
    out["targets"] = targets
    return out


@st.composite
def _nodeid(draw: st.DrawFn) -> bytes:
    mask = draw(st.sampled_from(_NODEID_BYTES))
    return bytes([mask]) + draw(st.binary(max_size=8))


def _length(draw: st.DrawFn, right: int) -> bytes:
    """Mostly the right length, else one at the edges."""
    return _i32(right if draw(st.integers(0, 3)) else draw(st.sampled_from(_LENGTHS)))


@st.composite
def _reference(draw: st.DrawFn) -> bytes:
    """A ReferenceDescription, mostly well formed; its lengths and encodings drawn at the edges."""
    parts = [
        draw(st.sampled_from([b"\x00\x23", b"\x01\x00\x2f\x00", b"\x02\x00\x00\x2f\x00\x00\x00"]))
        if draw(st.booleans())
        else draw(_nodeid()),
        b"\x01",
        draw(st.sampled_from([b"\x01\x02\x10\x27", b"\x00\x55"]))
        if draw(st.booleans())
        else draw(_nodeid()),
        b"\x02\x00",
        _length(draw, 2),
        b"ab",
        bytes([draw(st.sampled_from([0, 1, 2, 3, 0xFF]))]),
        _length(draw, 2),
        b"en",
        _length(draw, 1),
        b"x",
        _i32(draw(st.integers(0, 255))),
        draw(st.sampled_from([b"\x00\x3a", b"\x01\x00\x3d\x00"]))
        if draw(st.booleans())
        else draw(_nodeid()),
    ]
    return b"".join(parts)


@settings(max_examples=300, deadline=None)
@given(_reference())
def test_reference_target_as_the_general_path(data: bytes) -> None:
    _same(services._reference_target, _general_reference, data)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from(_LENGTHS),
    st.sampled_from([*_LENGTHS, 2]),
    st.lists(_reference(), max_size=3),
)
def test_browse_result_as_the_general_path(
    code: int, point: int, n: int, references: list[bytes]
) -> None:
    data = code.to_bytes(4, "little") + _i32(point) + (b"cp" if point > 0 else b"") + _i32(n)
    _same(services._browse_result, _general_browse_result, data + b"".join(references))


def _general_extension_header(r: Reader) -> tuple[str, int | None, int, int]:
    text, number = r.numeric_nodeid()
    encoding = r.byte()
    if encoding == 0:
        return text, number, 0, -1
    if encoding not in (1, 2):
        raise DecodeError(
            f"unknown ExtensionObject encoding {encoding} at offset {r.pos - 1 - r.base}"
        )
    n = r.length()
    return text, number, encoding, max(n, 0)


def _general_extension_object(r: Reader) -> dict[str, Any]:
    """The ExtensionObject read with a sub() reader over its body, as it was."""
    r.enter()
    text, number, encoding, n = _general_extension_header(r)
    out: dict[str, Any] = {"type_id": text}
    if encoding == 1:
        known = binary.EXTENSION_TYPES.get(number) if number is not None else None
        if known is None:
            r.skip(n)
            out["body_length"] = n
        else:
            out["type"] = known[0]
            inner = r.sub(r.pos + n)
            out["body"] = known[1](inner)
            r.join(inner)
    elif encoding == 2:
        at = r.take(n)
        out["xml"] = bytes(r.data[at : at + min(n, 4 * binary.STRING_CAP)]).decode(
            "utf-8", "replace"
        )[: binary.STRING_CAP]
    r.leave()
    return out


def _kept_outcome(
    read: Callable[[Reader], Any], data: bytes, end: int, budget: int
) -> tuple[Any, ...]:
    """The value and the reader's state; after a fault only what decode_body keeps of it (the
    error and the truncation flag: nothing reads on after a DecodeError)."""
    r = Reader(data, 0, end, budget)
    r.elements = 40
    try:
        return ("value", read(r), r.pos, r.budget, r.truncated, r.depth, r.elements)
    except DecodeError as exc:
        return ("error", str(exc), r.truncated)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([0, 1, 22, 298, 340, 864, 886, 889, 8251]),
    st.sampled_from([0, 1, 2, 3]),
    st.sampled_from([*_LENGTHS, 4, 8, 16, 30]),
    st.binary(max_size=48),
)
def test_extension_object_as_the_general_path(
    type_id: int, encoding: int, n: int, body: bytes
) -> None:
    data = b"\x01\x00" + type_id.to_bytes(2, "little") + bytes([encoding]) + _i32(n) + body
    _same(Reader.extension_header, _general_extension_header, data)
    for end in range(len(data) + 1):
        for budget in (0, 1, 64):
            fast = _kept_outcome(Reader.extension_object, data, end, budget)
            expected = _kept_outcome(_general_extension_object, data, end, budget)
            assert fast == expected, (data.hex(), end, budget)


def test_argument_body_in_place_leaves_the_reader_after_the_body() -> None:
    # an Argument: name "x", data type i=11, value rank -1, no dimensions, no description; then
    # two bytes of the body that the structure does not use, then a byte after the object
    body = _i32(1) + b"x" + b"\x00\x0b" + _i32(-1) + _i32(0) + b"\x00" + b"zz"
    data = b"\x01\x00\x2a\x01\x01" + _i32(len(body)) + body + b"\xff"
    r = Reader(data, 0, len(data))
    assert r.extension_object() == {
        "type_id": "i=298",
        "type": "Argument",
        "body": {"name": "x", "data_type": "i=11", "value_rank": -1},
    }
    assert r.pos == len(data) - 1 and r.end == len(data) and r.depth == 0


def test_ticks_text_cache_stays_bounded_and_right() -> None:
    def iso(ticks: int) -> str:
        when = binary.EPOCH_1601 + timedelta(microseconds=ticks // 10)
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    start = 133_000_000_123_456_789
    for i in range(10_000):
        ticks = start + i * 1_234_567
        assert binary.ticks_to_iso(ticks) == iso(ticks)
        assert binary.ticks_to_iso(ticks) == iso(ticks)  # from the cache
        assert len(binary._TICKS) <= 4096
    assert binary.ticks_to_iso(0) is None and binary.ticks_to_iso(-1) is None
    assert binary.ticks_to_iso(binary.MAX_TICKS) == binary.MAX_TIME
