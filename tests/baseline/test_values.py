"""Value models: the Erez & Wool classes on their own, then learned from the lab's normal
captures and checked against the normal and attack captures."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from otsentry.baseline.aspect import AnomalyKind, AspectContext, Deviation
from otsentry.baseline.values import Key, ValueModel, ValuesAspect, ValueStats, classify
from otsentry.model import Event
from tests.conftest import LAB_PCAPS, replay_events

ATTACKER = "10.10.30.66"
ENG = "10.10.30.20"
HMI = "10.10.30.10"
NORMAL = ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")
KEY: Key = ("modbus", "10.10.30.5", 1, "holding_register", 40)


@cache
def lab_events(name: str) -> tuple[Event, ...]:
    """Every event (protocol and network) the pipeline hands its hooks for a lab capture."""
    path = LAB_PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    return tuple(replay_events(path)[0])


def routed(aspect_protocols: frozenset[str] | None, *names: str) -> list[Event]:
    """The events of the captures an aspect wants, as the learner routes them."""
    return [
        e
        for name in names
        for e in lab_events(name)
        if aspect_protocols is None or e.envelope.protocol in aspect_protocols
    ]


def model_of(values: Sequence[int | float | bool | str], **kw: int) -> ValueModel:
    stats = ValueStats()
    for i, v in enumerate(values):
        stats.add(v, False, i, 65_536)
    return classify(KEY, stats, **kw)


# -- the classes on their own -----------------------------------------------------------------
@given(
    start=st.integers(0, 65_535),
    steps=st.lists(st.integers(1, 1_000), min_size=40, max_size=200),
)
def test_a_counter_that_wraps_is_never_flagged(start: int, steps: list[int]) -> None:
    values = [start]
    for s in steps:
        values.append((values[-1] + s) % 65_536)
    half = len(values) // 2
    model = model_of(values[:half])
    if model.model != "counter":  # a learning half with a wrap in it is a counter too
        assert model.model == "range"
        return
    prev: float | None = None
    for v in values[half:]:
        assert not model.violation(v, prev)
        prev = v


def test_a_counter_reset_is_flagged() -> None:
    model = model_of(list(range(1000, 1100)))
    assert model.model == "counter"
    assert not model.violation(1101, 1100)
    assert model.violation(0, 1100)  # reset or overwrite far below
    assert not model.violation(1098, 1100)  # two readings racing


@given(st.integers(-100_000, 100_000).filter(lambda v: v != 520))
def test_a_constant_is_flagged_on_any_other_value(other: int) -> None:
    model = model_of([520] * 30)
    assert model.model == "constant"
    assert not model.violation(520, None)
    assert model.violation(other, None)


def test_too_few_samples_are_never_checked() -> None:
    model = model_of([520] * 19)
    assert model.model == "sparse" and not model.checked
    assert not model.violation(99_999, None)


def test_enumerated_range_and_margin() -> None:
    statuses = [5, 19, 21, 5, 19, 21] * 10
    model = model_of(statuses)
    assert model.model == "enumerated" and model.values == [5, 19, 21]
    assert model.violation(7, None) and not model.violation(19, None)
    # a dense run of values is a range with a margin, not a set
    levels = [550 + (i % 30) for i in range(60)]
    model = model_of(levels)
    assert model.model == "range"
    assert (model.lo, model.hi) == (550, 579)
    assert model.low <= 535 and model.high >= 594
    assert not model.violation(540, None) and model.violation(5000, None)


def test_a_set_still_growing_is_not_enumerated() -> None:
    values = [i * 100 for i in range(5) for _ in range(5)] + [900]  # a new value at the end
    assert model_of(values).model != "enumerated"


# -- learned from the lab ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def learned() -> ValuesAspect:
    aspect = ValuesAspect()
    for e in routed(aspect.protocols, *NORMAL):
        aspect.learn(e)
    aspect.end_learning(0)
    return aspect


def detector(learned: ValuesAspect) -> ValuesAspect:
    """A fresh detector from the learned aspect's file form."""
    return ValuesAspect.from_data(yaml.safe_load(yaml.safe_dump(learned.to_data())))


def check_all(aspect: ValuesAspect, name: str) -> list[Deviation]:
    out: list[Deviation] = []
    for e in routed(aspect.protocols, name):
        out += aspect.check(e)
    return out


