"""``setup_cluster`` and ``check_cluster`` against the in-memory OpenSearch-compatible server, and
the lab's documents indexed under the templates."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from otsentry.cli.app import app
from otsentry.config import Config
from otsentry.ecs import DocumentIds, observer_doc, stats_doc
from otsentry.sinks import templates
from otsentry.sinks.clients import ClusterClient, connect, settings_for
from otsentry.sinks.routing import DATASETS, stream_name, target, template_name
from otsentry.sinks.setup import (
    CHECK_ID_PREFIX,
    Outcome,
    Status,
    check_cluster,
    setup_cluster,
)
from tests.conftest import LAB_PCAPS, ROOT
from tests.esnode import PlainJsonNode

NS = "default"


# -- the lab's documents, generated once ------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every document the lab replays give: each capture replayed with the example baseline
    (so anomaly alerts appear), and the benign Modbus learning run's second run. Keys:
    ``events``, ``alerts``, ``assets``, ``stats`` (one stats document per replay), and
    ``learning_events``: the learning run's protocol events (4000 Modbus polls)."""
    base = tmp_path_factory.mktemp("lab")
    captures = [
        *sorted(LAB_PCAPS.glob("*.pcap")),
        LAB_PCAPS / "learning" / "modbus_learn_run2.pcap",
    ]
    runner = CliRunner()
    docs: dict[str, list[dict[str, Any]]] = {
        "events": [],
        "alerts": [],
        "assets": [],
        "stats": [],
        "learning_events": [],
    }
    observer = observer_doc("lab")
    for i, capture in enumerate(captures):
        out = base / capture.stem
        args = [
            "replay",
            str(capture),
            "--baseline",
            str(ROOT / "baselines"),
            "--out",
            str(out),
            "-q",
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        for kind in ("events", "alerts", "assets"):
            into = "learning_events" if kind == "events" and "learn" in capture.stem else kind
            docs[into] += [
                orjson.loads(line) for line in (out / f"{kind}.ndjson").read_bytes().splitlines()
            ]
        stats = json.loads((out / "stats.json").read_text())
        docs["stats"].append(
            stats_doc(stats, observer, DocumentIds(f"lab{i}"), 1_700_000_000_000_000_000)
        )
    return docs


def _os(url: str) -> ClusterClient:
    return connect(settings_for("opensearch", url, Config()))


def _es(url: str) -> ClusterClient:
    return connect(settings_for("elasticsearch", url, Config()), node_class=PlainJsonNode)


@pytest.fixture
def os_client(osmem_url: str) -> Iterator[ClusterClient]:
    client = _os(osmem_url)
    yield client
    client.close()


@pytest.fixture
def es_client(osmem_url: str) -> Iterator[ClusterClient]:
    client = _es(osmem_url)
    yield client
    client.close()


def _get(client: ClusterClient, path: str) -> Any:
    status, body = client.request("GET", path)
    assert status == 200, body
    return body


def _index_templates(client: ClusterClient) -> dict[str, Any]:
    body = _get(client, "/_index_template")
    return {t["name"]: t["index_template"] for t in body["index_templates"]}


def _component_templates(client: ClusterClient) -> dict[str, Any]:
    body = _get(client, "/_component_template")
    return {t["name"]: t["component_template"] for t in body["component_templates"]}


def _bulk(client: ClusterClient, docs: list[dict[str, Any]]) -> list[Any]:
    """Create every document where the sink would put it; the per-item errors."""
    actions = (
        {"_op_type": "create", "_index": target(d, NS), "_id": d["event"]["id"], "_source": d}
        for d in docs
    )
    return [
        item
        for ok, item in client.streaming_bulk(actions, raise_on_error=False, chunk_size=2000)
        if not ok
    ]


def _field_type(mapping: dict[str, Any], dotted: str) -> str | None:
    node: Any = {"properties": mapping}
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node.get("type", "object")


def _shapes(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(dotted field, JSON type) of every value in ``docs``."""
    found: set[tuple[str, str]] = set()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list):
            for inner in value:
                walk(prefix, inner)
        else:
            found.add((prefix, type(value).__name__))

    for doc in docs:
        walk("", doc)
    return found


def _mapping(client: ClusterClient, index: str) -> dict[str, Any]:
    body = _get(client, f"/{index}/_mapping")
    (found,) = body.values()
    return found["mappings"]["properties"]  # type: ignore[no-any-return]


# -- setup --------------------------------------------------------------------------------------
def test_setup_installs_everything_retrievably(os_client: ClusterClient) -> None:
    steps = setup_cluster(os_client)
    outcomes = {s.what: s.outcome for s in steps}
    policy = steps[0]
    assert policy.what == "lifecycle policy otsentry" and policy.outcome is Outcome.SKIPPED
    assert "ISM is not available" in policy.reason and "no handler" in policy.reason
    assert all(o is Outcome.CREATED for w, o in outcomes.items() if w != policy.what), outcomes

    indexes = _index_templates(os_client)
    components = _component_templates(os_client)
    for dataset in DATASETS:
        name = template_name(dataset)
        body = indexes[name]
        assert body["index_patterns"] == [f"{name}-*"]
        assert body["priority"] == 200 and "data_stream" in body
        assert body["composed_of"] == ["otsentry@mappings", "otsentry@settings", f"{name}@custom"]
        assert components[f"{name}@custom"]["template"] == {}
    mapping = components["otsentry@mappings"]["template"]["mappings"]["properties"]
    assert _field_type(mapping, "source.ip") == "ip"
    assert _field_type(mapping, "otsentry.anomaly.item") == "flat_object"


def test_second_run_changes_nothing(os_client: ClusterClient) -> None:
    setup_cluster(os_client)
    again = setup_cluster(os_client)
    assert {s.outcome for s in again[1:]} == {Outcome.UNCHANGED}
    assert again[0].outcome is Outcome.SKIPPED  # no ISM on this cluster
    plain = setup_cluster(os_client, data_streams=False)  # another layout: the index templates
    changed = {s.what for s in plain if s.outcome is Outcome.UPDATED}
    assert changed == {f"index template {template_name(d)}" for d in DATASETS}
    assert "data_stream" not in _index_templates(os_client)["logs-otsentry.alert"]


def test_hand_edited_template_is_restored(os_client: ClusterClient) -> None:
    setup_cluster(os_client, data_streams=False)
    edited = _component_templates(os_client)["otsentry@mappings"]
    del edited["template"]["mappings"]["properties"]["source"]  # _meta.digest still matches
    status, _ = os_client.request("PUT", "/_component_template/otsentry@mappings", edited)
    assert status == 200
    steps = setup_cluster(os_client, data_streams=False)
    updated = [s.what for s in steps if s.outcome is Outcome.UPDATED]
    assert updated == ["component template otsentry@mappings"]
    mapping = _component_templates(os_client)["otsentry@mappings"]["template"]["mappings"]
    assert _field_type(mapping["properties"], "source.ip") == "ip"


def test_a_users_custom_template_survives_and_applies(os_client: ClusterClient) -> None:
    mine = {
        "template": {
            "mappings": {"properties": {"labels": {"properties": {"site": {"type": "keyword"}}}}}
        }
    }
    status, _ = os_client.request("PUT", "/_component_template/logs-otsentry.alert@custom", mine)
    assert status == 200
    steps = setup_cluster(os_client, data_streams=False)
    (hook,) = [s for s in steps if s.what == "component template logs-otsentry.alert@custom"]
    assert hook.outcome is Outcome.UNCHANGED and "never overwritten" in hook.reason
    assert setup_cluster(os_client, data_streams=False)[3].outcome is Outcome.UNCHANGED
    assert (
        _component_templates(os_client)["logs-otsentry.alert@custom"]["template"]
        == mine["template"]
    )
    index = stream_name("otsentry.alert", NS)
    status, body = os_client.request(
        "PUT", f"/{index}/_doc/1", {"labels": {"site": "plant-1"}, "source": {"ip": "10.0.0.1"}}
    )
    assert status == 200, body
    mapping = _mapping(os_client, index)
    assert _field_type(mapping, "labels.site") == "keyword"  # the hook is part of the template
    assert _field_type(mapping, "source.ip") == "ip"


def test_dry_run_sends_nothing(os_client: ClusterClient) -> None:
    steps = setup_cluster(os_client, dry_run=True)
    assert {s.outcome for s in steps} == {Outcome.PLANNED}
    assert [s.method for s in steps] == ["PUT"] * len(steps)
    assert steps[0].path == "/_plugins/_ism/policies/otsentry"
    assert steps[0].body == templates.ism_policy()
    assert _index_templates(os_client) == {}
    assert not any("otsentry" in name for name in _component_templates(os_client))
    # nothing at all reaches a cluster: not even one that does not exist
    gone = _os("http://127.0.0.1:9")
    assert len(setup_cluster(gone, dry_run=True)) == len(steps)


def test_retention_reaches_the_policy(os_client: ClusterClient) -> None:
    (policy, *_) = setup_cluster(os_client, dry_run=True, retention_days=30)
    hot = policy.body["policy"]["states"][0] if policy.body else {}
    assert hot["transitions"][0]["conditions"] == {"min_index_age": "30d"}


def test_elasticsearch_flavour_without_ilm(
    es_client: ClusterClient, os_client: ClusterClient
) -> None:
    steps = setup_cluster(es_client)  # the in-memory server has neither ILM nor flattened
    assert steps[0].outcome is Outcome.SKIPPED and "ILM is not available" in steps[0].reason
    mappings, *rest = steps[1:]
    assert mappings.what == "component template otsentry@mappings"
    assert mappings.outcome is Outcome.FAILED and "flattened" in mappings.reason
    assert {s.outcome for s in rest} == {Outcome.SKIPPED}
    assert {s.reason for s in rest} == {"an earlier step failed"}
    assert _index_templates(os_client) == {} and _component_templates(os_client) == {}
    planned = setup_cluster(es_client, dry_run=True)
    settings = planned[2].body["template"]["settings"] if planned[2].body else {}
    assert settings["index.lifecycle.name"] == "otsentry"  # a cluster with ILM would get it


# -- the lab's documents under the templates ------------------------------------------------
def test_every_lab_document_indexes_with_the_right_types(
    os_client: ClusterClient, lab: dict[str, list[dict[str, Any]]]
) -> None:
    anomalies = [a for a in lab["alerts"] if a["rule"]["ruleset"] == "otsentry-anomaly"]
    assert anomalies and len(lab["alerts"]) > len(anomalies)
    steps = setup_cluster(os_client, data_streams=False)
    assert not [s for s in steps if s.outcome is Outcome.FAILED]
    docs = [d for kind in ("events", "alerts", "assets", "stats") for d in lab[kind]]
    # the benign learning run's events carry nothing the capture's events do not: left out
    # for speed (the in-memory server takes about 1 ms a document)
    assert _shapes(lab["learning_events"]) <= _shapes(lab["events"])
    assert _bulk(os_client, docs) == []
    os_client.request("POST", "/*-otsentry.*/_refresh")
    counts = {kind: 0 for kind in DATASETS}
    for doc in docs:
        counts[doc["event"]["dataset"]] += 1
    for dataset, count in counts.items():
        assert _get(os_client, f"/{stream_name(dataset, NS)}/_count")["count"] == count, dataset

    alerts = _mapping(os_client, stream_name("otsentry.alert", NS))
    for name in ("source.ip", "destination.ip", "related.ip"):
        assert _field_type(alerts, name) == "ip", name
    assert _field_type(alerts, "rule.id") == "keyword"
    assert _field_type(alerts, "event.action") == "keyword"
    assert _field_type(alerts, "message") == "text"
    assert _field_type(alerts, "otsentry.anomaly.expected") == "flat_object"
    modbus = _mapping(os_client, stream_name("otsentry.modbus", NS))
    assert _field_type(modbus, "source.ip") == "ip"
    assert _field_type(modbus, "otsentry.modbus.values") == "keyword"
    assets = _mapping(os_client, stream_name("otsentry.asset", NS))
    assert _field_type(assets, "otsentry.asset.ip") == "ip"
    stats = _mapping(os_client, stream_name("otsentry.stats", NS))
    assert _field_type(stats, "otsentry.stats.packets") == "long"


def test_lab_documents_carry_no_field_the_mapping_misses(
    lab: dict[str, list[dict[str, Any]]],
) -> None:
    """Every value in the lab documents lands in an explicitly mapped field (or a free-form or
    opaque object): none is left to dynamic mapping, except the stats."""
    fields = templates.mapped_fields("opensearch")
    whole = {name for name, kind in fields.items() if kind in ("flat_object", "object")}
    unmapped: set[str] = set()

    def walk(prefix: str, value: Any) -> None:
        if prefix in whole or prefix == "otsentry.stats":
            return
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list):
            for inner in value:
                walk(prefix, inner)
        elif value is not None and prefix not in fields:
            unmapped.add(prefix)

    for docs in lab.values():
        for doc in docs:
            walk("", doc)
    assert not unmapped


def test_cidr_query_finds_alerts(
    os_client: ClusterClient, lab: dict[str, list[dict[str, Any]]]
) -> None:
    setup_cluster(os_client, data_streams=False)
    assert _bulk(os_client, lab["alerts"]) == []
    index = stream_name("otsentry.alert", NS)
    os_client.request("POST", f"/{index}/_refresh")

    def ids(body: Any) -> set[str]:
        return {h["_id"] for h in body["hits"]["hits"]}

    def alerts_from(net: str, ruleset: str | None = None) -> set[str]:
        return {
            a["event"]["id"]
            for a in lab["alerts"]
            if "source" in a
            and ipaddress.ip_address(a["source"]["ip"]) in ipaddress.ip_network(net)
            and ruleset in (None, a["rule"]["ruleset"])
        }

    wanted = alerts_from("10.10.30.64/27")  # the lab's attacker
    assert 0 < len(wanted) < len(lab["alerts"])
    query = {"query": {"term": {"source.ip": "10.10.30.64/27"}}, "size": 1000}
    status, body = os_client.request("POST", f"/{index}/_search", query)
    assert status == 200, body
    assert ids(body) == wanted
    text = 'source.ip:"10.10.30.0/28" AND rule.ruleset:otsentry-anomaly'
    query = {"query": {"query_string": {"query": text}}, "size": 1000}
    status, body = os_client.request("POST", f"/{index}/_search", query)
    assert status == 200, body
    wanted = alerts_from("10.10.30.0/28", "otsentry-anomaly")
    assert wanted and ids(body) == wanted


# -- check ------------------------------------------------------------------------------------
def _by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_check_before_and_after_setup(os_client: ClusterClient) -> None:
    before = _by_name(check_cluster(os_client, data_streams=False))
    assert before["connectivity"].status is Status.OK
    assert before["version"].status is Status.OK and before["version"].detail.startswith(
        "opensearch "
    )
    assert before["privileges"].status is Status.SKIPPED
    assert before["privileges"].detail == "no security plugin: not checked"
    assert before["templates"].status is Status.WARN and "missing" in before["templates"].detail
    assert before["test write"].status is Status.SKIPPED  # would create the index unmapped
    assert os_client.request("GET", f"/{stream_name('otsentry.alert', NS)}")[0] == 404

    setup_cluster(os_client, data_streams=False)
    after = _by_name(check_cluster(os_client, data_streams=False))
    assert after["templates"].status is Status.OK
    write = after["test write"]
    assert write.status is Status.OK and CHECK_ID_PREFIX in write.detail
    index = stream_name("otsentry.alert", NS)
    os_client.request("POST", f"/{index}/_refresh")
    assert _get(os_client, f"/{index}/_count")["count"] == 0  # deleted again


def test_check_sees_an_outdated_template(os_client: ClusterClient) -> None:
    setup_cluster(os_client, data_streams=False)
    body = templates.index_templates("opensearch", data_streams=False)["logs-otsentry.asset"]
    body["priority"] = 150
    os_client.request("PUT", "/_index_template/logs-otsentry.asset", body)
    templates_check = _by_name(check_cluster(os_client, data_streams=False))["templates"]
    assert templates_check.status is Status.WARN
    assert templates_check.detail == "outdated logs-otsentry.asset: run otsentry es setup"


def test_check_an_unreachable_cluster() -> None:
    (only,) = check_cluster(_os("http://127.0.0.1:9"))
    assert only.name == "connectivity" and only.status is Status.FAIL
    assert only.detail == "connection refused"


def test_check_names_the_wrong_distribution(es_client: ClusterClient) -> None:
    version = _by_name(check_cluster(es_client))["version"]
    assert version.status is Status.FAIL
    assert "this is opensearch, use --opensearch" in version.detail
