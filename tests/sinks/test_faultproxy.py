"""The fault proxy, through the real Elasticsearch 8.x and OpenSearch clients against osmem."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch, helpers
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch import ConnectionTimeout as EsConnectionTimeout
from opensearchpy import OpenSearch, TransportError
from opensearchpy import helpers as os_helpers

from tests.esnode import PlainJsonNode
from tests.sinks.faultproxy import (
    BulkItem,
    FaultProxy,
    join_bulk,
    osmem_count,
    osmem_ids,
    parse_bulk,
    select_items,
)

INDEX = "otsentry-test"


def es_client(url: str) -> Elasticsearch:
    """The Elasticsearch 8.x client as the sinks build it, speaking plain JSON."""
    return Elasticsearch(url, node_class=PlainJsonNode, max_retries=0)


def os_client(url: str, **kwargs: Any) -> OpenSearch:
    """The OpenSearch client with no transport retries."""
    return OpenSearch(hosts=[url], max_retries=0, **kwargs)


def creates(n: int, prefix: str = "d") -> list[dict[str, Any]]:
    """``n`` bulk-helper create actions with ids ``<prefix>0`` … ."""
    return [
        {"_op_type": "create", "_index": INDEX, "_id": f"{prefix}{i}", "_source": {"n": i}}
        for i in range(n)
    ]


def bulk_operations(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``operations`` list of a raw bulk call for helper-style create actions."""
    ops: list[dict[str, Any]] = []
    for action in actions:
        ops.append({"create": {"_index": action["_index"], "_id": action["_id"]}})
        ops.append(action["_source"])
    return ops


