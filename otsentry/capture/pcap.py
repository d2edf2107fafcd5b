"""Classic libpcap files: microsecond and nanosecond variants, either byte order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from struct import Struct

from otsentry.accel import SPEEDUPS
from otsentry.capture.base import CaptureError, FileReader, FileSource, Frame, SourceError

#: file magic (as stored) → (struct byte order, nanosecond timestamps)
PCAP_MAGICS: dict[bytes, tuple[str, bool]] = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
#: largest captured length accepted in a record (libpcap's and Wireshark's default maximum)
MAX_CAPLEN = 256 * 1024
#: bytes asked of the file per read
CHUNK_SIZE = 1 << 20

_LINKTYPE_MASK = 0x03FFFFFF  # upper bits may carry FCS-length flags


class PcapReader(FileReader):
    """Frames of a classic pcap file, in file order.

    The file header is read at construction (a zero-byte file is an empty capture); records are
    read in large chunks. A broken record raises ``CaptureError`` at its offset after every frame
    before it has been yielded.
    """

    def __init__(
        self, source: FileSource | str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE
    ) -> None:
        src = source if isinstance(source, FileSource) else FileSource(source)
        self._src = src
        self._chunk_size = max(chunk_size, 1)
        self._started = False
        self.path = src.path
        self.size = src.size
        #: link type of every frame (``None`` for a zero-byte file)
        self.linktype: int | None = None
        self.snaplen = 0
        self.nanosecond = False
        self.version = (0, 0)
        self._record = Struct("<III4x")  # seconds, fraction, captured length
        self._big_endian = False
        self._share = (0, 1)
        self._numbers: deque[int] | None = None
        try:
            self._read_header()
        except BaseException:
            src.close()
            raise

    def _read_header(self) -> None:
        try:
            head = self._src.read_exact(FILE_HEADER_LEN)
        except SourceError as err:
            raise CaptureError(self.path, 0, err.reason) from None
        if not head:
            return
        magic = head[:4]
        if magic not in PCAP_MAGICS:
            raise CaptureError(self.path, 0, f"not a pcap file (magic 0x{magic.hex()})")
        if len(head) < FILE_HEADER_LEN:
            raise CaptureError(
                self.path, 0, f"truncated file header: {len(head)} of {FILE_HEADER_LEN} bytes"
            )
        order, self.nanosecond = PCAP_MAGICS[magic]
        major, minor, _zone, _sigfigs, snaplen, network = Struct(order + "HHiIII").unpack_from(
            head, 4
        )
        if major < 2:
            raise CaptureError(self.path, 0, f"unsupported pcap version {major}.{minor}")
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype = network & _LINKTYPE_MASK
        self._record = Struct(order + "III4x")
        self._big_endian = order == ">"

    @property
    def position(self) -> int:
        """Bytes of the file on disk consumed so far (0..size)."""
        return self._src.position

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError(f"{self.path}: a capture reader can be iterated only once")
        self._started = True
        numbers = self._numbers
        if numbers is None or SPEEDUPS is not None:
            return self._frames()
        # imported here: split imports decode, and decode this module
        from otsentry.capture.split import share_frames

        return share_frames(self._frames(), *self._share, numbers.append)

    def keep_share(self, worker: int, workers: int) -> Iterator[int]:
        """From now on yield only the frames that fall to ``worker`` of ``workers`` (as
        ``split.keep_share``); returns the numbers (from 1) those frames have in the file: take
        one after each frame. Call before iterating."""
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is not one of 0..{workers - 1}")
        if self._started:
            raise RuntimeError(f"{self.path}: choose the share before reading")
        self._share = (worker, workers)
        numbers = self._numbers = deque()
        return iter(numbers.popleft, -1)

    def _frames(self) -> Iterator[Frame]:
        src = self._src
        lt = self.linktype
        if lt is None:
            src.close()
            return
        path = self.path
        read = src.read
        unpack_from = self._record.unpack_from
        frac_ns = 1 if self.nanosecond else 1000
        limit = MAX_CAPLEN
        chunk = self._chunk_size
        worker, workers = self._share
        numbers = self._numbers  # set by keep_share; only the compiled loop fills it here
        scan = SPEEDUPS.scan if SPEEDUPS is not None else None
        big_endian = self._big_endian
        number = 0  # records walked (compiled loop)
        buf = b""
        base = FILE_HEADER_LEN  # stream offset of buf[0]
        pos = end = 0
        try:
            while True:
                stop = end - RECORD_HEADER_LEN
                if scan is not None:
                    frames: list[Frame] = []
                    kept: list[int] | None = [] if numbers is not None else None
                    pos, number = scan(
                        buf, pos, lt, big_endian, frac_ns, limit, worker, workers, number,
                        frames, kept,
                    )  # fmt: skip
                    if numbers is not None and kept is not None:
                        numbers.extend(kept)
                    yield from frames
                else:
                    while pos <= stop:
                        sec, frac, caplen = unpack_from(buf, pos)
                        start = pos + 16
                        nxt = start + caplen
                        if nxt > end or caplen > limit:
                            break
                        yield (sec * 1_000_000_000 + frac * frac_ns, lt, buf[start:nxt])
                        pos = nxt
                # The record at pos is incomplete in the window, or too long.
                need = RECORD_HEADER_LEN
                if pos <= stop:
                    caplen = unpack_from(buf, pos)[2]
                    if caplen > limit:
                        raise CaptureError(
                            path, base + pos, f"record length {caplen} exceeds {limit}-byte limit"
                        )
                    need += caplen
                have = end - pos
                try:
                    data = read(max(chunk, need - have))
                except SourceError as err:
                    raise CaptureError(path, base + pos, err.reason) from None
                if not data:
                    if not have:
                        return
                    if have < RECORD_HEADER_LEN:
                        reason = f"truncated record header: {have} of {RECORD_HEADER_LEN} bytes"
                    else:
                        reason = f"truncated record: {have} of {need} bytes"
                    raise CaptureError(path, base + pos, reason)
                buf = buf[pos:] + data if have else data
                base += pos
                pos = 0
                end = len(buf)
        finally:
            src.close()
