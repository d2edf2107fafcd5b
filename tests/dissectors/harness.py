"""A flow context for dissector tests: real TCP reassembly, collected events and PDUs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otsentry.flow.reassembly import ReassemblyStats, TcpStream
from otsentry.model import Conn, Event

CONN = Conn("1:test", "tcp", "10.0.0.5", 50212, "10.0.0.9", 502, segment="lab")


@dataclass
class FlowHarness:
    """A FlowContext for one flow: collects events and traced PDUs; the reassembler is real.

    ``factory`` makes the dissector under test (a class taking the context).
    """

    conn: Conn = field(default_factory=lambda: CONN)
    frame: int = 0
    max_open_transactions: int = 500
    transaction_timeout_ns: int = 30_000_000_000
    events: list[Event] = field(default_factory=list)
    pdus: list[dict[str, Any]] = field(default_factory=list)
    pdu_count: int = 0
    factory: Any = None
    session: Any = field(init=False)
    streams: dict[bool, TcpStream] = field(init=False)
    seq: dict[bool, int] = field(init=False)

    def __post_init__(self) -> None:
        self.session = self.factory(self)
        stats = ReassemblyStats()
        self.streams = {}
        for fc in (True, False):
            stream = TcpStream(fc, stats, 262_144, 64, 1 << 27)
            stream.dissector = self.session
            stream.syn(999)
            self.streams[fc] = stream
        self.seq = {True: 1000, False: 1000}

    @property
    def tracer(self) -> Any:
        return self._trace

    def _trace(
        self,
        ctx: Any,
        protocol: str,
        direction: str,
        rec: Mapping[str, Any],
        anomalies: tuple[str, ...],
    ) -> None:
        self.pdus.append(
            {
                "frame": self.frame,
                "protocol": protocol,
                "direction": direction,
                **rec,
                "anomalies": anomalies,
            }
        )

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def count_pdus(self, n: int = 1) -> None:
        self.pdu_count += n

    def send(self, from_client: bool, payload: bytes, ts: int = 0) -> None:
        """One TCP segment, in order."""
        self.frame += 1
        self.streams[from_client].segment(self.seq[from_client], payload, ts)
        self.seq[from_client] += len(payload)

    def skip(self, from_client: bool, n: int, ts: int = 0) -> None:
        """Lose ``n`` bytes of a direction (a capture drop): the next segment leaves a hole."""
        self.seq[from_client] += n

    def close(self, ts: int = 0) -> None:
        for stream in self.streams.values():
            stream.finish(ts)
        self.session.close(ts)

    def by_direction(self, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.pdus if p["direction"] == direction]
