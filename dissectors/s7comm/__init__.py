"""Siemens S7: ISO-on-TCP (TPKT, COTP), S7comm (0x32) and S7comm-plus (0x72) headers.

``SPEC`` registers the dissector on TCP port 102, with a probe that finds S7 on any port.
"""

from __future__ import annotations

from otsentry.dissect.base import DissectorSpec

from .constants import S7_PORT, TPKT_LEN
from .grammar import TPKT
from .session import S7Session, _plausible_tpkt

__all__ = ["SPEC", "S7Session", "probe"]


def probe(payload: bytes, from_client: bool) -> bool:
    """Is this first payload one or more whole TPKTs carrying COTP, back to back?"""
    pos, n = 0, len(payload)
    while pos < n:
        if not _plausible_tpkt(payload, pos):
            return False
        pos += TPKT.unpack_from(payload, pos)[2]
    return pos == n and n > TPKT_LEN


SPEC = DissectorSpec(
    name="s7comm",
    ports=(S7_PORT,),
    factory=S7Session,
    probe=probe,
    description="Siemens S7comm and S7comm-plus over ISO-on-TCP (TPKT/COTP)",
    dump_protocols=("s7comm", "s7comm-plus", "cotp"),
)
