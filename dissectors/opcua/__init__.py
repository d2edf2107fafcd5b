"""OPC UA binary: UA TCP (HEL/ACK/ERR/RHE), UA Secure Conversation (OPN/MSG/CLO), chunks, the
binary encoding and the services a SOC cares about.

``SPEC`` registers the dissector on TCP port 4840, with a probe that finds OPC UA on any port.
"""

from __future__ import annotations

from otsentry.dissect.base import DissectorSpec

from .constants import HEADER_LEN, OPCUA_PORT
from .session import HEADER, OpcUaSession, _plausible

__all__ = ["SPEC", "OpcUaSession", "probe"]


def probe(payload: bytes, from_client: bool) -> bool:
    """Is this first payload one or more whole UA TCP chunks, back to back?"""
    pos, n = 0, len(payload)
    while pos < n:
        if not _plausible(payload, pos):
            return False
        pos += HEADER.unpack_from(payload, pos)[2]
    return pos == n and n >= HEADER_LEN


SPEC = DissectorSpec(
    name="opcua",
    ports=(OPCUA_PORT,),
    factory=OpcUaSession,
    probe=probe,
    description="OPC UA binary (UA TCP and UA Secure Conversation)",
)
