"""benchmarks/detection.py on one small scenario: learn on modbus_normal, replay its second run
and modbus_attacks, and read the per-step table it prints as JSON."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import LAB_PCAPS, ROOT

SCRIPT = ROOT / "benchmarks" / "detection.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("detection_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


detection = _load()
needs_baseline_cli = pytest.mark.skipif(
    not detection.baseline_cli_available(),
    reason="otsentry has no `baseline learn` / `replay --baseline` yet",
)


def _alert(ts: str, src: str, dst: str, *, anomaly: str | None = None) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "@timestamp": ts,
        "source": {"ip": src},
        "destination": {"ip": dst},
        "rule": {"id": "OTS-X", "ruleset": "otsentry-ics"},
        "threat": {"technique": {"id": ["T0855"]}},
    }
    if anomaly:
        alert["rule"]["ruleset"] = "otsentry-anomaly"
        alert["otsentry"] = {"anomaly": {"kind": anomaly}}
    return alert


def test_alerts_go_to_the_step_they_fall_in() -> None:
    """An alert about the actor counts for the step whose time span holds it (up to the next
    step's start); one about other hosts, or after the last step, counts for none."""
    steps = json.loads((LAB_PCAPS / "modbus_attacks.steps.json").read_text())
    s = steps["steps"]
    att, plc, hmi = "10.10.30.66", "10.10.30.5", "10.10.30.10"

    def at(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat()

    gap = (s[2]["end"] + s[3]["start"]) / 2  # after step 3's last frame, before step 4
    alerts = [
        _alert(at(s[0]["start"]), att, plc, anomaly="new_asset"),
        _alert(at(s[2]["start"] + 0.0001), att, plc, anomaly="new_writer"),
        _alert(at(gap), att, plc, anomaly="new_function"),
        _alert(at(s[2]["start"] + 0.0001), att, plc),  # a rule alert
        _alert(at(s[4]["start"]), hmi, plc, anomaly="value_out_of_range"),  # not the actor
        _alert(at(s[5]["end"] + 1), att, plc, anomaly="new_link"),  # after the last step
    ]
    result = detection.attribute(steps, alerts)
    alerted = [
        (r.step, r.anomalies, r.kinds, r.rules) for r in result.steps if r.anomalies or r.rules
    ]
    assert alerted == [
        (1, 1, ["new_asset"], []),
        (3, 2, ["new_function", "new_writer"], ["OTS-X"]),
    ]
    assert result.outside == {"new_link": 1, "value_out_of_range": 1}


@needs_baseline_cli
def test_harness_on_modbus(tmp_path: Path) -> None:
    normal, run2 = LAB_PCAPS / "modbus_normal.pcap", LAB_PCAPS / "modbus_normal_run2.pcap"
    attack = LAB_PCAPS / "modbus_attacks.pcap"
    argv = [sys.executable, str(SCRIPT), "--json", "--work", str(tmp_path)]
    argv += ["--learn", str(normal), "--benign", str(run2), "--attack", str(attack)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert list(tmp_path.joinpath("baseline").glob("*.yaml"))

    [benign] = result["benign"]
    stats = json.loads((tmp_path / "benign" / "modbus_normal_run2" / "stats.json").read_text())
    assert benign["capture"] == "modbus_normal_run2.pcap"
    assert benign["events"] == sum(stats["events"].values()) > 400
    assert benign["seconds"] == pytest.approx(20, abs=1)
    assert benign["flagged"] == pytest.approx(benign["flagged_events"] / benign["events"])

    [attacks] = result["attacks"]
    steps = json.loads((LAB_PCAPS / "modbus_attacks.steps.json").read_text())["steps"]
    assert [s["name"] for s in attacks["steps"]] == [s["name"] for s in steps]
    # the attacker is a host the baseline never saw: its first step is an anomaly
    first = attacks["steps"][0]
    assert first["alerted"] and {"new_asset", "new_link"} & set(first["kinds"])
    assert result["summary"]["steps"] == 6
    assert result["summary"]["steps_alerted"] == sum(s["alerted"] for s in attacks["steps"])
