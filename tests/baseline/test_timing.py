"""Polling periods: learning intervals, period changes and silences on the lab captures."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from otsentry.baseline.aspect import AnomalyKind, AspectDataError, Deviation
from otsentry.baseline.timing import NS, Cycle, CycleStats, TimingAspect, cycle_key
from otsentry.model import Event
from tests.baseline.test_values import HMI, routed

KEY = ("modbus", HMI, "10.10.30.5", 502, (("function", "read_coils"),))
HR_POLL = (
    ("address", 0),
    ("function", "read_holding_registers"),
    ("quantity", 10),
    ("unit", 1),
)


def stats_of(intervals_ms: list[float]) -> CycleStats:
    s = CycleStats()
    ts = 0
    s.add(ts)
    for d in intervals_ms:
        ts += int(d * 1e6)
        s.add(ts)
    return s


def test_period_jitter_and_breaks() -> None:
    intervals = [200.0 + (i % 5) - 2 for i in range(60)] + [3_600_000.0] + [200.0] * 20
    cycle = Cycle.learned(KEY, stats_of(intervals))
    assert cycle is not None
    assert cycle.period == pytest.approx(0.2, abs=0.002)
    assert cycle.jitter <= 0.002
    assert cycle.breaks == 1  # an hour between two sessions is no interval
    assert cycle.tolerance == pytest.approx(0.05, abs=0.001)
    assert cycle.silent_after == 5.0


def test_irregular_or_thin_cycles_are_not_periodic() -> None:
    assert Cycle.learned(KEY, stats_of([200.0] * 7)) is None  # 7 intervals < 8
    assert Cycle.learned(KEY, stats_of([100.0, 900.0, 300.0, 2000.0] * 5)) is None


def test_the_reservoir_is_bounded_and_deterministic() -> None:
    s = stats_of([200.0] * 5000)
    assert len(s.intervals) < 512 and s.seen == 5000
    assert s.intervals == stats_of([200.0] * 5000).intervals


def watch(cycle: Cycle, intervals_ms: list[float]) -> list[Deviation]:
    aspect = TimingAspect()
    aspect.cycles[cycle.key] = cycle
    aspect._index()
    out: list[Deviation] = []
    ts = 1_000 * NS
    for e in _events(cycle, ts, intervals_ms):
        out += aspect.check(e)
    return out


def _events(cycle: Cycle, ts: int, intervals_ms: list[float]) -> list[Event]:
    from otsentry.model import Conn, Envelope

    _, client, server, port, sig = cycle.key
    conn = Conn("1:x", "tcp", client, 40000, server, port)
    fields = {k: v for k, v in sig}
    fields["unit_id"] = fields.pop("unit", None)
    out = []
    for d in [0.0, *intervals_ms]:
        ts += int(d * 1e6)
        out.append(Event(Envelope(ts, conn, "modbus"), "modbus-read", fields))
    return out


@given(st.lists(st.floats(190.0, 210.0), min_size=5, max_size=60))
def test_jitter_within_the_learned_band_is_never_flagged(intervals: list[float]) -> None:
    cycle = Cycle.learned(("modbus", HMI, "10.10.30.5", 502, HR_POLL), stats_of([200.0] * 50))
    assert cycle is not None
    cycle.jitter = 0.01
    cycle.derive(10.0, 5.0)
    assert watch(cycle, intervals) == []


def test_a_slower_cycle_is_reported_once() -> None:
    cycle = Cycle.learned(("modbus", HMI, "10.10.30.5", 502, HR_POLL), stats_of([200.0] * 50))
    assert cycle is not None
    devs = watch(cycle, [200.0] * 10 + [500.0] * 20)
    assert [d.kind for d in devs] == [AnomalyKind.PERIOD_CHANGE]
    assert devs[0].observed["period"] == pytest.approx(0.5)


# -- the lab ----------------------------------------------------------------------------------
NORMAL = ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")


@pytest.fixture(scope="module")
def learned_data() -> dict[str, Any]:
    aspect = TimingAspect()
    for e in routed(aspect.protocols, *NORMAL):
        aspect.learn(e)
    aspect.end_learning(0)
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(aspect.to_data()))
    return data


def run(data: dict[str, Any], events: list[Event], end: int | None = None) -> list[Deviation]:
    aspect = TimingAspect.from_data(data)
    out: list[Deviation] = []
    for e in events:
        out += aspect.check(e)
    out += aspect.finish(end if end is not None else events[-1].envelope.ts)
    return out


def test_the_lab_cycles(learned_data: dict[str, Any]) -> None:
    cycles = {c["label"]: c for c in learned_data["cycles"]}
    hr = cycles[
        "modbus address=0 function=read_holding_registers quantity=10 unit=1 "
        "from 10.10.30.10 to 10.10.30.5:502"
    ]
    assert hr["period"] == pytest.approx(0.2, abs=0.001) and hr["samples"] == 99
    publish = [c for c in cycles.values() if c["request"].get("action") == "opcua-publish"]
    assert len(publish) == 1 and publish[0]["request"]["interval_ms"] == 500.0
    assert publish[0]["period"] == pytest.approx(0.5, abs=0.005)
    assert len(cycles) == 15


@pytest.mark.parametrize("capture", [*NORMAL, "s7comm_normal_run2.pcap"])
def test_normal_runs_raise_nothing(learned_data: dict[str, Any], capture: str) -> None:
    events = routed(TimingAspect.protocols, capture)
    # a minute after the end: the sessions were closed, so nothing is silent
    assert run(learned_data, events, events[-1].envelope.ts + 60 * NS) == []


def test_hmi_polling_slower_is_a_period_change(learned_data: dict[str, Any]) -> None:
    devs = run(learned_data, routed(TimingAspect.protocols, "modbus_abuse.pcap"))
    assert len(devs) == 6 and {d.kind for d in devs} == {AnomalyKind.PERIOD_CHANGE}
    assert {d.hosts for d in devs} == {(HMI, "10.10.30.5"), (HMI, "10.10.30.8")}


def test_a_poll_that_stops_is_a_silent_channel(learned_data: dict[str, Any]) -> None:
    events = routed(TimingAspect.protocols, "modbus_normal.pcap")
    start = events[0].envelope.ts
    stop = start + 10 * NS
    # the holding-register poll stops after 10 s while the connection stays up
    kept = [
        e
        for e in events
        if e.envelope.ts < stop
        or ((cycle_key(e) or ("",) * 5)[4] != HR_POLL and e.action != "network-flow-end")
    ]
    devs = run(learned_data, kept)
    assert [d.kind for d in devs] == [AnomalyKind.CHANNEL_SILENT]
    silent = devs[0]
    assert silent.item["request"] == dict(HR_POLL)
    assert silent.effective_techniques == ("T0814", "T0804")
    assert silent.event is None and silent.hosts == (HMI, "10.10.30.5")
    assert "nothing for 5." in silent.reason


def test_a_baseline_read_back_writes_the_same_bytes(learned_data: dict[str, Any]) -> None:
    text = yaml.safe_dump(learned_data)
    again = TimingAspect.from_data(yaml.safe_load(text)).to_data()
    assert yaml.safe_dump(again) == text
    seen = [(c["first_seen"], c["last_seen"]) for c in again["cycles"]]
    assert all(first.startswith("2026-") and first < last for first, last in seen)


def test_an_accepted_period_reads_back_the_same(learned_data: dict[str, Any]) -> None:
    aspect = TimingAspect.from_data(learned_data)
    devs = [d for e in routed(TimingAspect.protocols, "modbus_abuse.pcap") for d in aspect.check(e)]
    assert devs and all(aspect.accept(d.item) for d in devs)
    text = yaml.safe_dump(aspect.to_data())
    assert text != yaml.safe_dump(learned_data)
    again = TimingAspect.from_data(yaml.safe_load(text)).to_data()
    assert yaml.safe_dump(again) == text


def test_a_cycle_without_times_names_the_key(learned_data: dict[str, Any]) -> None:
    data = yaml.safe_load(yaml.safe_dump(learned_data))
    data["cycles"][2]["last_seen"] = "yesterday"
    with pytest.raises(AspectDataError) as err:
        TimingAspect.from_data(data)
    assert err.value.key == "cycles[2].last_seen"
