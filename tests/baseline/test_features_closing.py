"""When the window extractor closes windows: exactly when packet time passes a window's end by
the grace, whether the time comes with an event or with ``advance``, and afresh after a reset."""

from __future__ import annotations

from otsentry.baseline.features import WindowExtractor
from otsentry.model import Conn, Direction, Envelope, Event

SEGMENT = "10.10.30.0/24"
NS = 1_000_000_000


def event(ts: int, server: str = "10.10.30.5", **fields: object) -> Event:
    conn = Conn("1:x", "tcp", "10.10.30.66", 40000, server, 502, segment=SEGMENT)
    env = Envelope(ts, conn, "modbus", Direction.TRANSACTION)
    return Event(env, "modbus-read-coils", dict(fields), outcome="success")


def test_a_window_closes_at_its_end_plus_the_grace_not_a_nanosecond_before() -> None:
    origin = 5 * NS
    x = WindowExtractor(2.0, grace_seconds=0.5)
    assert x.add(event(origin)) == []
    due = origin + 2 * NS + NS // 2
    assert x.add(event(due - 1)) == []  # window 0 of origin; window 1 opens
    assert x.advance(due - 1) == []
    (w,) = x.add(event(due, server="10.10.30.6"))
    assert (w.start, w.end, w.events, w.complete) == (origin, origin + 2 * NS, 1, True)
    assert x.advance(due) == []  # nothing closes twice
    # a jump over several windows closes every one it passed, in order
    closed = x.advance(origin + 10 * NS)
    assert [(v.start, v.link[2]) for v in closed] == [
        (origin + 2 * NS, "10.10.30.5"),
        (origin + 2 * NS, "10.10.30.6"),
    ]
    # an event older than packet time closes nothing and lands in its link's newest window
    assert x.add(event(origin + NS)) == []
    assert x.stats.late == 1


def test_advance_before_any_event_and_after_a_reset_closes_nothing() -> None:
    x = WindowExtractor(1.0, grace_seconds=0.0)
    assert x.advance(100 * NS) == []
    x.add(event(100 * NS))
    assert [w.start for w in x.advance(101 * NS)] == [100 * NS]
    x.add(event(101 * NS))
    x.reset()
    assert x.advance(500 * NS) == []
    x.add(event(7 * NS))  # a new run: a new origin, earlier than the last one
    assert x.add(event(7 * NS + NS - 1)) == []
    (w,) = x.add(event(8 * NS, server="10.10.30.6"))
    assert (w.start, w.events) == (7 * NS, 2)


def test_addresses_and_units_count_once_per_window() -> None:
    x = WindowExtractor(1.0, grace_seconds=0.0)
    for address in (1, 2, 1, 2, 3):
        x.add(event(0, unit_id=1, function_code=1, address=address, quantity=1))
    (w,) = x.flush()
    assert w.values["addresses_distinct"] == 3
    assert w.values["units_distinct"] == 1
    assert x.stats.capped == 0
