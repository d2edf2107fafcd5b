"""The compiled event lines (``ecs.event_lines()``, ``otsentry/_eventline.c``) against
``ecs.event_line``: byte for byte the same lines and ids, whatever the event."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry import accel, ecs
from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.model import Conn, Direction, Envelope, Event
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS

FAST = accel.SPEEDUPS
needs_fast = pytest.mark.skipif(FAST is None, reason="otsentry._speedups is not built")
_CREATED = re.compile(rb'"created":"[^"]*"')


def _line(make: Any, event: Event, observer: dict[str, Any], ids: ecs.DocumentIds) -> Any:
    """The line, or the error raised instead (the same error either way)."""
    try:
        return _CREATED.sub(b'"created":""', make(event, observer, ids))
    except Exception as exc:  # compared, not handled
        return (type(exc), str(exc))


def _both(events: list[Event], observer: dict[str, Any]) -> tuple[list[Any], list[Any], Any]:
    """The lines (without the wall clock's member, which differs between two calls) of the
    compiled maker and of the Python function, each with its own ids."""
    compiled = ecs.event_lines()
    ids_c, ids_p = ecs.DocumentIds("s1"), ecs.DocumentIds("s1")
    lines_c, lines_p = [], []
    for event in events:
        # the Python function first: a first event of a flow fills the caches the compiled
        # maker reads (as in a replay, where both share them)
        lines_p.append(_line(ecs.event_line, event, observer, ids_p))
        lines_c.append(_line(compiled, event, observer, ids_c))
    assert ids_c._n == ids_p._n
    return lines_c, lines_p, compiled


@needs_fast
@pytest.mark.parametrize(
    "name", ["network_attacks_modbus.pcap", "s7comm_attacks.pcap", "opcua_attacks.pcap"]
)
def test_lab_events_make_the_same_lines(tmp_path: Path, name: str) -> None:
    events: list[Event] = []
    pipeline = Pipeline(Config(), tmp_path)
    pipeline.table.on_event = events.append
    reader = open_capture(LAB_PCAPS / name)
    try:
        pipeline.run(iter(reader))
    finally:
        reader.close()
    assert len(events) > 100
    compiled_lines, python_lines, compiled = _both(events, pipeline.observer)
    assert compiled_lines == python_lines
    assert compiled.fast > len(events) // 2


class Colour(Enum):
    RED = 1


def _conn(n: int) -> Conn:
    return Conn(
        f"1:flow{n}=",
        "tcp",
        f"10.0.0.{n}",
        40000 + n,
        "10.0.0.1",
        502,
        "00-1D-9C-AA-BB-01" if n % 2 else None,
        None,
        None,
        None,
        "cell",
        "handshake",
    )


CONNS = [_conn(n) for n in range(3)]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
field_values = json_values | st.binary(max_size=4) | st.just(Colour.RED)
fields = st.dictionaries(
    st.sampled_from(["unit_id", "address", "values", "direction", "anomalies", "é", "x"]),
    field_values,
    max_size=4,
)
events = st.builds(
    lambda conn, ts, protocol, direction, action, record, anomalies, outcome, duration: Event(
        Envelope(ts, conn, protocol, direction),
        action,
        record,
        anomalies,
        outcome,
        duration,
    ),
    st.sampled_from(CONNS),
    st.sampled_from([0, 1, 999_999_999, 1_700_000_000_123_456_789, -5, 2**70]),
    st.sampled_from(["modbus", "s7comm"]),
    st.sampled_from(list(Direction)),
    st.sampled_from(["modbus-read", "s7-write", "ü-action"]),
    fields,
    st.sampled_from([(), ("modbus.invalid_length",)]),
    st.sampled_from([None, "", "success", "failure", "odd"]),
    st.sampled_from([None, 0, 12_345, -7, 2**63, 2**64, True]),
)


@needs_fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=30))
def test_any_event_makes_the_same_line(batch: list[Event]) -> None:
    observer = ecs.observer_doc("s1")
    # each event twice: the second finds the caches the first filled
    compiled_lines, python_lines, _ = _both([e for e in batch for _ in (0, 1)], observer)
    assert compiled_lines == python_lines


@needs_fast
def test_a_record_orjson_refuses_raises_the_same_error() -> None:
    observer = ecs.observer_doc("s1")
    event = Event(Envelope(1, CONNS[0], "modbus"), "modbus-read", {"x": 1})
    _both([event], observer)  # the flow's pieces cached
    bad = Event(Envelope(1, CONNS[0], "modbus"), "modbus-read", {"x": 2**70})
    with pytest.raises(TypeError) as python_error:
        ecs.event_line(bad, observer, ecs.DocumentIds("s1"))
    ids = ecs.DocumentIds("s1")
    with pytest.raises(TypeError) as compiled_error:
        ecs.event_lines()(bad, observer, ids)
    assert str(compiled_error.value) == str(python_error.value)
    assert ecs.event_line(event, observer, ecs.DocumentIds("s1"))  # no id taken by the failure
    assert ids._n == 0
