"""The engine: the (protocol, action) index, matches on real lab events, stats, fixtures."""

from __future__ import annotations

from collections import Counter
from typing import Any

from otsentry.detect.compile import CompiledRule, compile_rule
from otsentry.detect.engine import NO_MATCHES, RuleEngine, fixture_results
from otsentry.detect.fixtures import fixture_event
from otsentry.detect.loader import load_rules
from otsentry.model import Event
from tests.detect.conftest import RULES


def make(rid: str, protocol: str, detection: dict[str, Any]) -> CompiledRule:
    return compile_rule(
        {
            "id": rid,
            "rev": 1,
            "title": rid,
            "status": "test",
            "level": "low",
            "logsource": {"protocol": protocol},
            "detection": detection,
        }
    )


PINNED = make(
    "OTS-PINNED",
    "modbus",
    {"s": {"event.action": ["modbus-diagnostics", "modbus-read-coils"]}, "condition": "s"},
)
PINNED_AND = make(
    "OTS-PINNED-AND",
    "modbus",
    {
        "a": {"event.action": ["modbus-diagnostics", "modbus-read-coils"]},
        "b": {"event.action": "modbus-read-coils", "unit_id": 1},
        "condition": "a and b",
    },
)
UNPINNED = make("OTS-UNPINNED", "modbus", {"s": {"unit_id": 1}, "condition": "s"})
NOT_PINNED = make(
    "OTS-NOT", "modbus", {"s": {"event.action": "modbus-diagnostics"}, "condition": "not s"}
)
ANYWHERE = make("OTS-ANY", "any", {"s": {"anomalies|exists": True}, "condition": "s"})
ANY_PINNED = make(
    "OTS-ANY-PINNED", "any", {"s": {"event.action": "s7comm-plc-stop"}, "condition": "s"}
)
S7 = make("OTS-S7", "s7comm", {"s": {"function": 41}, "condition": "s"})
EXCEPTION = make(
    "OTS-EXCEPTION",
    "modbus",
    {"s": {"exception_code": [1, 2]}, "t": {"unit_id": 1}, "condition": "s and not t"},
)
BAD_FC = make(
    "OTS-BAD-FC", "any", {"s": {"anomalies": "modbus.invalid_function_code"}, "condition": "s"}
)
ALL = [PINNED, PINNED_AND, UNPINNED, NOT_PINNED, ANYWHERE, ANY_PINNED, S7, EXCEPTION, BAD_FC]


def test_actions_derived_from_conditions() -> None:
    assert PINNED.actions == {"modbus-diagnostics", "modbus-read-coils"}
    assert EXCEPTION.actions is None
    assert EXCEPTION.pins == {"exception_code": {1, 2}}
    assert NOT_PINNED.pins == {}
    assert PINNED_AND.actions == {"modbus-read-coils"}
    assert UNPINNED.actions is None
    assert NOT_PINNED.actions is None
    assert ANY_PINNED.actions == {"s7comm-plc-stop"}


def test_index_tests_only_the_rules_that_can_match() -> None:
    engine = RuleEngine(ALL)
    assert engine.candidate_rules("modbus", "modbus-read-coils") == [
        "OTS-PINNED",
        "OTS-PINNED-AND",
        "OTS-UNPINNED",
        "OTS-NOT",
        "OTS-ANY",
        "OTS-EXCEPTION",
        "OTS-BAD-FC",
    ]
    assert engine.candidate_rules("modbus", "modbus-diagnostics") == [
        "OTS-PINNED",
        "OTS-UNPINNED",
        "OTS-NOT",
        "OTS-ANY",
        "OTS-EXCEPTION",
        "OTS-BAD-FC",
    ]
    assert engine.candidate_rules("modbus", "modbus-write-single-coil") == [
        "OTS-UNPINNED",
        "OTS-NOT",
        "OTS-ANY",
        "OTS-EXCEPTION",
        "OTS-BAD-FC",
    ]
    assert engine.candidate_rules("s7comm", "s7comm-plc-stop") == [
        "OTS-ANY",
        "OTS-ANY-PINNED",
        "OTS-S7",
        "OTS-BAD-FC",
    ]
    assert engine.candidate_rules("opcua", "opcua-read") == ["OTS-ANY", "OTS-BAD-FC"]
    assert engine.candidate_rules("s7comm_plus", "s7comm-plc-stop") == [
        "OTS-ANY",
        "OTS-ANY-PINNED",
        "OTS-BAD-FC",
    ]


def test_pinned_fields_narrow_what_is_evaluated() -> None:
    engine = RuleEngine(ALL)
    plain = fixture_event({"event.action": "modbus-read-coils", "unit_id": 1}, "modbus")
    assert engine.tested_rules(plain) == [
        "OTS-PINNED",
        "OTS-PINNED-AND",
        "OTS-UNPINNED",
        "OTS-NOT",
        "OTS-ANY",
    ]
    failed = fixture_event(
        {
            "event.action": "modbus-read-coils",
            "exception_code": 2,
            "anomalies": ["modbus.flooded", "modbus.invalid_function_code"],
        },
        "modbus",
    )
    assert engine.tested_rules(failed)[-2:] == ["OTS-EXCEPTION", "OTS-BAD-FC"]
    assert sorted(m.rule.id for m in engine.match(failed)) == [
        "OTS-ANY",
        "OTS-BAD-FC",
        "OTS-EXCEPTION",
        "OTS-NOT",
        "OTS-PINNED",
    ]
    other = fixture_event({"event.action": "modbus-read-coils", "exception_code": 3}, "modbus")
    assert "OTS-EXCEPTION" not in engine.tested_rules(other)


