"""The rule pack on the lab's captures, replayed as a user would (``otsentry replay``).

Attack captures raise the expected rules with the expected ATT&CK techniques and nothing else
above low; normal captures raise nothing above low; every rule of the pack is raised by the
capture ``rules/exercised_by.json`` names for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otsentry.detect.model import LEVELS
from otsentry.rules import make_catalog
from tests.conftest import capture_path

LOW = LEVELS["low"][0]
HMI = "10.10.30.10"

#: attack capture → rule id → its ATT&CK technique ids
EXPECTED: dict[str, dict[str, set[str]]] = {
    "lab/modbus_attacks.pcap": {
        "OTS-MODBUS-FORCE-LISTEN-ONLY": {"T0814"},
        "OTS-MODBUS-RESTART-COMMUNICATIONS": {"T0816"},
        "OTS-MODBUS-DEVICE-IDENTIFICATION": {"T0888"},
        "OTS-MODBUS-POINTS-LIST-SCAN": {"T0861"},
        "OTS-MODBUS-FUNCTION-CODE-SCAN": {"T0888", "T0846"},
        "OTS-MODBUS-PROTOCOL-VIOLATION": {"T0866", "T0885"},
        "OTS-ICS-NON-ICS-PAYLOAD": {"T0885"},
    },
    "lab/modbus_abuse.pcap": {
        "OTS-MODBUS-CLEAR-COUNTERS": {"T0872"},
        "OTS-MODBUS-BRUTE-FORCE-IO": {"T0806"},
        "OTS-MODBUS-UNIT-ID-SWEEP": {"T0846"},
        "OTS-MODBUS-SERVER-BUSY": {"T0814"},
        "OTS-MODBUS-UMAS-PLC-STOP": {"T0858", "T0816"},
        "OTS-MODBUS-UMAS-PLC-START": {"T0858"},
        "OTS-MODBUS-UMAS-PROGRAM-DOWNLOAD": {"T0843"},
        "OTS-MODBUS-UMAS-PROGRAM-UPLOAD": {"T0845"},
    },
    "lab/s7comm_engineering.pcap": {
        "OTS-S7-PLC-STOP": {"T0858", "T0816"},
        "OTS-S7-PLC-START": {"T0858", "T0816"},
        "OTS-S7-PROGRAM-DOWNLOAD": {"T0843", "T0889"},
        "OTS-S7-PROGRAM-UPLOAD": {"T0845"},
        "OTS-S7-BLOCK-DELETE-COMPRESS": {"T0889", "T0809"},
        "OTS-S7-PASSWORD-CHANGE": {"T0892"},
        "OTS-S7-SET-CLOCK": {"T0836"},
        "OTS-S7-SZL-IDENTITY-READ": {"T0888"},
        "OTS-S7-SZL-MODE-READ": {"T0868"},
        "OTS-S7-SZL-SWEEP": {"T0888"},
        "OTS-S7-PROTOCOL-VIOLATION": {"T0866", "T0885"},
    },
    "lab/s7comm_attacks.pcap": {
        "OTS-S7-PLC-STOP": {"T0858", "T0816"},
        "OTS-S7-PLC-START": {"T0858", "T0816"},
        "OTS-S7-BLOCK-DELETE-COMPRESS": {"T0889", "T0809"},
        "OTS-S7-FORCE-MODIFY": {"T0835", "T0836"},
        "OTS-S7-SZL-IDENTITY-READ": {"T0888"},
    },
    "lab/opcua_attacks.pcap": {
        "OTS-OPCUA-ADDRESS-SPACE-ENUMERATION": {"T0861"},
        "OTS-OPCUA-ACTIVATION-REJECTED": {"T0859", "T0812"},
    },
    "lab/opcua_auth.pcap": {
        "OTS-OPCUA-ACTIVATION-REJECTED": {"T0859", "T0812"},
        "OTS-OPCUA-AUTH-FAILURE-BURST": {"T0859", "T0812"},
    },
    "lab/network_attacks_modbus.pcap": {
        "OTS-ICS-NON-ICS-PAYLOAD": {"T0885"},
        "OTS-NET-ICS-HOST-SWEEP": {"T0846", "T0840"},
        "OTS-NET-PORT-SCAN": {"T0846", "T0840"},
        "OTS-NET-IP-MAC-CHANGE": {"T0830"},
        "OTS-NET-ARP-SPOOFING": {"T0830"},
    },
}

#: normal captures, with the options a user would replay them with
NORMAL: dict[str, tuple[str, ...]] = {
    "lab/modbus_normal.pcap": (),
    "lab/modbus_port5020.pcap": ("--decode-as", "5020=modbus"),
    "lab/s7comm_normal.pcap": (),
    "lab/opcua_normal.pcap": (),
    "lab/opcua_secure.pcap": (),
}

Replay = Callable[..., "Replayed"]


class Replayed:
    """What one ``otsentry replay`` wrote: its alerts and the protocols of its events."""

    def __init__(self, out: Path) -> None:
        self.alerts: list[dict[str, Any]] = [
            json.loads(line) for line in (out / "alerts.ndjson").read_text().splitlines()
        ]
        self.protocols: set[str] = set()
        with (out / "events.ndjson").open() as events:
            for line in events:
                self.protocols.add(json.loads(line)["network"]["protocol"])

    def rule_ids(self) -> set[str]:
        return {a["rule"]["id"] for a in self.alerts}

    def techniques(self, rule_id: str) -> set[str]:
        return {
            t
            for a in self.alerts
            if a["rule"]["id"] == rule_id
            for t in a["threat"]["technique"]["id"]
        }


@pytest.fixture(scope="session")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    """Replay a capture (once per capture, config and options) with the built-in pack."""
    done: dict[str, Replayed] = {}

    def run(path: Path, *options: str, config: dict[str, Any] | None = None) -> Replayed:
        key = json.dumps([str(path), options, config], sort_keys=True)
        if key not in done:
            out = tmp_path_factory.mktemp("replay")
            args = [sys.executable, "-m", "otsentry", "replay", "-q", str(path), "-o", str(out)]
            if config:
                cfg = out / "otsentry.json.yaml"
                cfg.write_text(json.dumps(config))  # JSON is YAML
                args += ["-c", str(cfg)]
            result = subprocess.run([*args, *options], capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr
            done[key] = Replayed(out)
        return done[key]

    return run


def _hmi_is_quiet(capture: str, replayed: Replayed) -> None:
    """The HMI polls and writes as operators do in every capture: nothing it does is loud
    (it may be the target of an attack: a scan sweeping the segment, the spoofing's victim)."""
    loud = [
        a["rule"]["id"]
        for a in replayed.alerts
        if a["event"]["severity"] > LOW and a["source"]["ip"] == HMI
    ]
    assert not loud, f"{capture}: the HMI raised {loud}"


@pytest.mark.parametrize("capture", sorted(EXPECTED))
def test_attack_capture_raises_the_expected_rules(
    capture: str, replay: Replay, request: pytest.FixtureRequest
) -> None:
    replayed = replay(capture_path(capture, request))
    expected = EXPECTED[capture]
    raised = replayed.rule_ids()
    missing = set(expected) - raised
    assert not missing, f"{capture}: expected rules not raised: {sorted(missing)}"
    for rule_id, techniques in expected.items():
        assert replayed.techniques(rule_id) == techniques, rule_id
    # nothing above low that the capture's story does not explain
    loud = {a["rule"]["id"] for a in replayed.alerts if a["event"]["severity"] > LOW}
    assert loud <= set(expected), f"{capture}: unexpected alerts above low: {loud - set(expected)}"
    _hmi_is_quiet(capture, replayed)


@pytest.mark.parametrize("capture", sorted(NORMAL))
def test_normal_capture_raises_nothing_above_low(
    capture: str, replay: Replay, request: pytest.FixtureRequest
) -> None:
    replayed = replay(capture_path(capture, request), *NORMAL[capture])
    assert replayed.protocols & {"modbus", "s7comm", "opcua"}, "the capture was not dissected"
    loud = [
        (a["rule"]["id"], a["message"]) for a in replayed.alerts if a["event"]["severity"] > LOW
    ]
    assert not loud, f"{capture}: {loud}"
    _hmi_is_quiet(capture, replayed)


EXERCISED = make_catalog.load_exercised()
#: (capture, config) → the rules it must raise, for the entries the attack tests do not check
OTHER_RUNS: dict[tuple[str, str], list[str]] = {}
for _rule_id, _entry in sorted(EXERCISED.items()):
    _capture = _entry.get("capture")
    _config = _entry.get("config")
    if _capture is None or (_config is None and _rule_id in EXPECTED.get(_capture, {})):
        continue
    OTHER_RUNS.setdefault((_capture, json.dumps(_config, sort_keys=True)), []).append(_rule_id)


@pytest.mark.parametrize("run", sorted(OTHER_RUNS), ids=lambda run: f"{run[0]} {run[1]}")
def test_rules_raised_outside_the_lab_story(
    run: tuple[str, str], replay: Replay, request: pytest.FixtureRequest
) -> None:
    """Rules the table ties to a public capture, or to a lab capture replayed with settings."""
    capture, config = run
    replayed = replay(capture_path(capture, request), config=json.loads(config))
    missing = set(OTHER_RUNS[run]) - replayed.rule_ids()
    assert not missing, f"{capture} (config {config}) does not raise {sorted(missing)}"


def test_every_rule_of_the_pack_has_a_capture_or_a_reason() -> None:
    """Every rule of the table is checked against its own capture, or says why none exists."""
    others = {r for rules in OTHER_RUNS.values() for r in rules}
    for rule_id, entry in EXERCISED.items():
        capture = entry.get("capture")
        if capture is None:
            assert entry["why_not_lab"], rule_id
        elif entry.get("config") is None and capture in EXPECTED:
            assert rule_id in EXPECTED[capture], f"{rule_id}: add it to EXPECTED[{capture!r}]"
        else:
            assert rule_id in others, rule_id
