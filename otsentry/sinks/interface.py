"""The sink contract: ECS documents in, delivered somewhere."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class Stream(StrEnum):
    """Document streams; the NDJSON sink writes one file per stream."""

    EVENTS = "events"
    ALERTS = "alerts"
    ASSETS = "assets"
    STATS = "stats"  # the run's stats document (cluster sinks; stats.json is written apart)


class Sink(Protocol):
    """Takes ECS documents, one stream at a time."""

    def wants(self, stream: Stream) -> bool:
        """Whether documents of this stream go anywhere (else they need not be built)."""
        ...

    def write(self, stream: Stream, doc: Mapping[str, Any]) -> None:
        """Queue or write one document."""
        ...

    def flush(self) -> None:
        """Push out what is queued."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


@runtime_checkable
class ReportingSink(Sink, Protocol):
    """A sink with its own counters, reported in stats.json under ``outputs.<name>``."""

    name: str

    def as_dict(self) -> dict[str, Any]:
        """The sink's counters."""
        ...


@runtime_checkable
class LineSink(Sink, Protocol):
    """A sink that also takes documents already serialised as NDJSON lines: the pipeline hands
    protocol events to it as lines (``otsentry.ecs.event_line``), never building the document."""

    def write_lines(self, stream: Stream, lines: bytes, count: int = 0) -> None:
        """Append documents serialised as NDJSON lines (each ending in a newline); ``count``:
        how many lines, when the caller knows (0: the sink counts them if it needs to)."""
        ...
