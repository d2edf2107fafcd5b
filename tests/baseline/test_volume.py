"""Traffic volume per link and window on the lab captures."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from otsentry.baseline.aspect import AnomalyKind, AspectContext, AspectDataError, Deviation
from otsentry.baseline.volume import Measure, VolumeAspect, number
from otsentry.model import Envelope, Event
from tests.baseline.test_values import HMI, routed

NORMAL = ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")
PLC1 = "10.10.30.5"


@pytest.fixture(scope="module")
def learned_data() -> dict[str, Any]:
    aspect = VolumeAspect()
    for e in routed(None, *NORMAL):
        aspect.learn(e)
    aspect.end_learning(0)
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(aspect.to_data()))
    return data


def run(data: dict[str, Any], events: list[Event]) -> list[Deviation]:
    aspect = VolumeAspect.from_data(data)
    out: list[Deviation] = []
    for e in events:
        out += aspect.check(e)
    return out


def faster(events: list[Event], factor: int) -> list[Event]:
    """The same events with the time between them divided by ``factor`` (a client polling
    ``factor`` times as fast)."""
    t0 = events[0].envelope.ts
    out = []
    for e in events:
        env = e.envelope
        ts = t0 + (env.ts - t0) // factor
        fields = dict(e.fields)
        if "duration" in fields:  # a flow's end tells how long it lasted
            fields["duration"] = fields["duration"] / factor
        out.append(Event(Envelope(ts, env.conn, env.protocol, env.direction), e.action, fields))
    return out


def test_the_lab_links(learned_data: dict[str, Any]) -> None:
    links = {r["label"]: r for r in learned_data["links"]}
    plc1 = links["10.10.30.10 to 10.10.30.5:502"]
    # 4 polls of 10 per 2 s window to unit 1, one of two every other window to unit 2
    assert 40 <= plc1["requests"]["min"] <= plc1["requests"]["max"] <= 45
    assert plc1["requests"]["windows"] == 9 and plc1["requests"]["checked"]
    assert plc1["bytes_per_second"]["checked"]
    assert learned_data["window"] == 2.0 and learned_data["dropped"] == 0


@pytest.mark.parametrize("capture", [*NORMAL, "s7comm_normal_run2.pcap", "modbus_attacks.pcap"])
def test_normal_volumes_raise_nothing(learned_data: dict[str, Any], capture: str) -> None:
    assert run(learned_data, routed(None, capture)) == []


def test_a_link_four_times_as_busy(learned_data: dict[str, Any]) -> None:
    devs = run(learned_data, faster(routed(None, "modbus_normal.pcap"), 4))
    assert devs and {d.kind for d in devs} == {AnomalyKind.VOLUME_CHANGE}
    requests = [d for d in devs if d.item["measure"] == "requests"]
    assert len(requests) == 1 and requests[0].hosts == (HMI, PLC1)
    assert requests[0].item["side"] == "high" and requests[0].item["value"] > 2 * 43
    # the flow's bytes per second rose four-fold too
    assert any(d.item["measure"] == "bytes_per_second" for d in devs)


def test_too_few_windows_are_never_checked() -> None:
    aspect = VolumeAspect(AspectContext(options={"min_windows": 50}))
    for e in routed(None, "modbus_normal.pcap"):
        aspect.learn(e)
    aspect.end_learning(0)
    data = aspect.to_data()
    assert not any(r["requests"]["checked"] for r in data["links"])
    assert (
        run(yaml.safe_load(yaml.safe_dump(data)), faster(routed(None, "modbus_normal.pcap"), 4))
        == []
    )


def test_accept_widens_the_bounds(learned_data: dict[str, Any]) -> None:
    aspect = VolumeAspect.from_data(learned_data)
    devs: list[Deviation] = []
    for e in faster(routed(None, "modbus_normal.pcap"), 4):
        devs += aspect.check(e)
    for d in devs:
        assert aspect.accept(d.item)
    again = yaml.safe_load(yaml.safe_dump(aspect.to_data()))
    assert run(again, faster(routed(None, "modbus_normal.pcap"), 4)) == []


def test_measure_bounds() -> None:
    m = Measure("requests")
    for v in (40, 42, 44):
        m.add(v)
    m.settle(3)
    assert (m.high, m.low) == (108.0, 0.0)
    m.settle(4)
    assert not m.checked


def test_numbers_are_written_the_way_they_read_back() -> None:
    assert [number(v) for v in (42, 42.0, 10368.3914, 0.0004, 2.5)] == [42, 42, 10368.391, 0, 2.5]
    for v in (42, 10368.3914, 4184.1955, 1 / 3):
        assert number(float(yaml.safe_load(yaml.safe_dump(number(v))))) == number(v)


def test_a_baseline_read_back_writes_the_same_bytes(learned_data: dict[str, Any]) -> None:
    text = yaml.safe_dump(learned_data)
    again = VolumeAspect.from_data(yaml.safe_load(text)).to_data()
    assert yaml.safe_dump(again) == text
    assert all(r["first_seen"].startswith("2026-") for r in again["links"])
    assert all(r["first_seen"] < r["last_seen"] for r in again["links"])
    # the bounds were derived from the rounded maximum, so reading them back changes nothing
    bps = [r["bytes_per_second"] for r in again["links"] if r["bytes_per_second"]["checked"]]
    assert bps and all(b["high"] == number(2 * b["max"] + 2_000) for b in bps)


def test_accepted_volumes_read_back_the_same(learned_data: dict[str, Any]) -> None:
    aspect = VolumeAspect.from_data(learned_data)
    for e in faster(routed(None, "modbus_normal.pcap"), 4):
        for d in aspect.check(e):
            assert aspect.accept(d.item)
    text = yaml.safe_dump(aspect.to_data())
    assert text != yaml.safe_dump(learned_data)
    again = VolumeAspect.from_data(yaml.safe_load(text)).to_data()
    assert yaml.safe_dump(again) == text


def test_bounds_out_of_order_name_the_key(learned_data: dict[str, Any]) -> None:
    data = yaml.safe_load(yaml.safe_dump(learned_data))
    data["links"][0]["requests"]["min"] = data["links"][0]["requests"]["max"] + 1
    with pytest.raises(AspectDataError) as err:
        VolumeAspect.from_data(data)
    assert err.value.key == "links[0].requests"
