"""The outage spool: documents the cluster could not take, on disk, in order, bounded.

Layout under ``<output dir>/spool/``: one directory per data stream (``logs-otsentry.alert-default``),
each a FIFO of segment files ``00000001.ndjson``, ``00000002.ndjson``… written in Elasticsearch's
``_bulk`` format (a ``create`` action line with ``_index`` and ``_id``, then the document), so a
segment can also be sent by hand with ``curl --data-binary @segment …/_bulk``. A ``cursor`` file
per directory records how far delivery got (segment and byte offset); it is advanced only after
the cluster acknowledged a batch, so a crash resends at most one batch, which the cluster answers
with 409 for what it already has. Documents the cluster refused for good (a mapping error) go to
``rejected.ndjson`` with the reason, never back into the queue.

The spool is bounded by ``max_bytes``. ``drop-oldest`` deletes whole oldest segments, protocol
events before alerts, assets and stats; ``drop-newest`` refuses new documents. Either way the
documents lost are counted (``dropped``) and logged. A lock file keeps two processes (a sensor and
``otsentry spool drain``) from working on one spool at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from otsentry.config import SpoolConfig

log = logging.getLogger("otsentry.spool")

_SEGMENT_SUFFIX = ".ndjson"
_CURSOR = "cursor"
REJECTED = "rejected.ndjson"


class SpoolBusy(Exception):
    """Another process holds the spool's lock."""


class SpoolCorrupt(Exception):
    """A spool file could not be parsed (named with its byte offset)."""

    def __init__(self, path: Path, offset: int, problem: str) -> None:
        super().__init__(f"{path}: offset {offset}: {problem}")
        self.path = path
        self.offset = offset


@dataclass(slots=True)
class SpoolItem:
    """One document on its way to the cluster."""

    index: str
    doc_id: str
    source: bytes  # the document as compact JSON


@dataclass(slots=True)
class SpoolBatch:
    """Items read from one stream directory, and where the cursor goes once they are delivered."""

    stream: str
    items: list[SpoolItem]
    segment: str
    end_offset: int


def _important(stream: str) -> bool:
    """Alerts, assets and stats are kept longest; protocol events are dropped first."""
    return not stream.startswith("logs-otsentry.") or stream.split("-")[1] in (
        "otsentry.alert",
        "otsentry.asset",
    )


