"""Alert aggregation on real events of the lab captures (pcaps/), with rule matches built here."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest

from otsentry.config import parse_config
from otsentry.detect.alerts import Aggregator, alert_for
from otsentry.detect.model import Rule, RuleMatch
from otsentry.model import Alert, AlertKind, Event, Technique
from tests.conftest import LAB_PCAPS, replay_events

T0814 = Technique("T0814", "Denial of Service", ("TA0107",), ("Inhibit Response Function",))
T0816 = Technique("T0816", "Device Restart/Shutdown", ("TA0107",), ("Inhibit Response Function",))
SECOND = 1_000_000_000
ATTACKER, HMI, PLC1 = "10.10.30.66", "10.10.30.10", "10.10.30.5"


def rule(rule_id: str = "OTS-TEST-DIAG", level: str = "high") -> Rule:
    return Rule(
        id=rule_id,
        rev=3,
        title="Modbus diagnostics",
        status="test",
        level=level,
        protocol="modbus",
        references=("https://attack.mitre.org/techniques/T0814/", "https://example.org/second"),
        tags=("attack.t0814", "attack.t0816"),
        techniques=(T0814, T0816),
        attack_version="18.0",
    )


@cache
def lab_events(name: str) -> tuple[Event, ...]:
    """Every event of a lab capture, as the pipeline emits them (no rules loaded)."""
    config = parse_config("detection: {builtin_rules: false}\noutputs: {events: false}\n")
    return tuple(replay_events(LAB_PCAPS / name, config=config)[0])


def matches(
    name: str, keep: Callable[[Event], bool], the_rule: Rule | None = None
) -> list[RuleMatch]:
    r = the_rule or rule()
    return [
        RuleMatch(r, e, e.envelope.ts, f"{e.action} from {e.envelope.conn.client_ip}", "why")
        for e in lab_events(name)
        if keep(e)
    ]


def diagnostics() -> list[RuleMatch]:
    return matches("modbus_attacks.pcap", lambda e: e.action == "modbus-diagnostics")


def aggregate(window: float, found: list[RuleMatch]) -> tuple[list[Alert], Aggregator]:
    emitted: list[Alert] = []
    agg = Aggregator(window, emitted.append)
    agg.add(found)
    agg.flush()
    return emitted, agg


def test_the_capture_holds_four_diagnostics_from_the_attacker() -> None:
    found = diagnostics()
    assert [m.event.fields["sub_function"] for m in found] == [0, 0, 4, 1]
    assert {(m.event.envelope.conn.client_ip, m.event.envelope.conn.server_ip) for m in found} == {
        (ATTACKER, PLC1)
    }


def test_one_alert_per_rule_and_host_pair_within_the_window() -> None:
    found = diagnostics()
    alerts, agg = aggregate(60, found)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.count == 4
    assert alert.ts == found[0].ts and alert.events == (found[0].event,)
    assert alert.last_ts == found[-1].ts
    assert alert.message == found[0].message
    assert (agg.stats.opened, agg.stats.folded, agg.stats.emitted) == (1, 3, 1)


@pytest.mark.parametrize(
    ("window", "counts"),
    [
        (60.0, [4]),
        (7.0, [3, 1]),  # 11.855 s + 7 s takes in both at 18.414 s, not 19.016 s
        (1.0, [1, 3]),  # the scan's sub-function 0, then 4 and 1 within 0.6 s of 0
        (0.6, [1, 2, 1]),  # 19.016 is 0.6014 s after 18.414: a window of its own
        (0.0, [1, 1, 1, 1]),  # no aggregation
    ],
)
def test_window_length_decides_what_folds(window: float, counts: list[int]) -> None:
    found = diagnostics()
    alerts, _ = aggregate(window, found)
    assert [a.count for a in alerts] == counts
    assert sum(a.count for a in alerts) == len(found)
    assert [a.ts for a in alerts] == sorted(a.ts for a in alerts)


def test_a_match_exactly_one_window_after_the_first_opens_a_new_alert() -> None:
    first, second = diagnostics()[:2]
    gap = (second.ts - first.ts) / SECOND
    alerts, _ = aggregate(gap, [first, second])
    assert [a.count for a in alerts] == [1, 1]
    alerts, _ = aggregate(gap + 1e-6, [first, second])
    assert [a.count for a in alerts] == [2]


def test_host_pairs_and_rules_are_separate_windows() -> None:
    writes = matches(
        "modbus_attacks.pcap", lambda e: "write" in e.action and "file" not in e.action
    )
    alerts, _ = aggregate(60, writes)
    by_pair = {
        (a.events[0].envelope.conn.client_ip, a.events[0].envelope.conn.server_ip): a.count
        for a in alerts
    }
    hmi = sum(1 for m in writes if m.event.envelope.conn.client_ip == HMI)
    attacker = sum(1 for m in writes if m.event.envelope.conn.client_ip == ATTACKER)
    assert by_pair == {(ATTACKER, PLC1): attacker, (HMI, PLC1): hmi}
    other = rule("OTS-TEST-OTHER")
    both = sorted(
        [
            *diagnostics(),
            *matches("modbus_attacks.pcap", lambda e: e.action == "modbus-diagnostics", other),
        ],
        key=lambda m: m.ts,
    )
    alerts, _ = aggregate(60, both)
    assert sorted((a.rule_id, a.count) for a in alerts) == [
        ("OTS-TEST-DIAG", 4),
        ("OTS-TEST-OTHER", 4),
    ]


def test_windows_close_on_the_tick_and_on_later_matches() -> None:
    found = diagnostics()
    emitted: list[Alert] = []
    agg = Aggregator(0.6, emitted.append)
    agg.add(found[:1])
    agg.tick(found[0].ts + 600_000_000 - 1)
    assert emitted == [] and len(agg) == 1
    agg.tick(found[0].ts + 600_000_000)
    assert [a.count for a in emitted] == [1] and len(agg) == 0
    agg.add(found[1:3])
    assert len(emitted) == 1  # 4 and 0 at 18.4 s share a window, still open
    agg.add(found[3:])  # 19.016 s: the 18.414 window has closed when it arrives
    assert [a.count for a in emitted] == [1, 2]
    agg.flush()
    assert [a.count for a in emitted] == [1, 2, 1]


def test_open_windows_are_capped_and_the_oldest_goes_first() -> None:
    found = diagnostics()[:1]
    rules = [rule(f"OTS-TEST-R{i}") for i in range(5)]
    emitted: list[Alert] = []
    agg = Aggregator(60, emitted.append, max_open=2)
    for r in rules:
        agg.add([RuleMatch(r, found[0].event, found[0].ts, "m", "r")])
    assert len(agg) == 2
    assert [a.rule_id for a in emitted] == ["OTS-TEST-R0", "OTS-TEST-R1", "OTS-TEST-R2"]
    assert agg.stats.evicted == 3
    agg.flush()
    assert [a.rule_id for a in emitted][3:] == ["OTS-TEST-R3", "OTS-TEST-R4"]


def test_evidence_is_asked_once_per_window() -> None:
    found = diagnostics()
    asked: list[RuleMatch] = []

    def on_open(m: RuleMatch) -> str:
        asked.append(m)
        return f"evidence/{len(asked)}.pcap"

    emitted: list[Alert] = []
    agg = Aggregator(1.0, emitted.append, on_open=on_open)
    agg.add(found)
    agg.flush()
    assert asked == [found[0], found[1]]
    assert [a.evidence_pcap for a in emitted] == ["evidence/1.pcap", "evidence/2.pcap"]


def test_alert_fields_come_from_the_rule_and_the_trigger() -> None:
    m = diagnostics()[2]
    alert = alert_for(m)
    assert alert.kind is AlertKind.RULE
    assert (alert.rule_id, alert.rule_name, alert.rule_version) == (
        "OTS-TEST-DIAG",
        "Modbus diagnostics",
        "3",
    )
    assert (alert.severity, alert.risk_score) == (73, 73.0)
    assert alert.rule_reference == "https://attack.mitre.org/techniques/T0814/"
    assert alert.rule_category == "Inhibit Response Function"
    assert alert.techniques == (T0814, T0816) and alert.attack_version == "18.0"
    assert alert.tags == ("attack.t0814", "attack.t0816")
    assert (alert.message, alert.reason, alert.count) == (m.message, "why", 1)
    assert alert.events[0].fields["sub_function"] == 4


def test_correlation_matches_add_their_counts_and_keep_the_group() -> None:
    found = diagnostics()
    group = (("source.ip", ATTACKER), ("destination.ip", PLC1))
    corr = [
        RuleMatch(m.rule, m.event, m.ts, m.message, m.reason, count=5, group=group)
        for m in found[1:]
    ]
    alerts, agg = aggregate(60, corr)
    assert [(a.count, a.group) for a in alerts] == [(15, group)]
    assert agg.stats.folded == 2
