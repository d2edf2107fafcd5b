"""Events and per-link windows of the lab captures, through the real pipeline (for the outlier
model's tests)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from otsentry.baseline.features import WindowExtractor, WindowVector
from otsentry.model import Event
from tests.conftest import LAB_PCAPS, replay_events

HMI = "10.10.30.10"
ENG = "10.10.30.20"
ATTACKER = "10.10.30.66"
PLC1 = "10.10.30.5"
PLC2 = "10.10.30.6"
OPCSRV = "10.10.30.7"
RTU1 = "10.10.30.8"
#: the lab's normal captures (the ones the example baseline learns from)
NORMAL = ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")


def lab(name: str) -> Path:
    """A lab capture (the test is skipped when it is missing)."""
    path = LAB_PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path


@cache
def events_of(name: str) -> tuple[Event, ...]:
    """Every event (protocol and network) the pipeline hands its hooks for a lab capture, in
    the order it hands them."""
    return tuple(replay_events(lab(name))[0])


def windows_of(name: str, window_seconds: float = 2.0) -> list[WindowVector]:
    """The capture's windows, complete and incomplete, in closing order."""
    extractor = WindowExtractor(window_seconds)
    out: list[WindowVector] = []
    for event in events_of(name):
        out += extractor.add(event)
    out += extractor.flush()
    return out


def complete_windows(*names: str, window_seconds: float = 2.0) -> list[WindowVector]:
    """The complete windows of several captures, each cut on its own."""
    return [w for name in names for w in windows_of(name, window_seconds) if w.complete]
