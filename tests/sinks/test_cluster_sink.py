"""The cluster sink against a real (in-memory) cluster behind a fault-injecting proxy: whatever
happens on the way, every document ends up in the cluster exactly once."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from otsentry.config import ClusterConfig, Config, OutputsConfig, SpoolConfig
from otsentry.sinks.clients import ClusterKind, connect, settings_for
from otsentry.sinks.cluster import ClusterSink, classify
from otsentry.sinks.interface import Stream
from otsentry.sinks.spool import Spool, iter_rejected
from tests.esnode import PlainJsonNode
from tests.sinks.faultproxy import FaultProxy, osmem_count, osmem_ids

ALERTS = "logs-otsentry.alert-*"

KINDS: list[ClusterKind] = ["opensearch", "elasticsearch"]


def alert(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        "message": f"alert {n}",
        "event": {"kind": "alert", "dataset": "otsentry.alert", "id": f"alert-{n:06d}"},
        "source": {"ip": "10.10.30.66"},
        **extra,
    }


def ids(n: int, start: int = 0) -> list[str]:
    return [f"alert-{i:06d}" for i in range(start, start + n)]


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., ClusterSink]]:
    made: list[ClusterSink] = []

    def make(
        kind: ClusterKind, url: str, spool: SpoolConfig | None = None, **opts: Any
    ) -> ClusterSink:
        options = ClusterConfig(
            url=url,
            retry_interval=0.2,
            initial_backoff=0.01,
            flush_after_seconds=0.2,
            chunk_size=100,
            request_timeout=2.0,
        )
        options = dataclasses.replace(options, **opts)
        config = Config(outputs=OutputsConfig(**{kind: options}))  # type: ignore[arg-type]
        settings = settings_for(kind, None, config, environ={})
        node = PlainJsonNode if kind == "elasticsearch" else None
        sink = ClusterSink(
            connect(settings, node_class=node),
            Spool(tmp_path / "spool" / kind, spool or SpoolConfig()),
            close_timeout=10.0,
        )
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def write(sink: ClusterSink, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        sink.write(Stream.ALERTS, doc)


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_classify() -> None:
    assert [classify(s) for s in (200, 201, 409, 429, 503, 403, 404, 400)] == [
        "ok",
        "ok",
        "duplicate",
        "retryable",
        "retryable",
        "retryable",
        "retryable",
        "fatal",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_delivers_every_document_once_with_ingest_time(
    kind: ClusterKind, osmem_url: str, make_sink: Callable[..., ClusterSink]
) -> None:
    # a loaded machine may take more than the fixture's 2 s for a bulk request: a timeout here
    # would resend a chunk the server already took (duplicates), which this test is not about
    sink = make_sink(kind, osmem_url, request_timeout=15.0)
    write(sink, [alert(n) for n in range(250)])
    sink.close()
    assert osmem_ids(osmem_url, ALERTS) == ids(250)
    stats = sink.as_dict()
    assert (stats["sent"], stats["duplicates"], stats["spooled"]) == (250, 0, 0)
    assert stats["bulk_requests"] == 3  # chunks of 100
    hit = _search(osmem_url, "logs-otsentry.alert-default", "alert-000007")
    assert hit["event"]["ingested"].endswith("Z")
    assert hit["message"] == "alert 7"


def _search(url: str, index: str, doc_id: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/{index}/_doc/{doc_id}") as resp:
        source: dict[str, Any] = orjson.loads(resp.read())["_source"]
    return source


def test_partial_batch_goes_out_after_flush_after_seconds(
    osmem_url: str, make_sink: Callable[..., ClusterSink]
) -> None:
    sink = make_sink("opensearch", osmem_url)
    sink.write(Stream.ALERTS, alert(1))
    assert wait_for(lambda: osmem_count(osmem_url, ALERTS) == 1, 5.0)  # no close, no full batch


def test_protocol_events_only_when_configured(
    osmem_url: str, make_sink: Callable[..., ClusterSink]
) -> None:
    sink = make_sink("opensearch", osmem_url, events=False)
    assert not sink.wants(Stream.EVENTS)
    assert sink.wants(Stream.ALERTS) and sink.wants(Stream.ASSETS) and sink.wants(Stream.STATS)


@pytest.mark.parametrize("kind", KINDS)
def test_whole_request_429_is_retried_with_backoff(
    kind: ClusterKind,
    fault_proxy: FaultProxy,
    osmem_url: str,
    make_sink: Callable[..., ClusterSink],
) -> None:
    fault_proxy.fail_requests(2, status=429)
    sink = make_sink(kind, fault_proxy.url)
    write(sink, [alert(n) for n in range(100)])
    sink.close()
    assert osmem_ids(osmem_url, ALERTS) == ids(100)
    assert sink.as_dict()["spooled"] == 0
    assert fault_proxy.requests_failed == 2


@pytest.mark.parametrize("kind", KINDS)
def test_per_item_429_retried_by_the_helper(
    kind: ClusterKind,
    fault_proxy: FaultProxy,
    osmem_url: str,
    make_sink: Callable[..., ClusterSink],
) -> None:
    fault_proxy.reject_items(1, status=429, every=3)
    sink = make_sink(kind, fault_proxy.url)
    write(sink, [alert(n) for n in range(100)])
    sink.close()
    assert fault_proxy.items_rejected == 33
    assert osmem_ids(osmem_url, ALERTS) == ids(100)
    assert sink.as_dict()["sent"] == 100


@pytest.mark.parametrize("kind", KINDS)
def test_429_beyond_retries_and_503_wait_in_the_spool_then_drain(
    kind: ClusterKind,
    fault_proxy: FaultProxy,
    osmem_url: str,
    make_sink: Callable[..., ClusterSink],
) -> None:
    fault_proxy.reject_items(4, status=429, every=2)  # first try + 3 retries: half stays out
    fault_proxy.fail_requests(1, status=503)
    sink = make_sink(kind, fault_proxy.url, max_retries=3)
    write(sink, [alert(n) for n in range(100)])
    sink.flush()
    # the rejected half and later batches wait; the sink probes and drains by itself
    write(sink, [alert(n) for n in range(100, 150)])
    assert wait_for(lambda: osmem_count(osmem_url, ALERTS) == 150, 15.0)
    sink.close()
    stats = sink.as_dict()
    assert osmem_ids(osmem_url, ALERTS) == ids(150)
    assert stats["spooled"] >= 50
    assert stats["spool"]["documents"] == 0
    assert stats["sent"] + stats["duplicates"] >= 150


@pytest.mark.parametrize("kind", KINDS)
def test_refused_connections_spool_and_drain_when_back(
    kind: ClusterKind,
    fault_proxy: FaultProxy,
    osmem_url: str,
    make_sink: Callable[..., ClusterSink],
) -> None:
    sink = make_sink(kind, fault_proxy.url)
    write(sink, [alert(n) for n in range(100)])
    assert wait_for(lambda: osmem_count(osmem_url, ALERTS) == 100)
    fault_proxy.refuse()
    write(sink, [alert(n) for n in range(100, 400)])
    assert wait_for(lambda: sink.as_dict()["spool"]["documents"] == 300)
    assert sink.state() in ("down", "draining")
    assert osmem_count(osmem_url, ALERTS) == 100
    fault_proxy.accept()
    assert wait_for(lambda: osmem_count(osmem_url, ALERTS) == 400, 15.0)
    sink.close()
    assert osmem_ids(osmem_url, ALERTS) == ids(400)
    stats = sink.as_dict()
    assert stats["spool"]["documents"] == 0
    assert stats["resent"] == 300


@pytest.mark.parametrize("forward", [True, "half", False])
@pytest.mark.parametrize("kind", KINDS)
def test_server_dying_mid_bulk_loses_and_duplicates_nothing(
    kind: ClusterKind,
    forward: bool | str,
    fault_proxy: FaultProxy,
    osmem_url: str,
    make_sink: Callable[..., ClusterSink],
) -> None:
    fault_proxy.die_mid_bulk(1, forward=forward)  # type: ignore[arg-type]
    sink = make_sink(kind, fault_proxy.url)
    write(sink, [alert(n) for n in range(300)])
    sink.close()
    assert osmem_ids(osmem_url, ALERTS) == ids(300)  # each exactly once
    stats = sink.as_dict()
    expected_duplicates = {True: 100, "half": 50, False: 0}[forward]
    assert stats["duplicates"] == expected_duplicates
    assert stats["sent"] == 300 - expected_duplicates


def test_cluster_down_at_close_leaves_everything_in_the_spool(
    tmp_path: Path, fault_proxy: FaultProxy, osmem_url: str, make_sink: Callable[..., ClusterSink]
) -> None:
    fault_proxy.refuse()
    sink = make_sink("opensearch", fault_proxy.url)
    started = time.monotonic()
    write(sink, [alert(n) for n in range(250)])
    sink.close()
    assert time.monotonic() - started < 5.0  # a dead cluster does not hold the run
    assert sink.as_dict()["spool"]["documents"] == 250
    fault_proxy.accept()
    again = make_sink("opensearch", fault_proxy.url)  # a later run drains the old spool first
    again.close()
    assert osmem_ids(osmem_url, ALERTS) == ids(250)
    assert again.as_dict()["spool"]["documents"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_mapping_conflict_is_kept_on_disk_with_its_id(
    kind: ClusterKind, tmp_path: Path, osmem_url: str, make_sink: Callable[..., ClusterSink]
) -> None:
    sink = make_sink(kind, osmem_url)
    write(sink, [alert(0, labels={"segment": "cell-3"})])
    sink.flush()
    assert wait_for(lambda: osmem_count(osmem_url, ALERTS) == 1)
    bad = alert(1, labels={"segment": {"nested": "object where a keyword was"}})
    write(sink, [bad, alert(2)])
    sink.close()
    assert osmem_ids(osmem_url, ALERTS) == ["alert-000000", "alert-000002"]
    (row,) = iter_rejected(tmp_path / "spool" / kind)
    assert row["_id"] == "alert-000001"
    assert row["document"]["labels"] == bad["labels"]
    assert sink.as_dict()["rejected"] == 1


def test_full_spool_drops_and_counts(
    fault_proxy: FaultProxy, make_sink: Callable[..., ClusterSink]
) -> None:
    fault_proxy.refuse()
    spool = SpoolConfig(max_bytes=16384, segment_bytes=4096, when_full="drop-newest")
    sink = make_sink("opensearch", fault_proxy.url, spool=spool)
    write(sink, [alert(n, pad="x" * 200) for n in range(200)])
    sink.close()
    stats = sink.as_dict()
    assert stats["spool"]["dropped"] > 0
    assert stats["spool"]["documents"] + stats["spool"]["dropped"] == 200
    assert stats["spool"]["bytes"] <= 16384


class _ForgetfulBulk(http.server.BaseHTTPRequestHandler):
    """Answers the first bulk request for its first half only, as if the rest had not been
    seen; later requests in full."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    requests = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        ids = [orjson.loads(line)["create"]["_id"] for line in body.splitlines()[::2] if line]
        _ForgetfulBulk.requests += 1
        answered = ids[: len(ids) // 2] if _ForgetfulBulk.requests == 1 else ids
        items = [{"create": {"_id": i, "status": 201}} for i in answered]
        data = orjson.dumps({"errors": False, "items": items})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_items_an_answer_leaves_out_are_kept(make_sink: Callable[..., ClusterSink]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ForgetfulBulk)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = make_sink("opensearch", f"http://127.0.0.1:{server.server_address[1]}")
        write(sink, [alert(n) for n in range(100)])
        sink.flush()
        assert wait_for(lambda: sink.as_dict()["sent"] == 100)
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
    stats = sink.as_dict()
    assert (stats["spooled"], stats["resent"], stats["spool"]["documents"]) == (50, 50, 0)
    assert stats["last_error"] == "documents left unanswered"
