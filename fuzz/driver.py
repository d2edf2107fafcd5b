"""What every dissector harness shares: a fuzz input format and a strict flow driver.

A fuzz input is a sequence of records ``[ctl:1][len:2 big-endian][len bytes]``; ``ctl`` bit 0 is
the direction (1 = client to server), bit 1 a lost stretch before the record (``gap``), bit 2 a
close of the flow after it. A short last record takes what is left. ``corpus_seed.py`` writes real
PDUs in this shape, one record per PDU, so mutations start from real conversations.

The driver plays the reassembler's part without its safety net: it calls ``parse`` exactly as
``otsentry.flow.reassembly.TcpStream`` does but lets any exception escape and checks the dissect
contract on every call (a result is never 0, never beyond the bytes given).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from otsentry.model import Conn, Event

CONN = Conn("1:fuzz", "tcp", "10.0.0.5", 50212, "10.0.0.9", 502, segment="fuzz")
#: the reassembler's per-direction buffer cap (FlowTable default)
MAX_BUFFER = 262_144


def records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Split a fuzz input into ``(ctl, payload)`` records."""
    pos, n = 0, len(data)
    while pos < n:
        ctl = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 3], "big")
        body = data[pos + 3 : pos + 3 + size]
        pos += 3 + size
        yield ctl, body


def encode(conversation: list[tuple[bool, bytes]]) -> bytes:
    """The fuzz input for a conversation of ``(from_client, payload)`` segments."""
    out = bytearray()
    for from_client, payload in conversation:
        for i in range(0, len(payload), 0xFFFF):
            chunk = payload[i : i + 0xFFFF]
            out += bytes((int(from_client),)) + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out)


@dataclass
class FuzzContext:
    """A FlowContext that keeps the events and counts PDUs; tracing on, like ``dissect``."""

    conn: Conn = CONN
    frame: int = 0
    max_open_transactions: int = 50
    transaction_timeout_ns: int = 30_000_000_000
    events: list[Event] = field(default_factory=list)
    pdu_count: int = 0
    records: int = 0

    @property
    def tracer(self) -> Callable[..., None]:
        return self._trace

    def _trace(self, ctx: Any, protocol: str, direction: str, rec: Any, anomalies: Any) -> None:
        self.records += 1

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def count_pdus(self, n: int = 1) -> None:
        self.pdu_count += n


class ContractError(AssertionError):
    """A dissector broke the dissect contract (no progress, or consumed more than it was given)."""


def run(factory: Callable[[Any], Any], data: bytes) -> FuzzContext:
    """Feed one fuzz input to a fresh dissector; raise on any exception or contract breach."""
    ctx = FuzzContext()
    dissector = factory(ctx)
    bufs = {True: bytearray(), False: bytearray()}
    ts = 1_000_000_000
    for ctl, payload in records(data):
        fc = bool(ctl & 1)
        ctx.frame += 1
        ts += 1_000_000
        if ctl & 2:
            bufs[fc].clear()
            dissector.gap(fc, ts)
        buf = bufs[fc]
        # like the reassembler: a segment parsed in place (bytes) when nothing is buffered
        work: bytes | bytearray = payload if not buf else buf + payload
        pos = 0
        while pos < len(work):
            r = dissector.parse(work, pos, fc, ts)
            if r == 0:
                raise ContractError(f"no progress at {pos} of {len(work)}")
            if r > len(work) - pos:
                raise ContractError(f"consumed {r} of {len(work) - pos}")
            if r < 0:
                break
            pos += r
        buf[:] = work[pos:]
        if len(buf) > MAX_BUFFER:  # the reassembler's overflow: drop and resynchronise
            buf.clear()
            dissector.gap(fc, ts)
        if ctl & 4:
            break
    truncated = getattr(dissector, "truncated", None)
    for fc, buf in bufs.items():
        if buf and truncated is not None:
            truncated(bytes(buf), fc, ts)
    dissector.close(ts + 1)
    return ctx
