"""Shared fixtures: the test rules and the events of a lab capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.model import Event
from otsentry.stages import configured_registry, decoder_for, flow_table_for

HERE = Path(__file__).parent
RULES = HERE / "rules"
PCAPS = HERE.parent.parent / "pcaps"


def replay_events(path: Path) -> list[Event]:
    """Every event the dissectors make of a capture, in order."""
    cfg = Config()
    events: list[Event] = []
    table = flow_table_for(cfg, configured_registry(cfg), events.append)
    decoder = decoder_for(cfg)
    last = 0
    with open_capture(path) as reader:
        for n, (ts, linktype, data) in enumerate(reader, 1):
            last = ts
            pkt = decoder.decode(linktype, data, ts)
            if pkt is not None:
                table.frame = n
                table.packet(pkt, ts, data)
    table.close_all(last)
    return events


@pytest.fixture(scope="session")
def modbus_attack_events() -> list[Event]:
    """Events of pcaps/modbus_attacks.pcap (lab capture of Modbus attacks)."""
    return replay_events(PCAPS / "modbus_attacks.pcap")


@pytest.fixture(scope="session")
def lab_events() -> list[Event]:
    """Events of every lab capture (Modbus, S7, OPC UA)."""
    events: list[Event] = []
    for path in sorted(PCAPS.glob("*.pcap")):
        events.extend(replay_events(path))
    return events
