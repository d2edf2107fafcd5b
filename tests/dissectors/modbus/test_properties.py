"""Property tests: any bytes never raise and always progress; segmentation never changes PDUs."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .stack import Harness, streams

CLIENT, SERVER = streams()
CLIENT_BLOB, SERVER_BLOB = b"".join(CLIENT), b"".join(SERVER)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cuts(blob: bytes) -> st.SearchStrategy[list[int]]:
    """Sorted, distinct cut points inside ``blob``."""
    return st.lists(st.integers(1, len(blob) - 1), max_size=40, unique=True).map(sorted)


def segments(blob: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *points, len(blob)]
    return [blob[a:b] for a, b in pairwise(bounds)]


def pdus_of(h: Harness) -> dict[str, list[dict[str, Any]]]:
    """PDUs per direction, without frame numbers (those depend on segmentation)."""
    return {
        d: [{k: v for k, v in p.items() if k != "frame"} for p in h.by_direction(d)]
        for d in ("request", "response")
    }


def whole() -> Harness:
    h = Harness()
    for req, resp in zip(CLIENT, SERVER, strict=True):
        h.send(True, req)
        h.send(False, resp)
    h.close()
    return h


REFERENCE = whole()


@SETTINGS
@given(client_cuts=cuts(CLIENT_BLOB), server_cuts=cuts(SERVER_BLOB))
def test_segmentation_does_not_change_pdus(client_cuts: list[int], server_cuts: list[int]) -> None:
    h = Harness()
    for seg in segments(CLIENT_BLOB, client_cuts):
        h.send(True, seg)
    for seg in segments(SERVER_BLOB, server_cuts):
        h.send(False, seg)
    h.close()
    assert pdus_of(h) == pdus_of(REFERENCE)
    assert [(e.action, e.fields.get("values")) for e in h.events] == [
        (e.action, e.fields.get("values")) for e in REFERENCE.events
    ]
    stats = h.streams[True].stats
    assert stats.no_progress == 0 and stats.dissector_errors == 0


@SETTINGS
@given(
    data=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=300)), max_size=30),
    gaps=st.lists(st.integers(0, 29), max_size=3),
)
def test_arbitrary_bytes_never_raise_and_always_progress(
    data: list[tuple[bool, bytes]], gaps: list[int]
) -> None:
    h = Harness()
    for i, (from_client, payload) in enumerate(data):
        if i in gaps:
            h.skip(from_client, 7)
        h.send(from_client, payload)
    h.close()
    stats = h.streams[True].stats
    assert stats.dissector_errors == 0, "the dissector raised"
    assert stats.no_progress == 0, "the dissector made no progress"


@SETTINGS
@given(
    prefix=st.binary(max_size=64),
    data=st.binary(max_size=600),
    start=st.integers(0, 16),
    from_client=st.booleans(),
)
def test_parse_contract_on_raw_buffers(
    prefix: bytes, data: bytes, start: int, from_client: bool
) -> None:
    """Straight calls: the result is bytes consumed (within the buffer) or more bytes needed."""
    h = Harness()
    buf = prefix + data
    start = min(start, len(buf))
    for resync in (False, True):
        if resync:
            h.session.gap(from_client, 0)
        pos = start
        while pos < len(buf):
            r = h.session.parse(buf, pos, from_client, 0)
            assert r != 0
            if r < 0:
                break
            assert pos + r <= len(buf)
            pos += r


@SETTINGS
@given(junk=st.binary(min_size=1, max_size=200), client_cuts=cuts(CLIENT_BLOB))
def test_valid_stream_after_a_gap_is_found_again(junk: bytes, client_cuts: list[int]) -> None:
    """After a loss, resynchronisation finds the ADUs that follow the damaged one."""
    h = Harness()
    h.skip(True, 1)  # a gap first: the dissector is told to resynchronise
    h.send(True, junk + CLIENT[0])
    for seg in segments(CLIENT_BLOB, client_cuts):
        h.send(True, seg)
    h.close()
    requests = [p["transaction_id"] for p in h.by_direction("request")]
    # every ADU of the intact stream after the junk is found, in order, at the end
    assert requests[-len(CLIENT) :] == list(range(1, len(CLIENT) + 1))