def failures(results: list[tuple[bool, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The failed items of a streaming_bulk run, by ``_id``."""
    out: dict[str, dict[str, Any]] = {}
    for ok, result in results:
        if not ok:
            (info,) = result.values()
            out[info["_id"]] = info
    return out


# --- bulk bodies ------------------------------------------------------------------------------

BODY = (
    b'{"create":{"_index":"a","_id":"1"}}\n{"x":1}\n'
    b'{"delete":{"_index":"a","_id":"2"}}\n'
    b'{"index":{"_id":"3"}}\n{"x":3}\n'
    b'{"update":{"_index":"a","_id":"1"}}\n{"doc":{"x":4}}\n'
)


def test_parse_bulk_splits_items_and_joins_back() -> None:
    items = parse_bulk(BODY)
    assert [(i.action, i.id, len(i.lines)) for i in items] == [
        ("create", "1", 2),
        ("delete", "2", 1),
        ("index", "3", 2),
        ("update", "1", 2),
    ]
    assert join_bulk(items) == BODY
    assert join_bulk(items, terminated=False) == BODY[:-1]
    with pytest.raises(ValueError):
        parse_bulk(b'{"create":{"_id":"1"}}\n')


def test_select_items_rules() -> None:
    items = [BulkItem("create", {"_id": str(i)}, (b"{}", b"{}")) for i in range(6)]
    assert select_items(items, every=2) == [1, 3, 5]
    assert select_items(items, every=1) == [0, 1, 2, 3, 4, 5]
    assert select_items(items, ids=frozenset({"0", "4", "nope"})) == [0, 4]
    assert select_items(items, fraction=0.5) == [1, 3, 5]
    assert select_items(items, fraction=1 / 3) == [2, 5]
    assert select_items(items, fraction=0.0) == []


def test_reject_items_needs_exactly_one_rule(fault_proxy: FaultProxy) -> None:
    with pytest.raises(ValueError):
        fault_proxy.reject_items(1)
    with pytest.raises(ValueError):
        fault_proxy.reject_items(1, every=2, ids={"a"})
    assert fault_proxy.armed == 0


# --- forwarding -------------------------------------------------------------------------------


def test_forwarding_equals_direct(fault_proxy: FaultProxy, osmem_url: str) -> None:
    proxied, direct = os_client(fault_proxy.url), os_client(osmem_url)
    assert proxied.info() == direct.info()
    ok = [r for ok, r in os_helpers.streaming_bulk(proxied, creates(3), refresh=True) if ok]
    assert [r["create"]["status"] for r in ok] == [201, 201, 201]
    query = {"query": {"match_all": {}}, "sort": [{"n": "asc"}]}
    through = proxied.search(index=INDEX, body=query)["hits"]["hits"]
    assert through == direct.search(index=INDEX, body=query)["hits"]["hits"]
    assert [h["_id"] for h in through] == ["d0", "d1", "d2"]
    assert ("POST", "/_bulk") in fault_proxy.requests
    assert fault_proxy.bulk_requests == 1
    assert fault_proxy.items_forwarded == 3
    assert fault_proxy.connections_accepted == 1  # keep-alive: one pooled connection


def test_elasticsearch_client_through_proxy(
    fault_proxy: FaultProxy, osmem_url: str, osmem_count: Any
) -> None:
    es = es_client(fault_proxy.url)
    assert es.info()["cluster_name"] == "osmem"
    success, errors = helpers.bulk(es, creates(4), raise_on_error=False)
    assert (success, errors) == (4, [])
    assert osmem_count(osmem_url, INDEX) == 4
    assert es.count(index=INDEX)["count"] == 4


def test_chunked_request_body_is_forwarded(fault_proxy: FaultProxy, osmem_url: str) -> None:
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(fault_proxy.url).netloc, timeout=5)
    chunks = iter([BODY[:20], BODY[20:70], BODY[70:]])
    headers = {"Content-Type": "application/x-ndjson"}
    conn.request("POST", f"/{INDEX}/_bulk", body=chunks, headers=headers, encode_chunked=True)
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    statuses = [next(iter(item.values()))["status"] for item in answer["items"]]
    assert statuses == [201, 404, 201, 200]
    assert osmem_ids(osmem_url, "a,otsentry-test") == ["1", "3"]
    assert fault_proxy.items_forwarded == 4


# --- whole-request failures -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_fail_requests_answers_status_and_indexes_nothing(
    fault_proxy: FaultProxy, osmem_url: str, status: int
) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.fail_requests(1, status=status)
    assert es.info()["cluster_name"] == "osmem"  # not a bulk request: forwarded
    with pytest.raises(ApiError) as caught:
        es.bulk(operations=bulk_operations(creates(3)))
    assert caught.value.meta.status == status
    assert caught.value.body["status"] == status
    assert osmem_count(osmem_url, INDEX) == 0
    assert fault_proxy.items_forwarded == 0
    assert fault_proxy.requests_failed == 1
    assert not es.bulk(operations=bulk_operations(creates(3)))["errors"]  # fired once only
    assert osmem_count(osmem_url, INDEX) == 3


def test_fail_requests_on_any_request(fault_proxy: FaultProxy) -> None:
    client = os_client(fault_proxy.url)
    fault_proxy.fail_requests(2, status=500, only_bulk=False)
    for _ in range(2):
        with pytest.raises(TransportError) as caught:
            client.info()
        assert caught.value.status_code == 500
    assert client.info()["cluster_name"] == "osmem"
    assert fault_proxy.armed == 0


def test_clear_disarms(fault_proxy: FaultProxy, osmem_url: str) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.fail_requests(5, status=503)
    fault_proxy.die_mid_bulk(1)
    assert fault_proxy.armed == 6
    fault_proxy.clear()
    assert fault_proxy.armed == 0
    assert not es.bulk(operations=bulk_operations(creates(2)))["errors"]
    assert osmem_count(osmem_url, INDEX) == 2


# --- per-item rejections ----------------------------------------------------------------------


def test_reject_items_every_kth(fault_proxy: FaultProxy, osmem_url: str) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.reject_items(1, every=3)
    results = list(helpers.streaming_bulk(es, creates(9), raise_on_error=False))
    failed = failures(results)
    assert sorted(failed) == ["d2", "d5", "d8"]
    for info in failed.values():
        assert info["status"] == 429
        assert info["error"]["type"] == "es_rejected_execution_exception"
        assert info["_index"] == INDEX
    assert [ok for ok, _ in results] == [i % 3 != 2 for i in range(9)]  # answers in position
    assert osmem_ids(osmem_url, INDEX) == ["d0", "d1", "d3", "d4", "d6", "d7"]
    assert (fault_proxy.items_forwarded, fault_proxy.items_rejected) == (6, 3)


def test_reject_items_by_id_with_deletes_and_index_ops(
    fault_proxy: FaultProxy, osmem_url: str
) -> None:
    client = os_client(fault_proxy.url)
    os_helpers.bulk(client, creates(4, prefix="old"))
    actions: list[dict[str, Any]] = [
        {"_op_type": "delete", "_index": INDEX, "_id": "old0"},
        {"_op_type": "delete", "_index": INDEX, "_id": "old1"},
        {"_op_type": "index", "_index": INDEX, "_id": "new0", "_source": {"n": 10}},
        {"_op_type": "create", "_index": INDEX, "_id": "new1", "_source": {"n": 11}},
        {"_op_type": "index", "_index": INDEX, "_id": "new2", "_source": {"n": 12}},
    ]
    fault_proxy.reject_items(1, ids={"old1", "new1"})
    results = list(os_helpers.streaming_bulk(client, actions, raise_on_error=False))
    assert [(ok, next(iter(r))) for ok, r in results] == [
        (True, "delete"),
        (False, "delete"),
        (True, "index"),
        (False, "create"),
        (True, "index"),
    ]
    assert sorted(failures(results)) == ["new1", "old1"]
    assert osmem_ids(osmem_url, INDEX) == ["new0", "new2", "old1", "old2", "old3"]


def test_reject_every_item_forwards_nothing(fault_proxy: FaultProxy, osmem_url: str) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.reject_items(1, every=1)
    answer = es.bulk(operations=bulk_operations(creates(3)))
    assert answer["errors"] is True
    assert [item["create"]["status"] for item in answer["items"]] == [429, 429, 429]
    assert fault_proxy.items_forwarded == 0
    assert osmem_count(osmem_url, INDEX) == 0


def test_reject_items_in_a_compressed_body(fault_proxy: FaultProxy, osmem_url: str) -> None:
    client = os_client(fault_proxy.url, http_compress=True)
    fault_proxy.reject_items(1, fraction=0.5)
    results = list(os_helpers.streaming_bulk(client, creates(4), raise_on_error=False))
    assert sorted(failures(results)) == ["d1", "d3"]
    assert osmem_ids(osmem_url, INDEX) == ["d0", "d2"]


def test_bulk_helper_retries_rejected_items_once_each(
    fault_proxy: FaultProxy, osmem_url: str
) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.reject_items(2, every=2)
    # raise_on_error=False: with True the helper raises on the first 429 item instead of retrying
    retrying = helpers.streaming_bulk(
        es, creates(10), max_retries=3, initial_backoff=0.01, raise_on_error=False
    )
    results = list(retrying)
    assert all(ok for ok, _ in results)
    assert len(results) == 10
    assert osmem_ids(osmem_url, INDEX) == sorted(f"d{i}" for i in range(10))
    assert fault_proxy.bulk_requests == 3  # 10 items, then the 5 rejected, then the last 3
    assert fault_proxy.items_rejected == 5 + 2
    assert fault_proxy.items_forwarded == 10


# --- connections dropped mid-bulk -------------------------------------------------------------


def test_die_mid_bulk_after_forwarding(fault_proxy: FaultProxy, osmem_url: str) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.die_mid_bulk(1, forward=True)
    with pytest.raises(EsConnectionError):
        es.bulk(operations=bulk_operations(creates(5)))
    assert fault_proxy.connections_dropped == 1
    assert osmem_count(osmem_url, INDEX) == 5
    results = list(helpers.streaming_bulk(es, creates(5), raise_on_error=False))
    assert [r["create"]["status"] for _, r in results] == [409] * 5
    assert osmem_ids(osmem_url, INDEX) == [f"d{i}" for i in range(5)]


@pytest.mark.parametrize(("forward", "stored"), [(False, []), ("half", ["d0", "d1"])])
def test_die_mid_bulk_before_forwarding_all(
    fault_proxy: FaultProxy, osmem_url: str, forward: Any, stored: list[str]
) -> None:
    client = os_client(fault_proxy.url)
    fault_proxy.die_mid_bulk(1, forward=forward)
    with pytest.raises(TransportError):  # opensearchpy's ConnectionError
        os_helpers.bulk(client, creates(5))
    assert osmem_ids(osmem_url, INDEX) == stored
    assert fault_proxy.items_forwarded == len(stored)


# --- a server that goes away ------------------------------------------------------------------


def test_refuse_then_accept_on_the_same_url(fault_proxy: FaultProxy) -> None:
    es = es_client(fault_proxy.url)
    url = fault_proxy.url
    assert es.info()["cluster_name"] == "osmem"  # leaves a pooled keep-alive connection
    fault_proxy.refuse()
    started = time.monotonic()
    with pytest.raises(EsConnectionError):
        es.info()
    assert time.monotonic() - started < 1.0
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    fault_proxy.accept()
    assert fault_proxy.url == url
    assert es.info()["cluster_name"] == "osmem"


def test_hang_fires_the_client_timeout_then_forwards(
    fault_proxy: FaultProxy, osmem_url: str
) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.hang(0.5)
    started = time.monotonic()
    with pytest.raises(EsConnectionTimeout):
        es.options(request_timeout=0.1).index(index=INDEX, id="late", document={"n": 1})
    assert time.monotonic() - started < 0.5  # the client gave up before the proxy answered
    deadline = time.monotonic() + 3
    while osmem_count(osmem_url, INDEX) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert osmem_ids(osmem_url, INDEX) == ["late"]  # a timeout is no proof of failure


def test_held_request_is_dropped_when_the_proxy_stops(
    fault_proxy: FaultProxy, osmem_url: str
) -> None:
    es = es_client(fault_proxy.url)
    fault_proxy.hang(10)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            es.bulk(operations=bulk_operations(creates(2)))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    deadline = time.monotonic() + 3
    while not fault_proxy.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    fault_proxy.refuse()
    thread.join(3)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], EsConnectionError)
    assert osmem_count(osmem_url, INDEX) == 0
