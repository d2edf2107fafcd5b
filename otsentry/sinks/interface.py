"""The sink contract: ECS documents in, delivered somewhere."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol


class Stream(StrEnum):
    """Document streams; the NDJSON sink writes one file per stream."""

    EVENTS = "events"
    ALERTS = "alerts"
    ASSETS = "assets"


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
