"""The Elasticsearch / OpenSearch sink: bulk ``create`` into data streams, spool on outage.

Documents are batched on the pipeline's thread and sent by one sender thread with the client
library's ``helpers.streaming_bulk``: ``create`` operations with ``_id`` = ``event.id`` (a resend
is a 409, counted as "already there"), the helper retrying 429 answers with exponential backoff,
a partial batch sent after ``flush_after_seconds`` so a quiet network does not hold alerts back,
and ``event.ingested`` set when the document is sent.

Each item's answer is classified: ok, duplicate (409), retryable (429 after the helper's retries,
5xx, 401/403/404 — the cluster or its setup is at fault, not the document) and fatal (any other
4xx, e.g. a mapping conflict: logged with the document id and kept in ``spool/rejected.ndjson``).
Whatever is retryable, and everything in flight when the connection fails, goes to the spool in
order; while the spool holds documents, new ones queue behind them, and the sender drains the
spool whenever the cluster answers again (probing every ``retry_interval`` seconds).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from otsentry.sinks.clients import ClusterClient, describe_error
from otsentry.sinks.interface import Stream
from otsentry.sinks.routing import target
from otsentry.sinks.spool import Spool, SpoolBatch, SpoolCorrupt, SpoolItem

log = logging.getLogger("otsentry.sinks")

#: item statuses the sink keeps for a later try (the document is fine, the cluster is not)
RETRYABLE_4XX = frozenset({401, 403, 404, 408, 413, 429})

_STOP = object()
_LOGGED_REJECTIONS = 5
#: at close, the longest wait for one more try at a cluster that just failed
_CLOSE_RETRY = 1.0


def classify(status: int) -> str:
    """``ok`` | ``duplicate`` | ``retryable`` | ``fatal`` for one bulk item's HTTP status."""
    if 200 <= status < 300:
        return "ok"
    if status == 409:
        return "duplicate"
    if status >= 500 or status in RETRYABLE_4XX:
        return "retryable"
    return "fatal"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class BulkStats:
    """What the sink did, for stats.json and the summary."""

    __slots__ = (
        "bulk_requests",
        "duplicates",
        "failures",
        "last_error",
        "queued",
        "rejected",
        "resent",
        "sent",
        "spooled",
    )

    def __init__(self) -> None:
        self.queued = 0  # documents handed to the sink
        self.sent = 0  # acknowledged as created
        self.duplicates = 0  # 409: the cluster had them already
        self.rejected = 0  # refused for good (kept in rejected.ndjson)
        self.spooled = 0  # documents put into the spool
        self.resent = 0  # documents sent from the spool
        self.bulk_requests = 0
        self.failures = 0  # bulk requests that failed as a whole
        self.last_error: str | None = None


