"""Per-direction TCP byte streams: ordering, retransmissions, overlaps, gaps, caps.

A stream hands in-order bytes to its flow's dissector. When its buffer is empty (the common case:
whole PDUs per segment) the segment is parsed in place with no copy; only the unconsumed tail is
kept. Out-of-order segments wait in a small per-direction map until the hole fills; when the map
overflows its caps the hole is declared a gap, the dissector is told, and the stream carries on
from the earliest waiting segment. Overlapping retransmissions keep the bytes seen first (what
the receiving stack accepted) and count conflicts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from otsentry.dissect.base import Dissector

_MASK = 0xFFFFFFFF
_HALF = 0x80000000


#: a segment this far (bytes) beyond the expected sequence number is not waiting for a hole to
#: fill but the stream somewhere else (one far behind is dropped as a retransmission, as
#: Wireshark does)
_JUMP = 1 << 20

#: what ``ooo`` and ``ooo_at`` are while nothing waits (nearly always): one shared empty dict,
#: never written to (``_hold``, the only place adding to them, gives a stream its own first),
#: so a stream costs no dict of its own until a segment arrives out of order
_NONE_WAITING: dict = {}  # type: ignore[type-arg]


class Clock(Protocol):
    """Holds the number of the frame being processed (the flow table does)."""

    frame: int


class ReassemblyStats:
    """Counters shared by every stream of a flow table."""

    __slots__ = (
        "bytes_buffered",
        "conflicts",
        "dissector_errors",
        "gap_bytes",
        "gaps",
        "midstream_pickups",
        "no_progress",
        "overflows",
        "overlaps",
        "retransmissions",
        "sequence_jumps",
    )

    def __init__(self) -> None:
        self.bytes_buffered = 0  # bytes held right now across all streams (buffers + out of order)
        self.conflicts = 0  # overlapping bytes that differ from those seen first
        self.dissector_errors = 0  # exceptions caught from a dissector
        self.gaps = 0
        self.gap_bytes = 0
        self.midstream_pickups = 0
        self.no_progress = 0
        self.overflows = 0  # buffers dropped for exceeding a cap
        self.overlaps = 0
        self.retransmissions = 0
        self.sequence_jumps = 0  # segments far outside any plausible window, taken as new data

    def as_dict(self) -> dict[str, int]:
        """Counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}


