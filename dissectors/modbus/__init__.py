"""Modbus/TCP: MBAP framing, every public function code, UMAS headers, request/response pairing.

``SPEC`` registers the dissector on TCP port 502, with a probe that finds Modbus on any port.
"""

from __future__ import annotations

from otsentry.dissect.base import DissectorSpec

from .constants import KNOWN_FUNCTIONS, KNOWN_RESPONSE_FUNCTIONS, MBAP_LEN, MODBUS_PORT
from .grammar import MBAP, looks_like_mbap
from .session import ModbusSession

__all__ = ["SPEC", "ModbusSession", "probe"]


def probe(payload: bytes, from_client: bool) -> bool:
    """Is this first payload one or more whole MBAP ADUs, back to back, with known codes?"""
    codes = KNOWN_FUNCTIONS if from_client else KNOWN_RESPONSE_FUNCTIONS
    pos, n = 0, len(payload)
    while pos < n:
        if not looks_like_mbap(payload, pos, codes):
            return False
        pos += 6 + MBAP.unpack_from(payload, pos)[2]
    return pos == n and n >= MBAP_LEN + 1


SPEC = DissectorSpec(
    name="modbus",
    ports=(MODBUS_PORT,),
    factory=ModbusSession,
    probe=probe,
    description="Modbus/TCP (MBAP), with Schneider UMAS (function code 90) headers",
)
