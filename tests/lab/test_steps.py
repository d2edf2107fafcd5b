"""The attack captures' steps files (pcaps/<name>.steps.json): written by make_lab.py from the
capture, in order, each step made of the actor's frames."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_make_lab import ATTACKER, ENG, PCAPS, fields, run_make_lab

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")

#: attack capture -> (actor, number of steps)
STEPPED = {
    "modbus_attacks": (ATTACKER, 6),
    "modbus_abuse": (ATTACKER, 6),
    "network_attacks_modbus": (ATTACKER, 4),
    "s7comm_engineering": (ENG, 14),
    "s7comm_attacks": (ATTACKER, 8),
    "opcua_attacks": (ATTACKER, 6),
    "opcua_auth": (ATTACKER, 3),
}


def steps_of(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PCAPS / f"{name}.steps.json").read_text())
    return data


def test_every_attack_capture_has_a_steps_file() -> None:
    assert sorted(p.name for p in PCAPS.glob("*.steps.json")) == sorted(
        f"{name}.steps.json" for name in STEPPED
    )
    for name, ((ip, mac), n) in STEPPED.items():
        data = steps_of(name)
        assert data["capture"] == f"{name}.pcap"
        assert (data["actor"]["ip"], data["actor"]["mac"]) == (ip, mac)
        assert [s["step"] for s in data["steps"]] == list(range(1, n + 1))


@pytest.mark.parametrize("name", sorted(STEPPED))
def test_steps_follow_one_another(name: str) -> None:
    steps = steps_of(name)["steps"]
    for step in steps:
        assert step["first_frame"] <= step["last_frame"]
        assert step["start"] <= step["end"]
        assert step["frames"] >= 1
        assert step["end_offset"] - step["start_offset"] == pytest.approx(
            step["end"] - step["start"], abs=2e-6
        )
    for before, after in itertools.pairwise(steps):
        assert before["last_frame"] < after["first_frame"]
        assert before["end"] <= after["start"]


@needs_tshark
@pytest.mark.parametrize("name", sorted(STEPPED))
def test_steps_are_the_actors_frames(name: str) -> None:
    """Each step starts and ends with a frame from or to the actor, and holds as many of the
    actor's frames as the file says."""
    data = steps_of(name)
    ip, mac = data["actor"]["ip"], data["actor"]["mac"]
    actor = {
        int(r[0])
        for r in fields(
            PCAPS / f"{name}.pcap", f"eth.addr == {mac} || ip.addr == {ip}", "frame.number"
        )
    }
    for step in data["steps"]:
        assert step["first_frame"] in actor and step["last_frame"] in actor
        inside = [n for n in actor if step["first_frame"] <= n <= step["last_frame"]]
        assert len(inside) == step["frames"]


def test_steps_match_the_frames_the_readme_gives() -> None:
    """Where pcaps/README.md names a step's frames, the steps file agrees."""
    modbus = {s["name"]: s for s in steps_of("modbus_attacks")["steps"]}
    assert (
        modbus["holding-register sweep"]["first_frame"],
        modbus["holding-register sweep"]["last_frame"],
    ) == (615, 789)
    assert (
        modbus["writes the HMI never makes"]["first_frame"],
        modbus["writes the HMI never makes"]["last_frame"],
    ) == (829, 886)
    assert modbus["malformed frames"]["first_frame"] == 1170
    assert modbus["malformed frames"]["last_frame"] == 1489
    opcua = [(s["first_frame"], s["last_frame"]) for s in steps_of("opcua_attacks")["steps"]]
    assert opcua[0] == (81, 97) and opcua[1] == (109, 150)
    assert opcua[2][0] == 165 and opcua[3][0] == 328 and opcua[4][0] == 400
    net = [s["first_frame"] for s in steps_of("network_attacks_modbus")["steps"]]
    assert net == [58, 212, 361, 433]
    s7 = {s["name"]: s for s in steps_of("s7comm_engineering")["steps"]}
    assert s7["block delete"]["first_frame"] == 431
    assert s7["download"]["first_frame"] == 294


@needs_tshark
def test_steps_files_are_what_make_lab_writes(tmp_path: Path) -> None:
    """The committed steps files come from the captures: --steps writes the same bytes."""
    for name in STEPPED:
        (tmp_path / f"{name}.pcap").symlink_to(PCAPS / f"{name}.pcap")
    proc = run_make_lab("--steps", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in STEPPED:
        written = (tmp_path / f"{name}.steps.json").read_text()
        assert written == (PCAPS / f"{name}.steps.json").read_text(), name


@needs_tshark
def test_check_rejects_a_steps_file_that_does_not_match(tmp_path: Path) -> None:
    (tmp_path / "s7comm_attacks.pcap").symlink_to(PCAPS / "s7comm_attacks.pcap")
    data = steps_of("s7comm_attacks")
    data["steps"][2]["first_frame"] += 1
    (tmp_path / "s7comm_attacks.steps.json").write_text(json.dumps(data, indent=2) + "\n")
    proc = run_make_lab("--check", "--only", "s7comm_attacks", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "does not match" in proc.stderr
