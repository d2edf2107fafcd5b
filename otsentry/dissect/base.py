"""The dissector contract.

A dissector is created per flow by its ``DissectorSpec.factory`` and fed the reassembled bytes of
one direction at a time. It never buffers on its own: ``parse`` says how much it consumed or how
much more it needs, and the reassembler keeps the rest.

``parse(data, start, from_client, ts)`` looks at ``data[start:]`` and returns

* ``n > 0``  — it consumed ``n`` bytes (one or more PDUs, or junk skipped while resynchronising);
  it is called again with the rest;
* ``n < 0``  — it needs ``-n`` more bytes than it was given before it can progress;
* ``0``      — it can make no progress: a contract violation, counted, and the stream is
  resynchronised (buffer dropped, ``gap`` called).

``gap(from_client, ts)`` says bytes were lost (or the stream was picked up mid-way): the next
``parse`` of that direction starts at an arbitrary byte, so the dissector resynchronises on its
header. ``close(ts)`` ends the flow: unanswered requests are flushed as events. A dissector may
also define ``truncated(data, from_client, ts)``, called when a direction ends with bytes it asked
more for (an incomplete PDU), before ``close``.

Malformed input becomes an anomaly on an event (a stable snake_case id such as
``modbus.invalid_length``), never an exception that escapes; the framework still catches one,
counts it and resynchronises, so a dissector bug cannot stop the sensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from otsentry.model import Conn, Event

# What a dissector reads: reassembled bytes (a bytearray while buffered).
Buffer = bytes | bytearray
#: ``tracer(ctx, protocol, direction, record, anomalies)``: one call per PDU
Tracer = Callable[["FlowContext", str, str, Mapping[str, Any], tuple[str, ...]], None]


class Dissector(Protocol):
    """Per-flow protocol parser state."""

    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        """Consume bytes from ``data[start:]``; see the module docstring for the result."""
        ...

    def gap(self, from_client: bool, ts: int) -> None:
        """Bytes of this direction were lost: resynchronise on the next parse."""
        ...

    def close(self, ts: int) -> None:
        """The flow ended (FIN/RST, idle, eviction or end of capture)."""
        ...


class FlowContext(Protocol):
    """What the framework gives a dissector: the connection and an event sink."""

    @property
    def conn(self) -> Conn:
        """The flow's identity (client/server endpoints, segment, Community ID)."""
        ...

    def emit(self, event: Event) -> None:
        """Hand one normalized event to the fan-out (rules, baseline, outputs)."""
        ...

    def count_pdus(self, n: int = 1) -> None:
        """Count PDUs parsed (feeds the per-protocol PDU counters in stats)."""
        ...

    @property
    def frame(self) -> int:
        """1-based number of the packet being processed (where a PDU's last byte arrived)."""
        ...

    @property
    def max_open_transactions(self) -> int:
        """Cap on requests waiting for a response in this flow."""
        ...

    @property
    def transaction_timeout_ns(self) -> int:
        """How long a request waits for its response before it is reported unanswered."""
        ...

    @property
    def tracer(self) -> Tracer | None:
        """Called once per PDU when set (``otsentry dissect``); None in the sensor."""
        ...


@dataclass(frozen=True, slots=True)
class DissectorSpec:
    """How a protocol registers: its name, default ports, probe and per-flow factory."""

    name: str
    ports: tuple[int, ...]
    factory: Callable[[FlowContext], Dissector]
    #: recognises the protocol from a flow's first payload bytes on any port:
    #: ``probe(payload, from_client) -> bool``
    probe: Callable[[bytes, bool], bool] | None = None
    transport: str = "tcp"
    description: str = ""
    #: the ``protocol`` names its PDU records carry in ``otsentry dissect`` (default: ``name``)
    dump_protocols: tuple[str, ...] = ()
