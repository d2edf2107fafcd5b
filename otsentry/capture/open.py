"""Opening capture files by their magic bytes, expanding paths, replaying files in time order."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from heapq import heapify, heappop, heapreplace
from pathlib import Path

from otsentry.capture.base import CaptureError, CaptureReader, FileSource, Frame, SourceError
from otsentry.capture.pcap import PCAP_MAGICS, PcapReader
from otsentry.capture.pcapng import PCAPNG_MAGIC, PcapngReader

#: first four bytes (uncompressed) of the files open_capture reads
CAPTURE_MAGICS = frozenset((*PCAP_MAGICS, PCAPNG_MAGIC))


def _not_capture(path: str, head: bytes) -> CaptureError:
    return CaptureError(path, 0, f"not a pcap or pcapng file (magic 0x{head.hex()})")


def _peek_magic(src: FileSource) -> bytes:
    try:
        return src.peek(4)
    except SourceError as err:
        src.close()
        raise CaptureError(src.path, 0, err.reason) from None


def open_capture(path: str | os.PathLike[str]) -> CaptureReader:
    """Open a pcap or pcapng file, gzip-compressed or not, chosen by its magic bytes alone.

    A zero-byte file opens as an empty capture. Raises ``CaptureError`` for anything else.
    """
    src = FileSource(path)
    head = _peek_magic(src)
    if head == PCAPNG_MAGIC:
        return PcapngReader(src)
    if not head or head in PCAP_MAGICS:
        return PcapReader(src)
    src.close()
    raise _not_capture(src.path, head)


def capture_magic(path: str | os.PathLike[str]) -> bytes:
    """The first four bytes of a file's (uncompressed) content, fewer for a shorter file."""
    src = FileSource(path)
    try:
        return _peek_magic(src)
    finally:
        src.close()


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Capture files named by ``paths``, in order, each listed once.

    A directory stands for the capture files below it (recursively, sorted; symbolic links to
    directories are not followed); its files that do not start with a capture magic, gzipped or
    not, are skipped. A file named explicitly must be a capture (or empty), else ``CaptureError``.
    """
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append(path)

    for arg in paths:
        path = Path(arg)
        if path.is_dir():
            files: list[Path] = []
            for root, _dirs, names in os.walk(path):
                files.extend(Path(root, name) for name in names)
            for file in sorted(files):
                if file.is_file() and _is_capture_in_dir(file):
                    add(file)
        else:
            head = capture_magic(path)
            if head and head not in CAPTURE_MAGICS:
                raise _not_capture(str(path), head)
            add(path)
    return found


def _is_capture_in_dir(path: Path) -> bool:
    try:
        return capture_magic(path) in CAPTURE_MAGICS
    except CaptureError as err:
        if err.reason.startswith(("truncated gzip", "corrupt gzip")):
            return False
        raise


def merge_frames(
    readers: Iterable[CaptureReader],
    keep_going: bool,
    on_error: Callable[[CaptureError], None],
) -> Iterator[Frame]:
    """Frames of several captures in timestamp order; each capture's frames stay in file order.

    Equal timestamps come in the order of ``readers``. When a reader raises ``CaptureError``,
    ``on_error`` is called with it; then with ``keep_going`` that reader is dropped and the others
    go on, else the error propagates. Readers are closed as they end, and all of them when the
    merge ends or is abandoned.
    """
    pending = list(readers)
    try:
        if len(pending) == 1:
            try:
                yield from pending[0]
            except CaptureError as err:
                on_error(err)
                if not keep_going:
                    raise
            return
        heap: list[tuple[int, int, Frame, Iterator[Frame]]] = []
        for index, reader in enumerate(pending):
            it = iter(reader)
            try:
                frame = next(it)
            except StopIteration:
                reader.close()
                continue
            except CaptureError as err:
                reader.close()
                on_error(err)
                if not keep_going:
                    raise
                continue
            heap.append((frame[0], index, frame, it))
        heapify(heap)
        while len(heap) > 1:
            _ts, index, frame, it = heap[0]
            yield frame
            try:
                frame = next(it)
            except StopIteration:
                heappop(heap)
                pending[index].close()
                continue
            except CaptureError as err:
                heappop(heap)
                pending[index].close()
                on_error(err)
                if not keep_going:
                    raise
                continue
            heapreplace(heap, (frame[0], index, frame, it))
        if heap:
            _ts, index, frame, it = heap[0]
            yield frame
            try:
                yield from it
            except CaptureError as err:
                on_error(err)
                if not keep_going:
                    raise
    finally:
        for reader in pending:
            reader.close()