def test_index_never_skips_a_rule_that_holds(lab_events: list[Event]) -> None:
    rules = [*load_rules([RULES]), *ALL]
    engine = RuleEngine(rules)
    held = 0
    for event in lab_events:
        tested = set(engine.tested_rules(event))
        for compiled in rules:
            if compiled.rule.protocol in ("any", event.envelope.protocol) and compiled.predicate(
                event
            ):
                held += 1
                assert compiled.rule.id in tested, (compiled.rule.id, event)
    assert held > 1000


def test_no_match_returns_the_shared_empty_tuple() -> None:
    engine = RuleEngine([PINNED])
    first = engine.match(fixture_event({"event.action": "opcua-read"}, "opcua"))
    second = engine.match(fixture_event({"event.action": "modbus-write-single-coil"}, "modbus"))
    assert first is NO_MATCHES and second is NO_MATCHES
    assert engine.stats()["evaluations"] == 0


def brute_force(rules: list[CompiledRule], event: Event) -> list[str]:
    """What an index-less engine would match (plain rules only)."""
    return [
        r.rule.id
        for r in rules
        if r.rule.protocol in ("any", event.envelope.protocol) and r.predicate(event)
    ]


def test_index_agrees_with_brute_force_on_every_lab_event(lab_events: list[Event]) -> None:
    engine = RuleEngine(ALL)
    protocols = Counter(e.envelope.protocol for e in lab_events)
    assert {"modbus", "s7comm", "opcua"} <= set(protocols)
    matched = 0
    for event in lab_events:
        got = sorted(m.rule.id for m in engine.match(event))
        assert got == sorted(brute_force(ALL, event)), event
        matched += bool(got)
    assert matched > 100
    stats = engine.stats()
    assert stats["events"] == len(lab_events)
    assert stats["evaluations"] < len(lab_events) * len(ALL) / 2


def test_test_rules_on_modbus_attacks(modbus_attack_events: list[Event]) -> None:
    engine = RuleEngine(load_rules([RULES], builtin=False))
    hits = [m for e in modbus_attack_events for m in engine.match(e)]
    per_rule = Counter(m.rule.id for m in hits)
    anomalous = sum(1 for e in modbus_attack_events if e.anomalies)
    writes_from_66 = sum(
        1
        for e in modbus_attack_events
        if e.fields.get("function_code") in (5, 6, 15, 16)
        and e.envelope.conn.client_ip == "10.10.30.66"
    )
    address_errors = sum(
        1
        for e in modbus_attack_events
        if e.fields.get("exception_code") == 2 and e.envelope.conn.client_ip == "10.10.30.66"
    )
    assert per_rule == {
        "OTS-TEST-MODBUS-LISTEN-ONLY": 1,
        "OTS-TEST-ANY-ANOMALY": anomalous,
        "OTS-TEST-MODBUS-WRITE-OUTSIDE": writes_from_66,
        "OTS-TEST-MODBUS-ADDRESS-SCAN": address_errors // 5,
    }
    assert writes_from_66 == 9 and address_errors == 31
    (listen,) = [m for m in hits if m.rule.id == "OTS-TEST-MODBUS-LISTEN-ONLY"]
    assert listen.message == "listen-only from 10.10.30.66 to 10.10.30.5 unit 1"
    assert listen.reason == "sub-function 4 (force_listen_only_mode)"
    assert listen.ts == listen.event.envelope.ts
    scans = [m for m in hits if m.rule.id == "OTS-TEST-MODBUS-ADDRESS-SCAN"]
    assert {m.count for m in scans} == {5}
    assert scans[0].group == (("source.ip", "10.10.30.66"), ("destination.ip", "10.10.30.5"))
    assert engine.stats()["matches"] == dict(sorted(per_rule.items()))


def test_fixture_results() -> None:
    for compiled in load_rules([RULES], builtin=False):
        results = fixture_results(compiled)
        assert results and all(r.passed for r in results), [str(r) for r in results]
    broken = compile_rule(
        {
            **PINNED.rule.raw,
            "fixtures": {
                "match": [{"event.action": "modbus-write-single-coil"}],
                "nomatch": [{"event.action": "modbus-read-coils"}],
            },
        }
    )
    results = fixture_results(broken)
    assert [(r.kind, r.passed) for r in results] == [("match", False), ("nomatch", False)]
    assert str(results[0]) == "OTS-PINNED fixtures.match[0]: FAILED (0 matches)"


def test_load_builds_from_paths() -> None:
    engine = RuleEngine.load([RULES], builtin=False, disabled=["OTS-TEST-ANY-ANOMALY"])
    assert sorted(r.id for r in engine.rules) == [
        "OTS-TEST-MODBUS-ADDRESS-SCAN",
        "OTS-TEST-MODBUS-LISTEN-ONLY",
        "OTS-TEST-MODBUS-WRITE-OUTSIDE",
    ]
    assert engine.stats()["rules"] == 3
