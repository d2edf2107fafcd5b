"""More fast paths against the general reads they stand in for: names and texts read over in one
step, the null additional header, lists read with a loop, the service dispatch table, the
single-chunk message path; the same value or the same DecodeError, the reader in the same state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.dissectors.opcua import services
from otsentry.dissectors.opcua.binary import DecodeError, Reader


def _outcome(read: Callable[[Reader], Any], data: bytes, end: int) -> tuple[Any, ...]:
    r = Reader(data, 0, end)
    try:
        result: Any = ("value", read(r))
    except DecodeError as exc:
        result = ("error", str(exc))
    return result, r.pos, r.budget, r.truncated, r.depth, r.elements


def _general_qualified_name(r: Reader) -> None:
    r.uint16()
    r.skip_bytestring()


def _general_localized_text(r: Reader) -> None:
    mask = r.data[r.take(1)]
    if mask & 0x01:
        r.skip_bytestring()
    if mask & 0x02:
        r.skip_bytestring()


def _general_additional_header(r: Reader) -> None:
    services._skip_extension_object(r)


def _fast_additional_header(r: Reader) -> None:
    services._skip_additional_header(r, r.pos)


#: lengths that hit the edges: null, empty, short, negative, past the end
_LENGTHS = st.sampled_from([-2, -1, 0, 1, 3, 5, 200, 0x7FFFFFFF, -0x80000000])


def _lengthy(n: int, tail: bytes) -> bytes:
    return n.to_bytes(4, "little", signed=True) + tail


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2), _LENGTHS, st.binary(max_size=12), st.integers(0, 20))
def test_skip_qualified_name_as_the_general_path(ns: bytes, n: int, tail: bytes, cut: int) -> None:
    data = ns + _lengthy(n, tail) if len(ns) == 2 else ns
    for end in (len(data), max(len(data) - cut, 0)):
        expected = _outcome(_general_qualified_name, data, end)
        assert _outcome(Reader.skip_qualified_name, data, end) == expected, (data.hex(), end)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), _LENGTHS, _LENGTHS, st.binary(max_size=12), st.integers(0, 20))
def test_skip_localized_text_as_the_general_path(
    mask: int, n1: int, n2: int, tail: bytes, cut: int
) -> None:
    data = bytes([mask]) + _lengthy(n1, tail[:3]) + _lengthy(n2, tail[3:])
    for end in (0, len(data), max(len(data) - cut, 0)):
        expected = _outcome(_general_localized_text, data, end)
        assert _outcome(Reader.skip_localized_text, data, end) == expected, (data.hex(), end)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=10), st.integers(0, 12))
def test_skip_additional_header_as_the_general_path(data: bytes, cut: int) -> None:
    for body in (data, b"\0\0\0" + data, b"\0\0" + data, b"\0\0\x01" + data):
        for end in (len(body), max(len(body) - cut, 0)):
            expected = _outcome(_general_additional_header, body, end)
            assert _outcome(_fast_additional_header, body, end) == expected, (body.hex(), end)


@given(st.integers(-1, services.LIST_CAP + 5))
def test_list_keeps_the_cap_and_reads_every_element(n: int) -> None:
    data = n.to_bytes(4, "little", signed=True) + bytes(range(max(n, 0))) + b"\xff"
    r = Reader(data, 0, len(data))
    out, count = services._list(r, Reader.byte)
    assert count == max(n, 0)
    assert out == list(range(min(max(n, 0), services.LIST_CAP)))
    assert r.truncated == (n > services.LIST_CAP)
    assert r.pos == len(data) - 1


def test_statuses_and_strings_empty_and_not() -> None:
    empty = (0).to_bytes(4, "little")
    assert services._statuses(Reader(empty, 0, 4)) == []
    assert services._strings(Reader(empty, 0, 4)) == []
    codes = (
        (2).to_bytes(4, "little") + (0).to_bytes(4, "little") + (0x80340000).to_bytes(4, "little")
    )
    assert services._statuses(Reader(codes, 0, len(codes))) == [
        {"status": 0, "status_name": "Good"},
        {"status": 0x80340000, "status_name": services.status_name(0x80340000)},
    ]
    text = (3).to_bytes(4, "little") + (-1).to_bytes(4, "little", signed=True)
    text += (1).to_bytes(4, "little") + b"a" + (0).to_bytes(4, "little")
    assert services._strings(Reader(text, 0, len(text))) == ["a", ""]


def test_the_dispatch_table_covers_every_service_as_before() -> None:
    assert set(services._SERVICES) == set(services.SERVICE_NAMES)
    for number, (name, response, header, decoder) in services._SERVICES.items():
        assert name == services.SERVICE_NAMES[number]
        assert response == services._is_response(name)
        assert decoder is services._DECODERS.get(number)
        if number in services._NO_HEADER:
            assert header is None
        else:
            expected = services._response_header if response else services._request_header
            assert header is expected
