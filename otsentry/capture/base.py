"""What every capture source yields, and the error a broken file raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

# Link-layer header types (https://www.tcpdump.org/linktypes.html) that the decoder handles.
LINKTYPE_NULL = 0  # BSD loopback, 4-byte address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4 or IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback, address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# One captured frame: (timestamp in nanoseconds since the epoch, link type, frame bytes).
Frame = tuple[int, int, bytes]


class CaptureError(Exception):
    """A capture file that cannot be read on: names the file, the byte offset and the reason."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class CaptureReader(Protocol):
    """An open capture: iterate it for frames in file order."""

    path: str
    #: size in bytes of the file on disk (compressed size for gzip), for progress bars
    size: int

    @property
    def position(self) -> int:
        """Bytes of the file on disk consumed so far (0..size)."""
        ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