class ClusterSink:
    """A Sink that delivers documents to one cluster, exactly once in effect."""

    def __init__(
        self,
        client: ClusterClient,
        spool: Spool,
        *,
        events: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        close_timeout: float = 30.0,
    ) -> None:
        self.client = client
        #: ``elasticsearch`` or ``opensearch``: the key of this sink in stats.json ``outputs``
        self.name: str = client.kind
        self.spool = spool
        options = client.settings.options
        self.namespace = client.settings.namespace
        self.events = options.events if events is None else events
        self.chunk_size = options.chunk_size
        self.flush_after = options.flush_after_seconds
        self.max_retries = options.max_retries
        self.initial_backoff = options.initial_backoff
        self.retry_interval = options.retry_interval
        self.close_timeout = close_timeout
        self.stats = BulkStats()
        self._clock = clock
        self._bytes_source = client.kind == "elasticsearch"  # ES takes bytes, opensearch-py str
        self._lock = threading.Lock()
        self._batch: list[Mapping[str, Any]] = []
        self._batch_started = 0.0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self._down_until = 0.0
        self._stalled = False
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="otsentry-bulk", daemon=True)
        self._thread.start()

    # -- the Sink protocol (pipeline thread) -----------------------------------------------------
    def wants(self, stream: Stream) -> bool:
        """Alerts, assets and stats always; protocol events when configured."""
        return stream is not Stream.EVENTS or self.events

    def write(self, stream: Stream, doc: Mapping[str, Any]) -> None:
        """Queue one document (blocks while the sender is a few batches behind)."""
        if stream is Stream.EVENTS and not self.events:
            return
        with self._lock:
            if not self._batch:
                self._batch_started = self._clock()
            self._batch.append(doc)
            self.stats.queued += 1
            full = len(self._batch) >= self.chunk_size
            batch = self._take() if full else None
        if batch is not None:
            self._queue.put(batch)

    def _take(self) -> list[Mapping[str, Any]]:
        batch, self._batch = self._batch, []
        return batch

    def flush(self) -> None:
        """Hand the partial batch to the sender."""
        with self._lock:
            batch = self._take() if self._batch else None
        if batch is not None:
            self._queue.put(batch)

    def close(self) -> None:
        """Send what is queued (or spool it), try to drain the spool for at most
        ``close_timeout`` seconds, then stop; what is left waits in the spool."""
        if self._closing:
            return
        self.flush()
        self._deadline = self._clock() + self.close_timeout
        self._closing = True
        self._queue.put(_STOP)
        self._thread.join()
        self.spool.close()
        self.client.close()

    # -- the sender thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._next()
                if item is _STOP:
                    # one more chance for a cluster that failed a moment ago, then stop
                    wait = (
                        min(self._down_until, self._deadline, self._clock() + _CLOSE_RETRY)
                        - self._clock()
                    )
                    if wait > 0:
                        time.sleep(wait)
                        self._down_until = 0.0
                    self._drain(until=self._deadline)
                    return
                if item:
                    self._deliver(item)
                if self.spool.pending and not self._down():
                    self._drain(until=self._clock() + self.retry_interval, chunks=1)
            except SpoolCorrupt as exc:
                log.error("%s", exc)
                self.stats.last_error = str(exc)
                self.spool.quarantine(exc)
            except Exception as exc:  # a bug must not stop delivery: log, back off, go on
                log.exception("bulk sender error")
                self._mark_down(describe_error(exc))

    def _next(self) -> Any:
        """The next full batch, or a partial one once it waited ``flush_after_seconds``."""
        timeout = self.flush_after
        if self.spool.pending and not self._down() and not self._stalled:
            timeout = 0.0
        try:
            return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._batch and self._clock() - self._batch_started >= self.flush_after:
                return self._take()
        return None

    def _down(self) -> bool:
        return self._clock() < self._down_until

    def _mark_down(self, reason: str) -> None:
        self.stats.failures += 1
        self.stats.last_error = reason
        self._down_until = self._clock() + self.retry_interval
        log.warning(
            "%s unavailable (%s): documents wait in %s",
            self.client.settings.display_url,
            reason,
            self.spool.root,
        )

    def _items(self, docs: list[Mapping[str, Any]]) -> list[SpoolItem]:
        """Serialize once, ``event.ingested`` included (set again if the document is resent)."""
        ingested = _now_iso()
        items = []
        for doc in docs:
            event = doc.get("event")
            if isinstance(event, Mapping):
                doc_id = event.get("id")
                doc = {**doc, "event": {**event, "ingested": ingested}}
            else:
                doc_id = None
            if not isinstance(doc_id, str):
                doc_id = str(uuid.uuid4())
            source = orjson.dumps(doc, default=str)
            items.append(SpoolItem(target(doc, self.namespace), doc_id, source))
        return items

    def _deliver(self, docs: list[Mapping[str, Any]]) -> None:
        items = self._items(docs)
        if self._down() or self.spool.pending:
            self._to_spool(items)
            return
        leftover = self._send(items)
        if leftover:
            self._to_spool(leftover)

    def _to_spool(self, items: list[SpoolItem]) -> None:
        dropped = self.spool.append(items)
        self.stats.spooled += len(items) - dropped

    def _drain(self, *, until: float, chunks: int | None = None) -> None:
        """Send spooled documents, oldest first, until the spool is empty, the cluster fails,
        ``chunks`` batches were sent, or the clock passes ``until``."""
        done = 0
        self._stalled = False
        while self.spool.pending and not self._down() and self._clock() < until:
            batch = self.spool.read(self.chunk_size)
            if batch is None:
                self._stalled = True  # counted but not readable yet: wait for the next batch
                return
            if not self._send_spooled(batch):
                return
            done += 1
            if chunks is not None and done >= chunks:
                return

    def _send_spooled(self, batch: SpoolBatch) -> bool:
        leftover = self._send(batch.items, resend=True)
        if leftover:
            return False  # the cursor stays: the whole batch is tried again later
        self.spool.commit(batch)
        return True

    def _send(self, items: list[SpoolItem], *, resend: bool = False) -> list[SpoolItem]:
        """Bulk-create ``items``; return those to keep for later (in their original order)."""
        ingested = _now_iso() if resend else None
        pending: dict[str, list[SpoolItem]] = {}
        order: list[SpoolItem] = []
        for item in items:
            pending.setdefault(item.doc_id, []).append(item)
            order.append(item)
        keep: set[int] = set()
        actions = (self._action(item, ingested) for item in items)
        self.stats.bulk_requests += 1
        try:
            for ok, result in self.client.streaming_bulk(
                actions,
                chunk_size=self.chunk_size,
                raise_on_error=False,
                raise_on_exception=True,
                max_retries=self.max_retries,
                initial_backoff=self.initial_backoff,
                max_backoff=max(self.initial_backoff * 8, 1.0),
            ):
                info = next(iter(result.values()))
                waiting = pending.get(str(info.get("_id")))
                if not waiting:
                    continue
                item = waiting.pop(0)
                status = int(info.get("status", 500)) if not ok else 201
                kind = classify(status)
                if kind == "ok":
                    self.stats.sent += 1
                elif kind == "duplicate":
                    self.stats.duplicates += 1
                elif kind == "fatal":
                    self._reject(item, _reason(info))
                else:
                    keep.add(id(item))
                    self.stats.last_error = f"HTTP {status}: {_reason(info)}"
                if resend and kind != "retryable":
                    self.stats.resent += 1
        except Exception as exc:  # connection refused/reset, timeouts, whole-request errors
            self._mark_down(describe_error(exc))
        # whatever got no answer (the request failed, or an answer left items out) is kept
        for waiting in pending.values():
            if waiting:
                keep.update(id(item) for item in waiting)
                self.stats.last_error = self.stats.last_error or "documents left unanswered"
        if keep and not self._down():
            self._mark_down(self.stats.last_error or "documents not accepted")
        return [item for item in order if id(item) in keep]

    def _reject(self, item: SpoolItem, reason: str) -> None:
        """A document refused for good: kept in rejected.ndjson; the first few are logged one by
        one with their id, then one line per thousand."""
        self.spool.reject(item, reason)
        self.stats.rejected += 1
        self.stats.last_error = f"refused: {reason}"
        n = self.stats.rejected
        if n <= _LOGGED_REJECTIONS:
            log.error("document %s refused by %s: %s", item.doc_id, item.index, reason)
        elif n % 1000 == 0 or n == _LOGGED_REJECTIONS + 1:
            log.error(
                "%d documents refused so far (kept in %s)", n, self.spool.root / "rejected.ndjson"
            )

    def _action(self, item: SpoolItem, ingested: str | None) -> dict[str, Any]:
        source = item.source if ingested is None else _with_ingested(item.source, ingested)
        return {
            "_op_type": "create",
            "_index": item.index,
            "_id": item.doc_id,
            "_source": source if self._bytes_source else source.decode(),
        }

    def state(self) -> str:
        """``up``, ``down`` (probing every retry_interval) or ``draining`` (spool not empty)."""
        if self._down():
            return "down"
        return "draining" if self.spool.pending else "up"

    def as_dict(self) -> dict[str, Any]:
        """Counters for stats.json (``outputs.<kind>``)."""
        s = self.stats
        return {
            "url": self.client.settings.display_url,
            "state": self.state(),
            "queued": s.queued,
            "sent": s.sent,
            "duplicates": s.duplicates,
            "rejected": s.rejected,
            "spooled": s.spooled,
            "resent": s.resent,
            "bulk_requests": s.bulk_requests,
            "failures": s.failures,
            "last_error": s.last_error,
            "spool": self.spool.stats(),
        }


def _with_ingested(source: bytes, ingested: str) -> bytes:
    """The document with ``event.ingested`` set to the send time."""
    doc = orjson.loads(source)
    event = doc.get("event")
    if isinstance(event, dict):
        event["ingested"] = ingested
    return orjson.dumps(doc)


def _reason(info: Mapping[str, Any]) -> str:
    error = info.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:500]
    return str(error)[:500] if error else f"HTTP {info.get('status')}"