class TcpStream:
    """One direction of a TCP connection."""

    __slots__ = (
        "buf",
        "clock",
        "dissector",
        "from_client",
        "max_buffer",
        "max_ooo",
        "need",
        "next_seq",
        "ooo",
        "ooo_at",
        "ooo_bytes",
        "stats",
        "total_cap",
    )

    def __init__(
        self,
        from_client: bool,
        stats: ReassemblyStats,
        max_buffer: int,
        max_ooo: int,
        total_cap: int,
        clock: Clock | None = None,
    ) -> None:
        self.from_client = from_client
        self.stats = stats
        self.max_buffer = max_buffer
        self.max_ooo = max_ooo
        self.total_cap = total_cap
        self.dissector: Dissector | None = None
        self.next_seq = -1  # -1 until the ISN (SYN) or the first data segment is seen
        self.buf = bytearray()
        self.need = 0
        self.ooo: dict[int, bytes] = _NONE_WAITING
        #: when each waiting segment arrived: (ts, frame number)
        self.ooo_at: dict[int, tuple[int, int]] = _NONE_WAITING
        #: where the frame number being processed is kept (the flow table)
        self.clock = clock
        self.ooo_bytes = 0

    def syn(self, seq: int) -> None:
        """A SYN fixes the initial sequence number."""
        self.next_seq = (seq + 1) & _MASK

    def segment(self, seq: int, payload: bytes, ts: int) -> None:
        """Take one data segment (non-empty payload) in capture order."""
        nxt = self.next_seq
        if seq == nxt and not self.buf and not self.ooo and self.dissector is not None:
            # the common case: the next bytes, nothing buffered — parse in place
            n = len(payload)
            self.next_seq = (seq + n) & _MASK
            try:
                r = self.dissector.parse(payload, 0, self.from_client, ts)
            except Exception:
                r = -(1 << 62)  # handled by the general path below
            if r == n:
                return
            self._after_first_parse(payload, r, ts)
            return
        if nxt < 0:  # picked up mid-stream: no SYN seen for this direction
            self.stats.midstream_pickups += 1
            self.next_seq = seq
            if self.dissector is not None:
                self._notify_gap(ts)
            nxt = seq
        d = (seq - nxt) & _MASK
        if d == 0:
            self.next_seq = (nxt + len(payload)) & _MASK
            self._deliver(payload, ts)
            if self.ooo:
                self._drain(ts)
        elif d & _HALF:  # starts before next_seq: a retransmission or an overlap
            back = 0x100000000 - d
            if back >= len(payload):
                self.stats.retransmissions += 1
                return
            self.stats.overlaps += 1
            payload = payload[back:]
            self.next_seq = (nxt + len(payload)) & _MASK
            self._deliver(payload, ts)
            if self.ooo:
                self._drain(ts)
        elif d > _JUMP:
            self._jump(seq, payload, ts)
        else:
            self._hold(seq, payload, ts)

    def _jump(self, seq: int, payload: bytes, ts: int) -> None:
        """A segment far from where the stream is (a lost state, injection or fuzzing): take it
        as the stream's new position after a gap, as a mid-stream pickup would."""
        self.stats.sequence_jumps += 1
        if self.ooo:
            self.stats.bytes_buffered -= self.ooo_bytes
            self.ooo = self.ooo_at = _NONE_WAITING
            self.ooo_bytes = 0
        self.next_seq = (seq + len(payload)) & _MASK
        if self.dissector is not None:
            self._notify_gap(ts)
        self._deliver(payload, ts)

    def _hold(self, seq: int, payload: bytes, ts: int) -> None:
        ooo = self.ooo
        if ooo is _NONE_WAITING:
            ooo = self.ooo = {}
            self.ooo_at = {}
        old = ooo.get(seq)
        if old is not None:
            if old != payload[: len(old)]:
                self.stats.conflicts += 1
            if len(payload) <= len(old):
                self.stats.retransmissions += 1
                return
            payload = old + payload[len(old) :]  # keep the bytes seen first
            self.ooo_bytes -= len(old)
            self.stats.bytes_buffered -= len(old)
        ooo[seq] = payload
        self.ooo_at[seq] = (ts, self.clock.frame if self.clock is not None else 0)
        self.ooo_bytes += len(payload)
        self.stats.bytes_buffered += len(payload)
        # one skip may leave later segments waiting beyond further holes: skip until within caps
        while ooo and (
            len(ooo) > self.max_ooo
            or self.ooo_bytes > self.max_buffer
            or self.stats.bytes_buffered > self.total_cap
        ):
            self._skip_hole(ts)

    def _skip_hole(self, ts: int) -> None:
        """Give up on the missing bytes: jump to the earliest waiting segment."""
        nxt = self.next_seq
        first = min(self.ooo, key=lambda s: (s - nxt) & _MASK)
        missing = (first - nxt) & _MASK
        self.stats.gaps += 1
        self.stats.gap_bytes += missing
        self.next_seq = first
        self._notify_gap(ts)
        self._drain(ts)

    def _drain(self, ts: int) -> None:
        """Deliver waiting segments that now start at or before next_seq."""
        ooo = self.ooo
        while ooo:
            nxt = self.next_seq
            seq = min(ooo, key=lambda s: (s - nxt) & _MASK)
            d = (seq - nxt) & _MASK
            if d and not d & _HALF:
                return  # the earliest waiting segment is still beyond a hole
            payload = ooo.pop(seq)
            held_ts, held_frame = self.ooo_at.pop(seq)
            self.ooo_bytes -= len(payload)
            self.stats.bytes_buffered -= len(payload)
            if d:
                back = 0x100000000 - d
                if back >= len(payload):
                    self.stats.retransmissions += 1
                    continue
                self.stats.overlaps += 1
                payload = payload[back:]
            self.next_seq = (self.next_seq + len(payload)) & _MASK
            clock = self.clock
            if clock is None or held_frame <= 0 or held_frame == clock.frame:
                self._deliver(payload, ts)
                continue
            # the bytes of a waiting segment arrived with it: PDUs it completes are reported
            # at that frame and time (as Wireshark does, which never holds segments back)
            now = clock.frame
            clock.frame = held_frame
            try:
                self._deliver(payload, held_ts)
            finally:
                clock.frame = now

    def _deliver(self, payload: bytes, ts: int) -> None:
        if self.dissector is None:
            return
        buf = self.buf
        if not buf:
            pos = self._run(payload, ts)
            if pos < 0:
                self._notify_gap(ts)
            elif pos < len(payload):
                rest = len(payload) - pos
                if rest > self.max_buffer or self.stats.bytes_buffered + rest > self.total_cap:
                    self._overflow(ts)
                    return
                buf.extend(payload if pos == 0 else payload[pos:])
                self.stats.bytes_buffered += rest
            return
        buf.extend(payload)
        self.stats.bytes_buffered += len(payload)
        if len(buf) < self.need:
            if len(buf) > self.max_buffer or self.stats.bytes_buffered > self.total_cap:
                self._overflow(ts)
            return
        pos = self._run(buf, ts)
        if pos < 0:
            self._notify_gap(ts)
            return
        if pos:
            del buf[:pos]
            self.stats.bytes_buffered -= pos
        if len(buf) > self.max_buffer:
            self._overflow(ts)

    def _after_first_parse(self, payload: bytes, r: int, ts: int) -> None:
        """Finish a fast-path segment whose first parse did not consume all of it."""
        if r == -(1 << 62):
            self.stats.dissector_errors += 1
            r = 0
        if r == 0:
            self.stats.no_progress += 1
            self._notify_gap(ts)
            return
        if r > 0:
            pos = r
            more = self._run(payload[pos:], ts) if pos < len(payload) else 0
            if more < 0:
                self._notify_gap(ts)
                return
            pos += more
        else:
            self.need = len(payload) - r
            pos = 0
        rest = len(payload) - pos
        if rest <= 0:
            return
        if rest > self.max_buffer or self.stats.bytes_buffered + rest > self.total_cap:
            self._overflow(ts)
            return
        self.buf.extend(payload if pos == 0 else payload[pos:])
        self.stats.bytes_buffered += rest

    def _run(self, data: bytes | bytearray, ts: int) -> int:
        """Let the dissector consume what it can of ``data``: the bytes consumed, or -1 when it
        could make no progress (the caller drops the rest and resynchronises)."""
        parse = self.dissector.parse  # type: ignore[union-attr]
        fc = self.from_client
        n = len(data)
        pos = 0
        while pos < n:
            try:
                r = parse(data, pos, fc, ts)
            except Exception:  # a dissector bug must not stop the sensor
                self.stats.dissector_errors += 1
                r = 0
            if r > 0:
                pos += r
            elif r < 0:
                self.need = n - pos - r
                return pos
            else:
                self.stats.no_progress += 1
                return -1
        self.need = 0
        return n

    def _overflow(self, ts: int) -> None:
        self.stats.overflows += 1
        self.stats.bytes_buffered -= len(self.buf)
        self.buf.clear()
        self.need = 0
        self._notify_gap(ts)

    def _notify_gap(self, ts: int) -> None:
        if self.buf:
            self.stats.bytes_buffered -= len(self.buf)
            self.buf.clear()
        self.need = 0
        if self.dissector is not None:
            try:
                self.dissector.gap(self.from_client, ts)
            except Exception:
                self.stats.dissector_errors += 1

    def finish(self, ts: int) -> None:
        """The connection ended: deliver what waits beyond holes, release every buffer."""
        while self.ooo:
            self._skip_hole(ts)
        if self.buf:
            self.stats.bytes_buffered -= len(self.buf)
            rest, self.buf = self.buf, bytearray()
            # an incomplete PDU when the connection ended: let the dissector report it
            hook = getattr(self.dissector, "truncated", None)
            if hook is not None:
                try:
                    hook(bytes(rest), self.from_client, ts)
                except Exception:
                    self.stats.dissector_errors += 1
        self.need = 0

    def release(self) -> None:
        """Drop all buffered bytes without delivering them (eviction)."""
        if self.buf or self.ooo:
            self.stats.bytes_buffered -= len(self.buf) + self.ooo_bytes
            self.buf = bytearray()
            self.ooo = self.ooo_at = _NONE_WAITING
            self.ooo_bytes = 0
        self.need = 0
