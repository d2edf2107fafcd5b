"""Feeding fuzz inputs and lab conversations to a dissector through the real reassembler.

A fuzz input (see ``fuzz/driver.py``) is records ``[ctl:1][len:2 big-endian][len bytes]``: ``ctl``
bit 0 is the direction (1: client), bit 1 a lost stretch before the record, bit 2 the end.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from functools import cache
from typing import Any

from tests.conftest import LAB_PCAPS
from tests.dissectors.harness import FlowHarness
from tests.dissectors.s7comm.lab_streams import Segments, flows_to_port

#: a lab capture and server port per protocol
LAB = {
    "modbus": ("modbus_attacks.pcap", 502),
    "s7comm": ("s7comm_engineering.pcap", 102),
    "opcua": ("opcua_attacks.pcap", 4840),
}


def records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Split a fuzz input into ``(ctl, payload)`` records."""
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos + 1 : pos + 3], "big")
        yield data[pos], data[pos + 3 : pos + 3 + size]
        pos += 3 + size


def factory(protocol: str) -> Any:
    """The per-flow factory of a built-in dissector."""
    return importlib.import_module(f"otsentry.dissectors.{protocol}").SPEC.factory


def replay(protocol: str, segments: list[tuple[int, bytes]]) -> FlowHarness:
    """Play ``(ctl, payload)`` segments to a fresh dissector and close the flow."""
    h = FlowHarness(factory=factory(protocol))
    for ctl, payload in segments:
        fc = bool(ctl & 1)
        if ctl & 2:
            h.skip(fc, 7)
        if payload:
            h.send(fc, payload)
        if ctl & 4:
            break
    h.close()
    return h


def failures(h: FlowHarness) -> dict[str, int]:
    """Dissector exceptions and contract breaches counted by the reassembler (should be none)."""
    stats = h.streams[True].stats
    return {"dissector_errors": stats.dissector_errors, "no_progress": stats.no_progress}


@cache
def lab_conversations(protocol: str) -> tuple[Segments, ...]:
    """The lab capture's connections for a protocol, each its payload segments in order."""
    name, port = LAB[protocol]
    return tuple(flow for flow in flows_to_port(LAB_PCAPS / name, port) if flow)
