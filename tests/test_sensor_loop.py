"""The live sensor's loop, fed with a lab capture's real frames as a live source would hand them
over (batches, then a quiet network): same output as a replay, periodic stats, reload, stop."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.sensor import Sensor, SensorOptions
from tests.conftest import LAB_PCAPS

CAPTURE = LAB_PCAPS / "modbus_attacks.pcap"


class CaptureSource:
    """Frames of a capture file in batches, then nothing (waiting ``timeout`` like a quiet NIC)."""

    def __init__(self, path: Path, batch: int = 256, on_read: Callable[[int], None] | None = None):
        with open_capture(path) as reader:
            self.frames = list(reader)
        self.batch = batch
        self.pos = 0
        self.reads = 0
        self.closed = False
        self.on_read = on_read

    def read(self, max_frames: int = 4096, timeout: float = 0.2) -> list[Any]:
        self.reads += 1
        if self.on_read is not None:
            self.on_read(self.reads)
        n = min(max_frames, self.batch)
        chunk = self.frames[self.pos : self.pos + n]
        self.pos += len(chunk)
        if not chunk:
            time.sleep(min(timeout, 0.02))
        return chunk

    def stats(self) -> dict[str, dict[str, int]]:
        return {"span0": {"received": self.pos, "dropped": 0, "freeze_queue": 0}}

    def close(self) -> None:
        self.closed = True


def _anomalies(doc: dict[str, Any]) -> list[str]:
    return list(doc.get("otsentry", {}).get(doc["network"]["protocol"], {}).get("anomalies", []))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def replay(tmp_path: Path) -> Path:
    from otsentry.pipeline import Pipeline

    out = tmp_path / "replay"
    pipeline = Pipeline(Config(), out)
    with open_capture(CAPTURE) as reader:
        pipeline.run(reader)
    pipeline.finish()
    return out


def test_same_output_as_a_replay_and_live_stats(tmp_path: Path) -> None:
    source = CaptureSource(CAPTURE)
    options = SensorOptions(interfaces=("span0",), duration=1.0, stats_interval=0.3)
    sensor = Sensor(Config(), tmp_path / "live", options, source)
    stats = sensor.run()
    assert source.closed
    reference = replay(tmp_path)
    for name in ("events.ndjson", "alerts.ndjson"):
        live = [(d["event"]["action"], d["event"]["id"]) for d in lines(tmp_path / "live" / name)]
        ref = [(d["event"]["action"], d["event"]["id"]) for d in lines(reference / name)]
        assert live == ref, name
    assert len(lines(tmp_path / "live" / "assets.ndjson")) == len(
        lines(reference / "assets.ndjson")
    )
    written = json.loads((tmp_path / "live" / "stats.json").read_text())
    assert written["sensor"]["state"] == "stopped"
    assert written["capture"]["interfaces"]["span0"]["received"] == len(source.frames)
    assert written["capture"]["kernel_drops"] == 0
    assert written["packets"] == len(source.frames) == stats["packets"]
    assert written["sensor"]["queue_high_water"] == 256
    malformed = written["parse_errors"]["by_protocol"]  # the attack's malformed frames
    assert malformed["modbus"] == sum(
        1 for d in lines(tmp_path / "live" / "events.ndjson") if _anomalies(d)
    )
    assert malformed["modbus"] > 0 and malformed["s7comm"] == 0
    assert 0.9 <= written["sensor"]["uptime_seconds"] < 5


def test_stats_json_is_written_while_running(tmp_path: Path) -> None:
    out = tmp_path / "live"
    seen: list[dict[str, Any]] = []

    def watch(reads: int) -> None:
        path = out / "stats.json"
        if path.exists() and not seen:
            seen.append(json.loads(path.read_text()))

    source = CaptureSource(CAPTURE, on_read=watch)
    options = SensorOptions(interfaces=("span0",), duration=1.0, stats_interval=0.2)
    Sensor(Config(), out, options, source).run()
    assert seen and seen[0]["sensor"]["state"] == "running"
    assert not list(out.glob(".stats.json.tmp"))  # replaced atomically


def test_stop_flag_ends_the_run_with_everything_flushed(tmp_path: Path) -> None:
    holder: list[Sensor] = []

    def stop_after(reads: int) -> None:
        if reads == 3:
            holder[0].stop()

    source = CaptureSource(CAPTURE, on_read=stop_after)
    sensor = Sensor(Config(), tmp_path, SensorOptions(interfaces=("span0",)), source)
    holder.append(sensor)
    started = time.monotonic()
    stats = sensor.run()  # no duration: only the stop request ends it
    assert time.monotonic() - started < 5
    assert stats["packets"] == 3 * 256
    assert all(lines(tmp_path / "events.ndjson"))
    assert json.loads((tmp_path / "stats.json").read_text())["sensor"]["state"] == "stopped"


RULE = """\
id: OTS-TEST-LIVE-RELOAD
rev: 1
title: Any Modbus read (reload test)
status: test
description: matches every Modbus read of holding registers
author: tests
date: 2026-12-07
level: low
logsource: {protocol: modbus}
detection:
  selection: {function_code: 3}
  condition: selection
message: "read by {source.ip}"
"""


def test_sighup_reload_picks_up_new_rules_and_keeps_state(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    holder: list[Sensor] = []

    def reload_midway(reads: int) -> None:
        if reads == 2:
            (rules / "live.yml").write_text(RULE)
            holder[0].request_reload()
        if reads == 4:
            (rules / "broken.yml").write_text("id: [not, a, rule\n")
            holder[0].request_reload()

    source = CaptureSource(CAPTURE, on_read=reload_midway)
    options = SensorOptions(
        interfaces=("span0",), duration=1.0, rules=(rules,), builtin_rules=False
    )
    sensor = Sensor(Config(), tmp_path / "out", options, source)
    holder.append(sensor)
    assert sensor.pipeline.engine is None or not sensor.pipeline.engine.rules
    stats = sensor.run()
    alerts = lines(tmp_path / "out" / "alerts.ndjson")
    assert {a["rule"]["id"] for a in alerts} == {"OTS-TEST-LIVE-RELOAD"}
    live = stats["sensor"]
    assert live["reloads"] == 2
    assert "broken.yml" in live["last_reload_error"]  # the broken file left the running rules
    assert stats["detection"]["rules_loaded"] == 1
    assert stats["packets"] == len(source.frames)  # flows and counters carried across reloads


def test_quiet_network_still_closes_alert_windows(tmp_path: Path) -> None:
    source = CaptureSource(CAPTURE)
    config = Config()
    sensor = Sensor(config, tmp_path, SensorOptions(interfaces=("span0",), duration=0.5), source)
    ticks: list[int] = []
    original = sensor.pipeline.tick

    def tick(ts: int, packet_no: int) -> None:
        ticks.append(ts)
        original(ts, packet_no)

    sensor.pipeline.tick = tick  # type: ignore[method-assign]
    sensor.run()
    now = time.time_ns()
    assert any(abs(now - ts) < 5_000_000_000 for ts in ticks)  # wall-clock ticks while idle


@pytest.mark.parametrize("interval", [0.05])
def test_terminal_view_gets_snapshots(tmp_path: Path, interval: float) -> None:
    views: list[dict[str, Any]] = []
    sensor = Sensor(
        Config(),
        tmp_path,
        SensorOptions(interfaces=("span0",), duration=0.4),
        CaptureSource(CAPTURE),
        on_view=views.append,
        view_interval=interval,
    )
    sensor.run()
    assert len(views) >= 3
    assert views[-1]["sensor"]["state"] == "running"
    assert threading.active_count() >= 1
