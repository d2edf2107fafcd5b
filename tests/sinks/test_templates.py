"""Index templates, settings and lifecycle policies as data (no cluster)."""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any

import pytest

from otsentry.sinks import templates as t
from otsentry.sinks.routing import DATASETS, stream_name, template_name

FLAVOURS: tuple[t.Flavour, ...] = ("elasticsearch", "opensearch")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("data_streams", [True, False])
def test_one_index_template_per_dataset(flavour: t.Flavour, data_streams: bool) -> None:
    found = t.index_templates(flavour, data_streams=data_streams)
    assert sorted(found) == sorted(template_name(d) for d in DATASETS)
    for dataset in DATASETS:
        body = found[template_name(dataset)]
        assert body["priority"] > 100
        (pattern,) = body["index_patterns"]
        assert fnmatch(stream_name(dataset, "default"), pattern)
        assert not any(
            fnmatch(stream_name(other, "default"), pattern)
            for other in DATASETS
            if other != dataset
        )
        assert ("data_stream" in body) is data_streams
        composed = body["composed_of"]
        assert composed.index(t.MAPPINGS_COMPONENT) < composed.index(t.SETTINGS_COMPONENT)
        assert composed[-1] == f"{template_name(dataset)}@custom"  # the user's hook wins


def test_elasticsearch_composes_the_stack_templates_as_optional() -> None:
    alert = t.index_templates("elasticsearch")["logs-otsentry.alert"]
    assert alert["composed_of"][:2] == ["logs@mappings", "logs@settings"]
    # ECS dynamic rules before our catch-all for strings
    assert alert["composed_of"].index("ecs@mappings") < alert["composed_of"].index(
        t.MAPPINGS_COMPONENT
    )
    ours = {t.MAPPINGS_COMPONENT, t.SETTINGS_COMPONENT}
    assert set(alert["ignore_missing_component_templates"]) == set(alert["composed_of"]) - ours
    stats = t.index_templates("elasticsearch")["metrics-otsentry.stats"]
    assert stats["composed_of"][:2] == ["metrics@mappings", "metrics@settings"]
    # plain indices: logs@settings would attach the stack's rollover policy to an index
    plain = t.index_templates("elasticsearch", data_streams=False)["logs-otsentry.alert"]
    assert "logs@settings" not in plain["composed_of"]


def test_opensearch_has_no_stack_templates_and_no_ignore_missing_key() -> None:
    for body in t.index_templates("opensearch").values():
        assert "ignore_missing_component_templates" not in body
        assert not any(
            name.startswith(("logs@", "metrics@", "ecs@")) for name in body["composed_of"]
        )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_addresses_identifiers_message_and_times(flavour: t.Flavour) -> None:
    fields = t.mapped_fields(flavour)
    for name in (
        "source.ip",
        "destination.ip",
        "related.ip",
        "otsentry.asset.ip",
        "otsentry.asset.peers.ip",
        "otsentry.network.ip",
    ):
        assert fields[name] == "ip", name
    for name in (
        "rule.id",
        "event.action",
        "event.id",
        "event.dataset",
        "network.community_id",
        "otsentry.opcua.nodes.node_id",
    ):
        assert fields[name] == "keyword", name
    assert fields["message"] == "text" and fields["message.keyword"] == "keyword"
    for name in ("@timestamp", "event.created", "event.ingested", "otsentry.asset.first_seen"):
        assert fields[name] == "date", name
    assert fields["event.severity"] == "long" and fields["event.risk_score"] == "float"
    assert fields["otsentry.modbus.unit_id"] == "long"
    # every address-like name is an ip, never a keyword
    for name, kind in fields.items():
        if name.endswith(".ip"):
            assert kind == "ip", name


def test_free_form_objects_per_flavour() -> None:
    es, os_ = t.mapped_fields("elasticsearch"), t.mapped_fields("opensearch")
    assert es["otsentry.anomaly.expected"] == "flattened"
    assert os_["otsentry.anomaly.expected"] == "flat_object"
    old = t.mapped_fields("opensearch", flat_object=False)  # before OpenSearch 2.7
    assert old["otsentry.anomaly.expected"] == "object"
    assert t.mappings("opensearch", flat_object=False)["properties"]["otsentry"]["properties"][
        "anomaly"
    ]["properties"]["expected"] == {"type": "object", "enabled": False}


