"""A fault-injecting HTTP proxy for cluster tests.

``FaultProxy`` listens on 127.0.0.1, forwards every request to an upstream cluster (osmem-server in
tests) and returns the answer unchanged, unless a fault is armed. Each control arms the *next*
matching requests; armed faults fire in the order they were armed:

- ``fail_requests``: answer with an error status and an Elasticsearch-shaped error, forward nothing.
- ``reject_items``: drop selected items from a bulk body, forward the rest, and splice per-item
  errors (429 ``es_rejected_execution_exception`` by default) into the answer at their positions.
- ``die_mid_bulk``: forward all, none or the first half of a bulk body, then close the client
  connection without any answer.
- ``hang``: hold requests for a while before forwarding (client timeouts).
- ``refuse`` / ``accept``: close the listening socket (and open connections), listen again on the
  same port.

Plain helpers ``osmem_count`` and ``osmem_ids`` read what the upstream really holds.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import math
import socket
import socketserver
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import urllib3

#: headers that belong to one connection and are never passed on
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: error type in synthesized answers, by HTTP status
ERROR_TYPES: dict[int, str] = {
    400: "mapper_parsing_exception",
    409: "version_conflict_engine_exception",
    429: "es_rejected_execution_exception",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "unavailable_shards_exception",
    504: "gateway_timeout",
}

#: bulk actions followed by a source line
SOURCE_ACTIONS = frozenset({"index", "create", "update"})

Forward = bool | Literal["half"]


# --- bulk bodies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One operation of a bulk body: its action, action metadata and raw NDJSON lines."""

    action: str
    meta: dict[str, Any]
    lines: tuple[bytes, ...]

    @property
    def id(self) -> str | None:
        """The ``_id`` the action names, if any."""
        value = self.meta.get("_id")
        return None if value is None else str(value)


def is_bulk(method: str, path: str) -> bool:
    """Whether ``path`` (without query) is a bulk endpoint: ``/_bulk`` or ``/<index>/_bulk``."""
    return method in ("POST", "PUT") and (path == "/_bulk" or path.endswith("/_bulk"))


def path_index(path: str) -> str | None:
    """The default index of ``/<index>/_bulk``, or None for ``/_bulk``."""
    parts = [p for p in path.split("/") if p]
    return urllib.parse.unquote(parts[0]) if len(parts) == 2 else None


