"""Correlation: sliding windows in packet time, thresholds, groups, bounded state."""

from __future__ import annotations

from typing import Any

import pytest

from otsentry.detect.compile import compile_rule
from otsentry.detect.correlation import MAX_ENTRIES, MAX_GROUPS, Correlator, parse_timespan
from otsentry.detect.engine import RuleEngine
from otsentry.detect.fixtures import BASE_TS, fixture_event
from otsentry.model import Event

S = 1_000_000_000


def rule(**correlation: Any) -> dict[str, Any]:
    return {
        "id": "OTS-TEST-CORR",
        "rev": 1,
        "title": "t",
        "status": "test",
        "level": "low",
        "logsource": {"protocol": "modbus"},
        "detection": {"s": {"exception_code": 2}, "condition": "s"},
        "correlation": {"type": "event_count", "timespan": "60s", "condition": {"gte": 3}}
        | correlation,
    }


def at(seconds: float, **values: Any) -> Event:
    values.setdefault("exception_code", 2)
    return fixture_event(values, "modbus", ts=BASE_TS + round(seconds * S))


def counts(engine: RuleEngine, events: list[Event]) -> list[int | None]:
    out: list[int | None] = []
    for event in events:
        hits = engine.match(event)
        out.append(hits[0].count if hits else None)
    return out


def test_parse_timespan() -> None:
    assert parse_timespan("60s") == 60 * S
    assert parse_timespan("5m") == 300 * S
    assert parse_timespan("2h") == 7200 * S
    for bad in ("", "10", "0s", "1d", "-1s", "1.5m"):
        with pytest.raises(ValueError):
            parse_timespan(bad)


def test_event_count_fires_at_threshold_then_restarts() -> None:
    engine = RuleEngine([compile_rule(rule())])
    events = [at(t) for t in (0, 1, 2, 3, 4, 5, 6)]
    assert counts(engine, events) == [None, None, 3, None, None, 3, None]
    assert engine.stats()["matches"] == {"OTS-TEST-CORR": 2}


def test_window_slides_in_packet_time() -> None:
    engine = RuleEngine([compile_rule(rule())])
    # 0 and 30 fall out of the window by 91; 61 and 90 and 91 make three within 60 s
    events = [at(t) for t in (0, 30, 61, 90, 91)]
    assert counts(engine, events) == [None, None, None, None, 3]
    engine = RuleEngine([compile_rule(rule())])
    # exactly 60 s apart is outside the window (start is exclusive)
    assert counts(engine, [at(0), at(30), at(60)]) == [None, None, None]


def test_gt_needs_one_more() -> None:
    engine = RuleEngine([compile_rule(rule(condition={"gt": 3}))])
    assert counts(engine, [at(t) for t in range(4)]) == [None, None, None, 4]


def test_groups_count_apart_and_are_reported() -> None:
    spec = rule(**{"group-by": ["source.ip", "destination.ip"]})
    engine = RuleEngine([compile_rule(spec)])
    a = {"source.ip": "10.0.0.1"}
    b = {"source.ip": "10.0.0.7"}
    events = [at(0, **a), at(1, **b), at(2, **a), at(3, **b), at(4, **a), at(5, **b)]
    hits = [h for e in events for h in engine.match(e)]
    assert [(h.count, h.group) for h in hits] == [
        (3, (("source.ip", "10.0.0.1"), ("destination.ip", "10.0.0.2"))),
        (3, (("source.ip", "10.0.0.7"), ("destination.ip", "10.0.0.2"))),
    ]
    assert hits[0].ts == BASE_TS + 4 * S


def test_only_matching_events_count() -> None:
    engine = RuleEngine([compile_rule(rule())])
    events = [at(0), at(1, exception_code=1), at(2), at(3, exception_code=None), at(4)]
    assert counts(engine, events) == [None, None, None, None, 3]


def test_value_count_counts_distinct_values() -> None:
    spec = rule(type="value_count", field="unit_id", condition={"gte": 3})
    engine = RuleEngine([compile_rule(spec)])
    units = [1, 1, 2, 2, 1, 3]
    assert counts(engine, [at(i, unit_id=u) for i, u in enumerate(units)]) == [
        None,
        None,
        None,
        None,
        None,
        3,
    ]
    # values seen before the window do not count
    engine = RuleEngine([compile_rule(spec)])
    events = [at(0, unit_id=1), at(10, unit_id=2), at(65, unit_id=3), at(66, unit_id=4)]
    assert counts(engine, events) == [None, None, None, 3]


def test_value_count_of_lists_counts_each_element() -> None:
    spec = rule(type="value_count", field="items.db", condition={"gte": 4})
    engine = RuleEngine([compile_rule(spec)])
    events = [at(1, **{"items.db": [1, 2]}), at(2, **{"items.db": [2, 3, 4]})]
    assert counts(engine, events) == [None, 4]


def test_groups_are_bounded_least_recent_first() -> None:
    compiled = compile_rule(rule(**{"group-by": ["source.port"]}))
    assert compiled.correlation is not None
    corr = Correlator(compiled.correlation, max_groups=3)
    for port in (1, 2, 3, 1, 4):  # 2 is least recently seen when 4 arrives
        corr.observe(at(port, **{"source.port": port}))
    assert corr.evicted == 1
    assert sorted(k[0] for k in corr.groups) == [1, 3, 4]
    # the evicted group starts from scratch: two more events of port 2 are not three
    assert corr.observe(at(10, **{"source.port": 2})) is None
    assert corr.observe(at(11, **{"source.port": 2})) is None
    assert corr.evicted == 2


def test_engine_reports_evictions() -> None:
    engine = RuleEngine([compile_rule(rule(**{"group-by": ["source.port"]}))])
    (corr,) = engine.correlators.values()
    corr.max_groups = 10
    for port in range(25):
        engine.match(at(port, **{"source.port": port}))
    stats = engine.stats()
    assert stats["correlation_groups"] == 10
    assert stats["correlation_groups_evicted"] == 15


def test_entries_per_group_are_bounded() -> None:
    compiled = compile_rule(rule(condition={"gte": 1024}, timespan="1h"))
    assert compiled.correlation is not None
    corr = Correlator(compiled.correlation, max_entries=8)
    assert all(corr.observe(at(t / 100)) is None for t in range(50))
    (group,) = corr.groups.values()
    assert len(group.times) == 8
    assert MAX_GROUPS == 65_536 and MAX_ENTRIES == 1_024
