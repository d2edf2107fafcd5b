"""A test-only dissector that frames Modbus/TCP ADUs by their MBAP header.

It exercises the dissector contract (consumed / need more / gap → resynchronise) without the
real Modbus dissector, and records every ADU it frames so tests can compare with tshark.
"""

from __future__ import annotations

from struct import Struct

from otsentry.dissect.base import Buffer, DissectorSpec, FlowContext
from otsentry.model import Direction, Envelope, Event

_MBAP = Struct("!HHHB")


def plausible_mbap(data: Buffer, pos: int, strict: bool = False) -> bool:
    """Protocol id 0 and a length that fits an ADU; ``strict`` (used to resynchronise) also
    wants a public function code, so the tail of an ADU is not taken for a header."""
    if len(data) - pos < 8:
        return False
    _tid, pid, length, _unit = _MBAP.unpack_from(data, pos)
    if not (pid == 0 and 2 <= length <= 254):
        return False
    if not strict:
        return True
    fc = data[pos + 7]
    if fc in (1, 2, 3, 4):  # a read request, or its response (byte count follows)
        return length == 6 or (len(data) > pos + 8 and length == 3 + data[pos + 8])
    return fc in (5, 6) and length == 6


class MbapFramer:
    """Frames ADUs; on a gap scans forward for a plausible MBAP header."""

    def __init__(self, ctx: FlowContext, log: list[tuple[bool, int, bytes]]) -> None:
        self.ctx = ctx
        self.log = log
        self.resync = {True: False, False: False}
        self.gaps = 0
        self.closed = False

    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        avail = len(data) - start
        if avail < 8:
            return -(8 - avail)
        strict = self.resync[from_client]
        if strict or not plausible_mbap(data, start):
            pos = start
            while pos + 8 <= len(data) and not plausible_mbap(data, pos, strict=True):
                pos += 1
            if pos > start:
                return pos - start
            self.resync[from_client] = False
        _tid, _pid, length, _unit = _MBAP.unpack_from(data, start)
        total = 6 + length
        if avail < total:
            return -(total - avail)
        adu = bytes(data[start : start + total])
        self.log.append((from_client, ts, adu))
        self.ctx.count_pdus()
        direction = Direction.REQUEST if from_client else Direction.RESPONSE
        self.ctx.emit(
            Event(
                Envelope(ts, self.ctx.conn, "mbap", direction),
                "mbap-adu",
                {"transaction_id": _tid, "unit_id": _unit, "length": length},
            )
        )
        return total

    def gap(self, from_client: bool, ts: int) -> None:
        self.resync[from_client] = True
        self.gaps += 1

    def close(self, ts: int) -> None:
        self.closed = True


def mbap_spec(log: list[tuple[bool, int, bytes]], ports: tuple[int, ...] = (502,)) -> DissectorSpec:
    """A spec for the framer writing into ``log``."""
    return DissectorSpec(
        name="mbap",
        ports=ports,
        factory=lambda ctx: MbapFramer(ctx, log),
        probe=lambda payload, from_client: from_client and plausible_mbap(payload, 0),
    )