def parse_bulk(body: bytes) -> list[BulkItem]:
    """Split an NDJSON bulk body into items; ValueError when it is not a valid bulk body."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    items: list[BulkItem] = []
    pos = 0
    while pos < len(lines):
        header = json.loads(lines[pos])
        if not isinstance(header, dict) or len(header) != 1:
            raise ValueError(f"bulk action line {pos + 1} is not a one-key object")
        action, meta = next(iter(header.items()))
        if not isinstance(meta, dict):
            raise ValueError(f"bulk action line {pos + 1} has no metadata object")
        width = 2 if action in SOURCE_ACTIONS else 1
        if pos + width > len(lines):
            raise ValueError(f"bulk action {action!r} at line {pos + 1} has no source line")
        items.append(BulkItem(action, meta, tuple(lines[pos : pos + width])))
        pos += width
    return items


def join_bulk(items: Iterable[BulkItem], terminated: bool = True) -> bytes:
    """An NDJSON bulk body from ``items``, ending in a newline when ``terminated``."""
    text = b"\n".join(line for item in items for line in item.lines)
    return text + b"\n" if terminated and text else text


def select_items(
    items: list[BulkItem],
    *,
    every: int | None = None,
    ids: frozenset[str] | None = None,
    fraction: float | None = None,
) -> list[int]:
    """Positions chosen by one rule: every k-th item (k-th, 2k-th, …), items whose ``_id`` is in
    ``ids``, or an evenly spread ``fraction`` of the items (deterministic)."""
    if every is not None:
        return [i for i in range(len(items)) if (i + 1) % every == 0]
    if ids is not None:
        return [i for i, item in enumerate(items) if item.id in ids]
    if fraction is not None:
        return [
            i
            for i in range(len(items))
            if math.floor((i + 1) * fraction) > math.floor(i * fraction)
        ]
    return []


def error_object(status: int, reason: str, error_type: str | None = None) -> dict[str, Any]:
    """The ``error`` object Elasticsearch puts in answers and bulk items."""
    kind = error_type or ERROR_TYPES.get(status, "exception")
    return {"type": kind, "reason": reason}


def error_answer(status: int, reason: str, error_type: str | None = None) -> dict[str, Any]:
    """A whole-request Elasticsearch error answer."""
    error = error_object(status, reason, error_type)
    return {"error": {"root_cause": [dict(error)], **error}, "status": status}


def item_error(
    item: BulkItem, default_index: str | None, status: int, error_type: str | None
) -> dict[str, Any]:
    """The bulk answer entry of a rejected item."""
    entry: dict[str, Any] = {"_index": item.meta.get("_index", default_index)}
    if item.id is not None:
        entry["_id"] = item.id
    reason = "rejected execution of coordinating operation [injected by the fault proxy]"
    entry["status"] = status
    entry["error"] = error_object(status, reason, error_type)
    return {item.action: entry}


# --- armed faults -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Armed:
    remaining: int
    only_bulk: bool

    def matches(self, bulk: bool) -> bool:
        return self.remaining > 0 and (bulk or not self.only_bulk)


@dataclass(slots=True)
class _Hang(_Armed):
    seconds: float = 0.0


@dataclass(slots=True)
class _Fail(_Armed):
    status: int = 503


@dataclass(slots=True)
class _Die(_Armed):
    forward: Forward = True


@dataclass(slots=True)
class _Reject(_Armed):
    status: int = 429
    error_type: str | None = None
    every: int | None = None
    ids: frozenset[str] | None = None
    fraction: float | None = None


@dataclass(slots=True)
class _Counters:
    requests: list[tuple[str, str]] = field(default_factory=list)
    bulk_requests: int = 0
    requests_failed: int = 0
    items_forwarded: int = 0
    items_rejected: int = 0
    connections_accepted: int = 0
    connections_dropped: int = 0


class _Dropped(Exception):
    """The client connection was closed on purpose: no answer is written."""


# --- the proxy --------------------------------------------------------------------------------


class FaultProxy:
    """A threaded HTTP/1.1 proxy in front of ``upstream`` with thread-safe fault controls."""

    def __init__(self, upstream: str, *, port: int = 0, upstream_timeout: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/")
        self._pool = urllib3.connection_from_url(self.upstream, maxsize=32, block=False)
        self._timeout = urllib3.Timeout(connect=5.0, read=upstream_timeout)
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._counts = _Counters()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._down = threading.Event()  # set when the server stops listening
        self._closed = False
        self._port = port
        self.accept()

    # controls

    @property
    def url(self) -> str:
        """The proxy's base URL (the same across ``refuse``/``accept``)."""
        return f"http://127.0.0.1:{self._port}"

    def fail_requests(self, n: int = 1, status: int = 429, *, only_bulk: bool = True) -> None:
        """Answer the next ``n`` (bulk) requests with ``status`` and an error body; nothing is
        forwarded."""
        self._arm(_Fail(n, only_bulk, status=status))

    def reject_items(
        self,
        n_requests: int = 1,
        status: int = 429,
        *,
        every: int | None = None,
        ids: Iterable[str] | None = None,
        fraction: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """For the next ``n_requests`` bulk requests, remove the items chosen by exactly one of
        ``every`` (k-th, 2k-th … item of each request), ``ids`` or ``fraction`` before forwarding,
        and answer them with per-item ``status`` errors at their positions."""
        chosen = [every is not None, ids is not None, fraction is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of every, ids, fraction")
        if every is not None and every < 1:
            raise ValueError("every must be at least 1")
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        frozen = None if ids is None else frozenset(ids)
        self._arm(
            _Reject(
                n_requests,
                True,
                status=status,
                error_type=error_type,
                every=every,
                ids=frozen,
                fraction=fraction,
            )
        )

    def die_mid_bulk(self, n: int = 1, forward: Forward = True) -> None:
        """For the next ``n`` bulk requests, forward all items (True), none (False) or the first
        half (``"half"``), then close the client connection without an answer."""
        if forward not in (True, False, "half"):
            raise ValueError("forward is True, False or 'half'")
        self._arm(_Die(n, True, forward=forward))

    def hang(self, seconds: float, n: int = 1, *, only_bulk: bool = False) -> None:
        """Hold the next ``n`` requests for ``seconds`` before handling them. A request held
        when the proxy stops listening is dropped."""
        self._arm(_Hang(n, only_bulk, seconds=seconds))

    def clear(self) -> None:
        """Disarm every fault not yet fired."""
        with self._lock:
            self._armed.clear()

    def reset_counters(self) -> None:
        """Start all counters from zero."""
        with self._lock:
            self._counts = _Counters()

    def refuse(self) -> None:
        """Stop listening (new connections are refused) and close every open connection."""
        with self._lock:
            server, self._server = self._server, None
            connections = list(self._connections)
            self._down.set()
        if server is not None:
            server.shutdown()
            server.server_close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def accept(self) -> None:
        """Listen again, on the same port."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the proxy is closed")
            if self._server is not None:
                return
        server = self._bind()
        with self._lock:
            self._port = server.server_address[1]
            self._server = server
            self._down = threading.Event()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"faultproxy:{self._port}",
            daemon=True,
        )
        thread.start()

    def close(self) -> None:
        """Stop listening, drop every connection, release the upstream pool."""
        self.refuse()
        with self._lock:
            self._closed = True
        self._pool.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # counters

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path without query) of every request received, in order."""
        with self._lock:
            return list(self._counts.requests)

    @property
    def bulk_requests(self) -> int:
        """Bulk requests received (faulted or not)."""
        with self._lock:
            return self._counts.bulk_requests

    @property
    def requests_failed(self) -> int:
        """Requests answered by ``fail_requests``."""
        with self._lock:
            return self._counts.requests_failed

    @property
    def items_forwarded(self) -> int:
        """Bulk items sent upstream."""
        with self._lock:
            return self._counts.items_forwarded

    @property
    def items_rejected(self) -> int:
        """Bulk items answered with an injected per-item error."""
        with self._lock:
            return self._counts.items_rejected

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted (one per connection, however many requests it carries)."""
        with self._lock:
            return self._counts.connections_accepted

    @property
    def connections_dropped(self) -> int:
        """Client connections closed by ``die_mid_bulk``."""
        with self._lock:
            return self._counts.connections_dropped

    @property
    def armed(self) -> int:
        """Requests still to be affected by armed faults."""
        with self._lock:
            return sum(fault.remaining for fault in self._armed)

    # internals used by the handler

    def _arm(self, fault: _Armed) -> None:
        if fault.remaining < 0:
            raise ValueError("the number of requests cannot be negative")
        with self._lock:
            self._armed.append(fault)

    def _bind(self) -> _Server:
        """A server on our port; retried briefly, as the port was free only while we listened."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                return _Server(("127.0.0.1", self._port), self)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _take(self, bulk: bool, hang: bool) -> _Armed | None:
        with self._lock:
            for fault in self._armed:
                if isinstance(fault, _Hang) == hang and fault.matches(bulk):
                    fault.remaining -= 1
                    self._armed = [f for f in self._armed if f.remaining > 0]
                    return fault
        return None

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + amount)

    def _received(self, method: str, path: str, bulk: bool) -> threading.Event:
        with self._lock:
            self._counts.requests.append((method, path))
            if bulk:
                self._counts.bulk_requests += 1
            return self._down

    def _opened(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self._counts.connections_accepted += 1

    def _finished(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _upstream(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> urllib3.BaseHTTPResponse:
        return self._pool.urlopen(
            method,
            target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            preload_content=True,
            decode_content=False,
            timeout=self._timeout,
        )


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is part of the game; the handler answers everything else


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._opened(self.connection)

    def finish(self) -> None:
        self.server.proxy._finished(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        try:
            self._serve()
        except urllib3.exceptions.HTTPError as exc:
            with contextlib.suppress(OSError):
                self._answer_json(502, error_answer(502, f"upstream unreachable: {exc}"))
        except (_Dropped, OSError):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _serve(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        path = urllib.parse.urlsplit(self.path).path or "/"
        bulk = is_bulk(self.command, path)
        down = proxy._received(self.command, path, bulk)
        if down.is_set():  # accepted just before the proxy stopped listening
            raise _Dropped
        hang = proxy._take(bulk, hang=True)
        if isinstance(hang, _Hang) and down.wait(hang.seconds):
            raise _Dropped
        fault = proxy._take(bulk, hang=False)
        if isinstance(fault, _Fail):
            proxy._count("requests_failed")
            reason = f"HTTP {fault.status} injected by the fault proxy"
            self._answer_json(fault.status, error_answer(fault.status, reason))
            return
        items = self._bulk_items(body) if bulk else None
        if items is None:
            self._forward(body)
            return
        if isinstance(fault, _Die):
            self._die(body, items, fault.forward)
        elif isinstance(fault, _Reject):
            self._reject(path, items, fault)
        else:
            proxy._count("items_forwarded", len(items))
            self._forward(body)

    # reading and answering

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass  # trailer fields
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return None if length is None else self.rfile.read(int(length))

    def _bulk_items(self, body: bytes | None) -> list[BulkItem] | None:
        if not body:
            return None
        try:
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            return parse_bulk(body)
        except (ValueError, OSError, EOFError):
            return None  # not a bulk body we understand: the upstream answers it

    def _request_headers(self, *, plain: bool = False) -> dict[str, str]:
        drop = set(HOP_BY_HOP) | {"host", "content-length"}
        drop |= {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        if plain:  # a rewritten body is sent uncompressed and its answer is read as JSON
            drop |= {"content-encoding", "accept-encoding"}
        return {k: v for k, v in self.headers.items() if k.lower() not in drop}

    def _forward(self, body: bytes | None, *, plain: bool = False) -> urllib3.BaseHTTPResponse:
        """Send the request upstream and the answer back unchanged; returns the answer."""
        resp = self._send_upstream(body, plain=plain)
        self._answer(resp.status, list(resp.headers.items()), resp.data, resp.reason)
        return resp

    def _send_upstream(self, body: bytes | None, *, plain: bool) -> urllib3.BaseHTTPResponse:
        return self.server.proxy._upstream(
            self.command, self.path, body, self._request_headers(plain=plain)
        )

    def _answer(
        self, status: int, headers: list[tuple[str, str]], data: bytes, reason: str | None = None
    ) -> None:
        self.send_response_only(status, reason)
        length = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower not in HOP_BY_HOP:
                self.send_header(name, value)
        if self.command == "HEAD" or status in (204, 304) or status < 200:
            if length is not None:
                self.send_header("Content-Length", length)
            data = b""
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _answer_json(
        self, status: int, doc: dict[str, Any], headers: list[tuple[str, str]] | None = None
    ) -> None:
        base = [(k, v) for k, v in headers or [] if k.lower() not in ("content-type", "date")]
        base.append(("Content-Type", "application/json; charset=UTF-8"))
        self._answer(status, base, json.dumps(doc, separators=(",", ":")).encode())

    # faults on bulk requests

    def _die(self, body: bytes | None, items: list[BulkItem], forward: Forward) -> None:
        proxy = self.server.proxy
        if forward is True:
            self._send_upstream(body, plain=False)
            proxy._count("items_forwarded", len(items))
        elif forward == "half" and len(items) // 2:
            kept = items[: len(items) // 2]
            self._send_upstream(join_bulk(kept), plain=True)
            proxy._count("items_forwarded", len(kept))
        proxy._count("connections_dropped")
        raise _Dropped

    def _reject(self, path: str, items: list[BulkItem], fault: _Reject) -> None:
        proxy = self.server.proxy
        chosen = set(select_items(items, every=fault.every, ids=fault.ids, fraction=fault.fraction))
        kept = [item for i, item in enumerate(items) if i not in chosen]
        proxy._count("items_rejected", len(chosen))
        default_index = path_index(path)
        errors = {
            i: item_error(items[i], default_index, fault.status, fault.error_type) for i in chosen
        }
        if not kept:
            answer = {
                "took": 0,
                "errors": bool(errors),
                "items": [errors[i] for i in sorted(errors)],
            }
            self._answer_json(200, answer)
            return
        resp = self._send_upstream(join_bulk(kept), plain=True)
        proxy._count("items_forwarded", len(kept))
        try:
            doc = json.loads(resp.data)
            upstream_items = doc["items"]
        except (ValueError, KeyError, TypeError):
            upstream_items = None
        if resp.status != 200 or not isinstance(upstream_items, list):
            self._answer(resp.status, list(resp.headers.items()), resp.data, resp.reason)
            return
        if len(upstream_items) != len(kept):
            reason = f"upstream answered {len(upstream_items)} items for {len(kept)}"
            self._answer_json(502, error_answer(502, reason))
            return
        answered = iter(upstream_items)
        doc["items"] = [errors[i] if i in errors else next(answered) for i in range(len(items))]
        doc["errors"] = bool(errors) or bool(doc.get("errors"))
        self._answer_json(200, doc, list(resp.headers.items()))


# --- reading the upstream ---------------------------------------------------------------------


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _quoted(pattern: str) -> str:
    return urllib.parse.quote(pattern, safe="*,-_.")


_LENIENT = "ignore_unavailable=true&allow_no_indices=true"


def osmem_count(url: str, index_pattern: str) -> int:
    """Refresh, then count the documents matching ``index_pattern`` (0 when none exists)."""
    target = _quoted(index_pattern)
    _call(url, "POST", f"/{target}/_refresh?{_LENIENT}")
    return int(_call(url, "GET", f"/{target}/_count?{_LENIENT}")["count"])


def osmem_ids(url: str, index_pattern: str) -> list[str]:
    """Refresh, then every ``_id`` in ``index_pattern``, sorted; an id stored twice (in two
    indices) appears twice."""
    target = _quoted(index_pattern)
    _call(url, "POST", f"/{target}/_refresh?{_LENIENT}")
    query = {"size": 10_000, "_source": False, "sort": ["_doc"]}
    page = _call(url, "POST", f"/{target}/_search?scroll=1m&{_LENIENT}", query)
    ids: list[str] = []
    scroll_id = page.get("_scroll_id")
    try:
        while hits := page["hits"]["hits"]:
            ids.extend(str(hit["_id"]) for hit in hits)
            if scroll_id is None:
                break
            page = _call(url, "POST", "/_search/scroll", {"scroll": "1m", "scroll_id": scroll_id})
            scroll_id = page.get("_scroll_id", scroll_id)
    finally:
        if scroll_id is not None:
            with contextlib.suppress(OSError):
                _call(url, "DELETE", "/_search/scroll", {"scroll_id": [scroll_id]})
    return sorted(ids)