def test_mixed_type_values_never_reject() -> None:
    fields = t.mapped_fields()
    # coils are booleans, registers integers: a keyword takes both, the number sub-field
    # ignores what is no number
    assert fields["otsentry.modbus.values"] == "keyword"
    assert fields["otsentry.modbus.values.number"] == "double"
    props = t.mappings()["properties"]["otsentry"]["properties"]
    assert props["modbus"]["properties"]["values"]["fields"]["number"]["ignore_malformed"] is True
    # OPC UA values are scalars or nested ExtensionObjects: no field type takes both
    for name in ("nodes", "results", "values"):
        assert props["opcua"]["properties"][name]["properties"]["value"] == {
            "type": "object",
            "enabled": False,
        }


def test_dynamic_templates_map_unknown_strings_to_keywords() -> None:
    body = t.mappings()
    assert body["date_detection"] is False
    (strings,) = [
        d["otsentry_strings_as_keywords"]
        for d in body["dynamic_templates"]
        if "otsentry_strings_as_keywords" in d
    ]
    assert strings["match_mapping_type"] == "string"
    assert strings["mapping"] == {"type": "keyword", "ignore_above": 1024}
    assert body["properties"]["otsentry"]["properties"]["stats"]["dynamic"] is True


def test_settings() -> None:
    es = t.settings("elasticsearch")
    assert es["index.mapping.ignore_malformed"] is True
    assert es["index.mapping.total_fields.limit"] >= 1000
    assert es["index.lifecycle.name"] == t.POLICY_NAME
    assert "index.lifecycle.name" not in t.settings("elasticsearch", lifecycle=False)
    assert "index.lifecycle.name" not in t.settings("opensearch")  # ISM attaches itself
    assert len(t.mapped_fields()) < es["index.mapping.total_fields.limit"] / 2


def test_ilm_policy_rolls_over_and_deletes() -> None:
    phases = t.ilm_policy()["policy"]["phases"]
    assert phases["hot"]["actions"]["rollover"] == {
        "max_age": "30d",
        "max_primary_shard_size": "50gb",
    }
    assert phases["delete"] == {"min_age": "365d", "actions": {"delete": {}}}
    assert t.ilm_policy(90)["policy"]["phases"]["delete"]["min_age"] == "90d"


def test_ism_policy_is_the_equivalent_and_attaches_to_every_stream() -> None:
    policy = t.ism_policy(30)["policy"]
    states = {s["name"]: s for s in policy["states"]}
    assert policy["default_state"] == "hot"
    assert states["hot"]["actions"] == [
        {"rollover": {"min_index_age": "30d", "min_primary_shard_size": "50gb"}}
    ]
    assert states["hot"]["transitions"] == [
        {"state_name": "delete", "conditions": {"min_index_age": "30d"}}
    ]
    assert states["delete"]["actions"] == [{"delete": {}}]
    (template,) = policy["ism_template"]
    for dataset in DATASETS:
        assert any(fnmatch(stream_name(dataset, "prod"), p) for p in template["index_patterns"])


def test_digest_marks_content() -> None:
    first = t.component_templates()
    second = t.component_templates(lifecycle=False)
    for body in (*first.values(), *t.index_templates().values()):
        assert body["_meta"]["digest"] == t.digest(body)
        assert body["_meta"]["managed_by"] == "otsentry"
    assert first[t.MAPPINGS_COMPONENT] == second[t.MAPPINGS_COMPONENT]
    assert (
        first[t.SETTINGS_COMPONENT]["_meta"]["digest"]
        != second[t.SETTINGS_COMPONENT]["_meta"]["digest"]
    )
    policy: dict[str, Any] = t.ilm_policy()["policy"]
    assert policy["_meta"]["digest"] != t.ilm_policy(30)["policy"]["_meta"]["digest"]


def test_custom_hook_names() -> None:
    assert t.custom_template_name("otsentry.alert") == "logs-otsentry.alert@custom"
    assert t.custom_template()["template"] == {}
