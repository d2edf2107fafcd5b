"""Each dissector on mutated real conversations: no exception escapes, every parse progresses.

Windows of the lab captures' connections are mutated (bytes flipped or set to boundary values,
segments cut, shortened, stretched, repeated, lost) and replayed through the real reassembler,
which counts any exception a dissector raises and any parse that makes no progress.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .replay import LAB, failures, lab_conversations, replay

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUNDARY = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def mutate(draw: st.DrawFn, payload: bytes) -> tuple[int, bytes]:
    """One mutated segment: a control byte (gap before it or not) and its bytes."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(("flip", "boundary", "cut", "insert", "delete")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "boundary" and data:
            data[at] = draw(st.sampled_from(BOUNDARY))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
    return (2 if draw(st.integers(0, 9)) == 0 else 0), bytes(data)


@st.composite
def mutated_conversation(draw: st.DrawFn, protocol: str) -> list[tuple[int, bytes]]:
    """A window of a lab connection, some of its segments mutated, repeated or dropped."""
    conv = draw(st.sampled_from(lab_conversations(protocol)))
    start = draw(st.integers(0, len(conv) - 1))
    window = conv[start : start + draw(st.integers(1, 12))]
    out: list[tuple[int, bytes]] = []
    for from_client, payload in window:
        ctl, data = mutate(draw, payload) if draw(st.booleans()) else (0, payload)
        copies = draw(st.sampled_from((1, 1, 1, 0, 2)))
        out += [(ctl | int(from_client), data)] * copies
    return out


@pytest.mark.parametrize("protocol", sorted(LAB))
@SETTINGS
@given(data=st.data())
def test_mutated_lab_conversations_never_raise(protocol: str, data: st.DataObject) -> None:
    segments = data.draw(mutated_conversation(protocol))
    h = replay(protocol, segments)
    assert failures(h) == {"dissector_errors": 0, "no_progress": 0}


@pytest.mark.parametrize("protocol", sorted(LAB))
def test_unmutated_lab_conversations_give_events(protocol: str) -> None:
    """The baseline the mutations start from: the real connections dissect cleanly."""
    for conv in lab_conversations(protocol):
        h = replay(protocol, [(int(fc), payload) for fc, payload in conv])
        assert failures(h) == {"dissector_errors": 0, "no_progress": 0}
        assert h.events or len(conv) < 3
