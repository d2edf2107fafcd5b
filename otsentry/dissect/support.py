"""Pieces every dissector needs: skipped-byte runs and events that stand alone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otsentry.model import Conn, Direction, Envelope, Event

_SAMPLE = 32  # bytes of a skipped run kept, as hex


class SkippedBytes:
    """Runs of bytes a dissector skips as not its protocol: one report per run and direction."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[bool, list[Any]] = {}

    def start(
        self,
        from_client: bool,
        data: bytes | bytearray,
        pos: int,
        ts: int,
        frame: int,
        why: tuple[str, ...] = (),
    ) -> None:
        """A run begins at ``data[pos]`` (nothing happens when one is already open)."""
        if from_client not in self._runs:
            sample = bytes(data[pos : pos + _SAMPLE]).hex()
            self._runs[from_client] = [0, ts, frame, sample, why]

    def count(self, from_client: bool, n: int) -> None:
        """``n`` more bytes skipped (counted only inside a run)."""
        run = self._runs.get(from_client)
        if run is not None:
            run[0] += n

    def skip_to_tail(self, from_client: bool, start: int, n: int, header: int) -> int:
        """No header found in ``data[start:n]``: skip all but the last ``header - 1`` bytes
        (they may begin one), counting them, or ask for more bytes when there are too few."""
        keep = n - (header - 1)
        if keep <= start:
            return (n - start) - header
        self.count(from_client, keep - start)
        return keep - start

    def take(self, from_client: bool) -> tuple[dict[str, Any], int, int, tuple[str, ...]] | None:
        """End the direction's run: (fields, ts, frame, why), or None when none was open."""
        run = self._runs.pop(from_client, None)
        if run is None:
            return None
        count, ts, frame, sample, why = run
        return {"skipped_bytes": count, "sample": sample}, ts, frame, why


def standalone(
    protocol: str,
    conn: Conn,
    action: str,
    fields: Mapping[str, Any],
    anomalies: tuple[str, ...],
    ts: int,
    frame: int,
    from_client: bool,
) -> Event:
    """An event of one PDU or one run of bytes, with no counterpart: malformed or skipped
    bytes, connection steps, one-way messages. Its frame is kept as the request or response
    frame, by the side that sent it."""
    direction = Direction.REQUEST if from_client else Direction.RESPONSE
    record = {**fields, "request_frame" if from_client else "response_frame": frame}
    return Event(Envelope(ts, conn, protocol, direction), action, record, anomalies, "unknown")