def test_learned_models_are_readable_and_deterministic(learned: ValuesAspect) -> None:
    data = learned.to_data()
    rows = {r["label"]: r for r in data["variables"]}
    assert rows["HR 2 on 10.10.30.5 unit 1"]["model"] == "constant"
    assert rows["HR 2 on 10.10.30.5 unit 1"]["values"] == [520]
    assert rows["IR 7 on 10.10.30.5 unit 1"]["model"] == "counter"  # the scan counter
    assert rows["DB1.DBW26 on 10.10.30.6"]["model"] == "counter"
    assert rows["DB1.DBD0 (REAL) on 10.10.30.6"]["model"] == "range"
    assert "DB1.DBW0 on 10.10.30.6" not in rows  # a REAL chunk is not also two words
    assert rows["node ns=2;i=2 on 10.10.30.7"]["model"] == "range"  # from Publish
    assert rows["HR 10 on 10.10.30.5 unit 1"]["model"] == "sparse"  # written once
    assert data["dropped"] == 0
    again = ValuesAspect()
    for e in routed(again.protocols, *NORMAL):
        again.learn(e)
    assert yaml.safe_dump(again.to_data()) == yaml.safe_dump(data)
    assert detector(learned).to_data() == yaml.safe_load(yaml.safe_dump(data))


@pytest.mark.parametrize("capture", NORMAL)
def test_normal_captures_raise_nothing(learned: ValuesAspect, capture: str) -> None:
    assert check_all(detector(learned), capture) == []


def test_second_benign_run_raises_nothing(learned: ValuesAspect) -> None:
    if not (LAB_PCAPS / "s7comm_normal_run2.pcap").exists():
        pytest.skip("no second benign S7 run")
    assert check_all(detector(learned), "s7comm_normal_run2.pcap") == []


def test_modbus_writes_of_unusual_values(learned: ValuesAspect) -> None:
    devs = check_all(detector(learned), "modbus_attacks.pcap")
    assert devs and all(d.kind is AnomalyKind.VALUE_OUT_OF_RANGE for d in devs)
    writes = {
        (d.item["table"], d.item["address"]): d for d in devs if d.observed["access"] == "write"
    }
    assert set(writes) == {
        ("holding_register", 2),
        ("holding_register", 3),
        ("holding_register", 4),
        ("coil", 0),
        ("coil", 2),
        ("coil", 3),
    }
    hr2 = writes[("holding_register", 2)]
    assert hr2.reason == (
        "HR 2 on 10.10.30.5 unit 1 was always 520 (constant, 100 samples); 10.10.30.66 wrote 1500"
    )
    assert hr2.effective_level == "high" and hr2.hosts == (ATTACKER, "10.10.30.5")
    assert hr2.effective_techniques == ("T0836", "T0831")
    # the HMI reads the changed values afterwards: reported as reads, one level lower
    reads = [d for d in devs if d.observed["access"] == "read"]
    assert reads and all(d.observed["client"] == HMI and d.level == "medium" for d in reads)


def test_s7_writes_to_the_process_image(learned: ValuesAspect) -> None:
    devs = check_all(detector(learned), "s7comm_engineering.pcap")
    writes = sorted(d.reason for d in devs if d.observed["access"] == "write")
    assert writes == [
        "IB1 on 10.10.30.6 was always 0 (constant, 30 samples); 10.10.30.20 wrote 128",
        "QB1 on 10.10.30.6 was always 0 (constant, 30 samples); 10.10.30.20 wrote 1",
    ]


def test_opcua_write_outside_the_range(learned: ValuesAspect) -> None:
    devs = check_all(detector(learned), "opcua_attacks.pcap")
    temperature = [d for d in devs if d.item["node"] == "ns=2;i=2"]
    assert len(temperature) == 1
    assert temperature[0].observed == {"value": 0.0, "access": "write", "client": ATTACKER}


def test_accept_folds_a_value_back(learned: ValuesAspect) -> None:
    aspect = detector(learned)
    devs = check_all(aspect, "modbus_attacks.pcap")
    for d in devs:
        assert aspect.accept(d.item)
    assert check_all(detector_from(aspect), "modbus_attacks.pcap") == []
    assert not aspect.accept({"protocol": "modbus", "server": "10.9.9.9", "unit": 1})


def detector_from(aspect: ValuesAspect) -> ValuesAspect:
    return ValuesAspect.from_data(yaml.safe_load(yaml.safe_dump(aspect.to_data())))


def test_a_register_sweep_stays_bounded() -> None:
    aspect = ValuesAspect(AspectContext(options={"max_variables": 64}))
    for e in routed(aspect.protocols, "modbus_attacks.pcap", "modbus_abuse.pcap"):
        aspect.learn(e)
    assert len(aspect.stats_table.main) <= 64 and len(aspect.stats_table.probation) <= 16
    data = aspect.to_data()
    assert data["dropped"] > 0 and len(data["variables"]) <= 80
