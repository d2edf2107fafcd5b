"""What every capture source yields, and the error a broken file raises."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Protocol, Self

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

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 16 + 15  # zlib: gzip wrapper, 32 KiB window; checks each member's CRC and length
_RAW_CHUNK = 256 * 1024
_SALVAGE_STEP = 4096


class SourceError(Exception):
    """A read failure below the capture format (I/O error, broken gzip stream)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileSource:
    """The bytes of a capture file, gunzipped on the fly when the file starts with the gzip magic.

    ``read`` returns the uncompressed stream; ``position`` and ``size`` count bytes on disk.
    Decompression is streamed: memory stays bounded by the chunk size whatever the ratio.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._raw: BinaryIO = open(self.path, "rb", buffering=0)  # noqa: SIM115
        except OSError as err:
            raise CaptureError(self.path, 0, err.strerror or str(err)) from None
        try:
            self.size = os.fstat(self._raw.fileno()).st_size
            first = self._raw.read(2)
        except OSError as err:
            self._raw.close()
            raise CaptureError(self.path, 0, f"read error: {err.strerror or err}") from None
        self.position = len(first)
        self.compressed = first == GZIP_MAGIC
        self._dec = zlib.decompressobj(_GZIP_WBITS) if self.compressed else None
        self._pending = b"" if self.compressed else first
        self._in = first if self.compressed else b""
        self._step = 0  # compressed bytes per decompress call: 0 = all at hand

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the stream), left for the next ``read``."""
        parts = [self._pending]
        have = len(self._pending)
        self._pending = b""
        try:
            while have < n:
                data = self.read(n - have)
                if not data:
                    break
                parts.append(data)
                have += len(data)
        finally:
            self._pending = b"".join(parts)
        return self._pending[:n]

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the uncompressed stream; ``b""`` only at its end."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._dec is None:
            return self._read_raw(n)
        return self._read_gzip(n)

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, or fewer only when the stream ends first."""
        data = self.peek(n)
        self._pending = self._pending[n:]
        return data

    def _read_raw(self, n: int) -> bytes:
        try:
            data = self._raw.read(n)
        except OSError as err:
            raise SourceError(f"read error: {err.strerror or err}") from None
        except ValueError:  # closed
            raise SourceError("read after close") from None
        self.position += len(data)
        return data

    def _read_gzip(self, n: int) -> bytes:
        dec = self._dec
        assert dec is not None
        while True:
            if self._in:
                data, self._in = self._in, b""
            else:
                data = self._read_raw(_RAW_CHUNK)
                if not data:
                    if dec.eof:
                        return b""
                    raise SourceError("truncated gzip stream")
            if dec.eof:  # another gzip member follows (concatenated .gz files)
                dec = self._dec = zlib.decompressobj(_GZIP_WBITS)
            step = self._step
            feed, rest = (data, b"") if step == 0 else (data[:step], data[step:])
            saved = dec.copy() if step != 1 else None
            try:
                out = dec.decompress(feed, n)
            except zlib.error as err:
                if saved is None:
                    raise SourceError(f"corrupt gzip stream: {err}") from None
                # zlib drops the output of a failing call: go back and feed smaller pieces so
                # that everything before the damage still comes out.
                dec = self._dec = saved
                self._in = data
                self._step = _SALVAGE_STEP if step == 0 else 1
                continue
            tail = dec.unused_data if dec.eof else dec.unconsumed_tail
            self._in = tail + rest if rest else tail
            if out:
                return out

    def close(self) -> None:
        """Release the file; ``position`` keeps its last value."""
        self._raw.close()
        self._pending = self._in = b""


class FileReader:
    """Closing and ``with`` support shared by the file readers (which set ``_src``)."""

    _src: FileSource

    def close(self) -> None:
        """Release the file; a running iteration fails with CaptureError at its next read."""
        self._src.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
