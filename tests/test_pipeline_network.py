"""Flow and ARP events in a replay: they reach the rule engine and the detection hooks, never
``events.ndjson``, and their counts are in ``stats.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import LAB_PCAPS, replay_events

CAPTURE = LAB_PCAPS / "network_attacks_modbus.pcap"
pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason="lab capture missing")


def test_network_events_feed_rules_and_hooks_but_not_the_event_file(tmp_path: Path) -> None:
    seen, stats = replay_events(CAPTURE, tmp_path)
    hooked = [e for e in seen if e.envelope.protocol == "network"]

    actions = {e.action for e in hooked}
    assert {"network-flow-start", "network-flow-end", "network-ip-mac-change"} <= actions
    starts = sum(e.action == "network-flow-start" for e in hooked)
    assert starts == stats["network"]["flow_starts"] == stats["flows"]
    assert sum(e.action == "network-flow-end" for e in hooked) == starts  # every flow ends
    written = [json.loads(line) for line in (tmp_path / "events.ndjson").open()]
    assert written and all(d["network"]["protocol"] != "network" for d in written)
    rules = {json.loads(line)["rule"]["id"] for line in (tmp_path / "alerts.ndjson").open()}
    assert {"OTS-NET-PORT-SCAN", "OTS-NET-ARP-SPOOFING", "OTS-NET-ICS-HOST-SWEEP"} <= rules
    assert stats["network"]["ip_mac_changes"] >= 1
