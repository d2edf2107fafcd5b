"""Resynchronisation looks only at offsets where a chunk header can start: those offsets must
include every offset a per-byte scan would accept."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.dissectors.opcua import session

TOKENS = [b"MSGF", b"MSG", b"OPNF", b"HELA", b"CLOC", b"ERRF", b"ACKF", b"RHEF", b"MSGX", b"SGF"]


@st.composite
def junk_with_headers(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        parts.append(draw(st.binary(max_size=40)))
        token = draw(st.sampled_from(TOKENS))
        size = draw(st.sampled_from([0, 8, 32, 4096, 1 << 30]))
        parts.append(token + struct.pack("<I", size))
    parts.append(draw(st.binary(max_size=40)))
    return b"".join(parts)


@settings(max_examples=400, deadline=None)
@given(junk_with_headers())
def test_candidates_cover_every_plausible_offset(data: bytes) -> None:
    view = memoryview(data)
    plausible = {p for p in range(len(data)) if session._plausible(view, p)}
    candidates = {m.start() for m in session._CANDIDATE.finditer(view)}
    assert plausible <= candidates