class Spool:
    """A directory of per-stream FIFOs; see the module docstring."""

    def __init__(self, root: Path, config: SpoolConfig | None = None, *, lock: bool = True) -> None:
        self.root = root
        self.config = config or SpoolConfig()
        root.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[bytes] | None = None
        if lock:
            self._lock()
        #: stream → [segment names, oldest first]
        self._segments: dict[str, list[str]] = {}
        #: stream → (segment, offset) delivered so far
        self._cursors: dict[str, tuple[str, int]] = {}
        self._pending: dict[str, int] = {}
        self._bytes = 0
        self.dropped = 0
        self.spooled = 0
        self.rejected = 0
        self._writer: dict[str, tuple[str, IO[bytes]]] = {}
        #: bytes written to each stream's open segment (no tell(): it costs a syscall)
        self._written: dict[str, int] = {}
        self._scan()

    # -- opening -----------------------------------------------------------------------------
    def _lock(self) -> None:
        f = open(self.root / "lock", "a+b")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().decode(errors="replace").strip() or "another process"
            f.close()
            raise SpoolBusy(f"{self.root} is in use by {holder}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n".encode())
        f.flush()
        self._lock_file = f

    def _scan(self) -> None:
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            segments = sorted(p.name for p in d.glob(f"*{_SEGMENT_SUFFIX}"))
            if not segments:
                continue
            stream = d.name
            cursor = self._read_cursor(d)
            if cursor is not None and cursor[0] not in segments:
                cursor = None
            self._segments[stream] = segments
            if cursor is not None:
                self._cursors[stream] = cursor
            count = 0
            for seg in segments:
                path = d / seg
                size = path.stat().st_size
                self._bytes += size
                start = cursor[1] if cursor is not None and cursor[0] == seg else 0
                if cursor is not None and seg < cursor[0]:
                    continue
                count += _records_from(path, start)
            self._pending[stream] = count

    @staticmethod
    def _read_cursor(d: Path) -> tuple[str, int] | None:
        try:
            name, offset = (d / _CURSOR).read_text().split()
            return name, int(offset)
        except (OSError, ValueError):
            return None

    # -- state -------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Documents waiting for delivery."""
        return sum(self._pending.values())

    @property
    def size(self) -> int:
        """Bytes the spool's segments take on disk."""
        return self._bytes

    def streams(self) -> list[str]:
        """Streams with documents waiting, alerts first."""
        waiting = [s for s, n in self._pending.items() if n > 0]
        return sorted(waiting, key=lambda s: (not _important(s), s))

    # -- writing -----------------------------------------------------------------------------
    def append(self, items: Iterable[SpoolItem]) -> int:
        """Queue ``items`` at the end of their streams; returns how many were dropped."""
        dropped = 0
        # one write per stream and call: every syscall releases the GIL, and getting it back
        # from a busy pipeline thread can take a whole switch interval
        chunks: dict[str, list[bytes]] = {}
        for item in items:
            record = orjson.dumps({"create": {"_index": item.index, "_id": item.doc_id}})
            record += b"\n" + item.source + b"\n"
            if self._bytes + len(record) > self.config.max_bytes:
                for stream, records in chunks.items():  # on disk before segments may go
                    self._write(stream, records)
                    records.clear()
                if not self._room_for(len(record)):
                    dropped += 1
                    continue
            stream = item.index
            if self._segment_full(stream, len(record)):
                self._write(stream, chunks.pop(stream, None))
                self._new_segment(stream)
            chunks.setdefault(stream, []).append(record)
            self._written[stream] += len(record)
            self._bytes += len(record)
            self._pending[stream] = self._pending.get(stream, 0) + 1
            self.spooled += 1
        for stream, records in chunks.items():
            self._write(stream, records)
        for stream in chunks:
            writer = self._writer.get(stream)
            if writer is not None:
                writer[1].flush()
                os.fsync(writer[1].fileno())
        if dropped:
            self.dropped += dropped
            log.warning("spool full (%d bytes): %d new documents dropped", self._bytes, dropped)
        return dropped

    def _room_for(self, size: int) -> bool:
        limit = self.config.max_bytes
        if self._bytes + size <= limit:
            return True
        if self.config.when_full == "drop-newest":
            return False
        while self._bytes + size > limit:
            if not self._drop_oldest_segment():
                return False
        return True

    def _drop_oldest_segment(self) -> bool:
        candidates = [s for s, segs in self._segments.items() if segs]
        if not candidates:
            return False
        # protocol events first; among equals the stream holding the most
        stream = min(candidates, key=lambda s: (_important(s), -len(self._segments[s]), s))
        seg = self._segments[stream][0]
        path = self.root / stream / seg
        lost = self._documents_after_cursor(stream, seg)
        writer = self._writer.get(stream)
        if writer is not None and writer[0] == seg:
            writer[1].close()
            del self._writer[stream]
        size = path.stat().st_size
        path.unlink()
        self._segments[stream].pop(0)
        self._bytes -= size
        self._pending[stream] -= lost
        self.dropped += lost
        self._cursors.pop(stream, None)
        with contextlib.suppress(OSError):
            (self.root / stream / _CURSOR).unlink()
        log.warning("spool full: dropped %s/%s (%d documents)", stream, seg, lost)
        return True

    def _documents_after_cursor(self, stream: str, seg: str) -> int:
        cursor = self._cursors.get(stream)
        start = cursor[1] if cursor is not None and cursor[0] == seg else 0
        return _records_from(self.root / stream / seg, start)

    def _segment_full(self, stream: str, size: int) -> bool:
        """Whether a record of ``size`` bytes needs a new segment (or there is none open)."""
        return stream not in self._writer or (
            self._written[stream] > 0 and self._written[stream] + size > self.config.segment_bytes
        )

    def _write(self, stream: str, records: list[bytes] | None) -> None:
        writer = self._writer.get(stream)
        if records and writer is not None:
            writer[1].write(b"".join(records))

    def _new_segment(self, stream: str) -> None:
        writer = self._writer.get(stream)
        segments = self._segments.setdefault(stream, [])
        if writer is not None:
            writer[1].close()
        d = self.root / stream
        d.mkdir(exist_ok=True)
        last = int(segments[-1].removesuffix(_SEGMENT_SUFFIX)) if segments else 0
        name = f"{last + 1:08d}{_SEGMENT_SUFFIX}"
        f = open(d / name, "ab")  # noqa: SIM115 - kept open while the segment fills
        segments.append(name)
        self._writer[stream] = (name, f)
        self._written[stream] = 0

    def reject(self, item: SpoolItem, reason: str) -> None:
        """Keep a document the cluster refused for good, with the reason, in ``rejected.ndjson``."""
        line = orjson.dumps(
            {"_index": item.index, "_id": item.doc_id, "reason": reason},
        )
        with open(self.root / REJECTED, "ab") as f:
            f.write(line[:-1] + b',"document":' + item.source + b"}\n")
        self.rejected += 1

    # -- reading -----------------------------------------------------------------------------
    def read(self, max_items: int) -> SpoolBatch | None:
        """The next items of the most important stream with documents waiting (not removed
        until ``commit``)."""
        for stream in self.streams():
            batch = self._read_stream(stream, max_items)
            if batch is not None:
                return batch
        return None

    def _read_stream(self, stream: str, max_items: int) -> SpoolBatch | None:
        d = self.root / stream
        segments = self._segments.get(stream, [])
        cursor = self._cursors.get(stream)
        for seg in segments:
            if cursor is not None and seg < cursor[0]:
                continue
            start = cursor[1] if cursor is not None and cursor[0] == seg else 0
            writer = self._writer.get(stream)
            if writer is not None and writer[0] == seg:
                writer[1].flush()
            items, end = self._parse(d / seg, start, max_items)
            if items:
                return SpoolBatch(stream, items, seg, end)
        return None

    @staticmethod
    def _parse(path: Path, start: int, max_items: int) -> tuple[list[SpoolItem], int]:
        items: list[SpoolItem] = []
        with open(path, "rb") as f:
            f.seek(start)
            offset = start
            while len(items) < max_items:
                action = f.readline()
                if not action:
                    break
                source = f.readline()
                if not source.endswith(b"\n"):
                    break  # a half-written record at the end: not ours to read yet
                try:
                    meta = orjson.loads(action)["create"]
                    items.append(SpoolItem(meta["_index"], meta["_id"], source[:-1]))
                except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                    raise SpoolCorrupt(path, offset, str(exc)) from None
                offset += len(action) + len(source)
        return items, offset

    def commit(self, batch: SpoolBatch) -> None:
        """The batch was delivered (or rejected for good): move the cursor past it."""
        stream = batch.stream
        d = self.root / stream
        self._pending[stream] = max(0, self._pending.get(stream, 0) - len(batch.items))
        segments = self._segments[stream]
        path = d / batch.segment
        writer = self._writer.get(stream)
        finished = batch.end_offset >= path.stat().st_size and not (
            writer is not None and writer[0] == batch.segment
        )
        if finished:
            # every segment up to this one is delivered
            while segments and segments[0] <= batch.segment:
                old = segments.pop(0)
                self._bytes -= (d / old).stat().st_size
                (d / old).unlink()
            self._cursors.pop(stream, None)
            with contextlib.suppress(OSError):
                (d / _CURSOR).unlink()
            if self._pending[stream] == 0 and not segments:
                self._pending.pop(stream, None)
            return
        self._cursors[stream] = (batch.segment, batch.end_offset)
        tmp = d / f"{_CURSOR}.tmp"
        tmp.write_text(f"{batch.segment} {batch.end_offset}\n")
        os.replace(tmp, d / _CURSOR)
        if self._pending[stream] == 0 and writer is not None and writer[0] == batch.segment:
            # fully read, still the open segment: start afresh so the directory can empty
            writer[1].close()
            del self._writer[stream]
            self.commit(batch)

    def quarantine(self, problem: SpoolCorrupt) -> None:
        """Set a segment that cannot be parsed aside (renamed ``*.corrupt``, never deleted) and
        count what it held after the cursor as lost."""
        path = problem.path
        stream, seg = path.parent.name, path.name
        lost = self._documents_after_cursor(stream, seg)
        writer = self._writer.get(stream)
        if writer is not None and writer[0] == seg:
            writer[1].close()
            del self._writer[stream]
        self._bytes -= path.stat().st_size
        path.rename(path.with_suffix(".corrupt"))
        self._segments[stream].remove(seg)
        self._pending[stream] = max(0, self._pending.get(stream, 0) - lost)
        self.dropped += lost
        self._cursors.pop(stream, None)
        with contextlib.suppress(OSError):
            (path.parent / _CURSOR).unlink()
        log.error(
            "spool segment %s cannot be read: set aside as %s", path, path.with_suffix(".corrupt")
        )

    def close(self) -> None:
        """Flush and close segment files, release the lock."""
        for _, f in self._writer.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        self._writer = {}
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters for stats.json."""
        return {
            "documents": self.pending,
            "bytes": self._bytes,
            "spooled": self.spooled,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "streams": {s: n for s, n in sorted(self._pending.items()) if n},
        }


def _records_from(path: Path, start: int) -> int:
    """Documents in a segment from byte ``start`` on (two lines each: action, document)."""
    with open(path, "rb") as f:
        f.seek(start)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) // 2


def iter_rejected(root: Path) -> Iterator[dict[str, Any]]:
    """The documents a cluster refused for good (``rejected.ndjson``), oldest first."""
    path = root / REJECTED
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)
