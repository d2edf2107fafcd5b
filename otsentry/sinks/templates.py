"""Index templates and lifecycle policies for Elasticsearch and OpenSearch: pure data.

What ``otsentry es setup`` installs (see docs/elasticsearch.md):

- ``otsentry@mappings``: the explicit ECS mapping of every field otsentry writes (``ip`` for
  addresses, ``keyword`` for identifiers, ``text`` for ``message``, ``date`` for times, typed
  numbers), free-form structures as ``flattened`` (Elasticsearch) / ``flat_object``
  (OpenSearch), and dynamic templates for anything else.
- ``otsentry@settings``: malformed values ignored instead of rejecting the document, a
  total-fields limit, and on Elasticsearch the ILM policy name.
- One composable index template per dataset (``logs-otsentry.alert`` …) matching
  ``<name>-*`` at priority 200, composed of Elastic's stack templates (Elasticsearch only), ours
  and a ``<name>@custom`` hook for the user.
- The lifecycle policy ``otsentry``: ILM on Elasticsearch, ISM on OpenSearch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, Literal

from otsentry.sinks.routing import DATASETS, template_name

Flavour = Literal["elasticsearch", "opensearch"]

MAPPINGS_COMPONENT: Final = "otsentry@mappings"
SETTINGS_COMPONENT: Final = "otsentry@settings"
POLICY_NAME: Final = "otsentry"
#: above the built-in ``logs`` / ``metrics`` templates (100) that match ``logs-*-*``
PRIORITY: Final = 200
#: hot phase: roll over after this age or primary shard size
ROLLOVER_MAX_AGE: Final = "30d"
ROLLOVER_MAX_PRIMARY_SHARD_SIZE: Final = "50gb"
#: default retention: delete this many days after rollover (ISM: after index creation)
RETENTION_DAYS: Final = 365
TOTAL_FIELDS_LIMIT: Final = 2000
IGNORE_ABOVE: Final = 1024
#: marks what otsentry installed (``_meta.managed_by``)
MANAGED_BY: Final = "otsentry"

# Field kinds of the tables below; ``_field`` turns them into mappings.
K: Final = "keyword"
L: Final = "long"
D: Final = "double"
F: Final = "float"
B: Final = "boolean"
IP: Final = "ip"
DATE: Final = "date"
TEXT: Final = "text"  # text with a ``.keyword`` sub-field
FREE: Final = "free"  # free-form object: flattened / flat_object
VALUE: Final = "value"  # scalar of any type: keyword with a ``.number`` sub-field
OPAQUE: Final = "opaque"  # anything at all (objects, scalars, lists): kept in _source only

#: ECS fields (https://www.elastic.co/guide/en/ecs/current/), as our documents carry them
ECS_FIELDS: Final[dict[str, str]] = {
    "@timestamp": DATE,
    "ecs.version": K,
    "message": TEXT,
    "tags": K,
    "labels.segment": K,
    "event.kind": K,
    "event.category": K,
    "event.type": K,
    "event.action": K,
    "event.outcome": K,
    "event.dataset": K,
    "event.module": K,
    "event.id": K,
    "event.reason": K,
    "event.severity": L,
    "event.risk_score": F,
    "event.duration": L,
    "event.created": DATE,
    "event.ingested": DATE,
    "event.start": DATE,
    "event.end": DATE,
    "rule.id": K,
    "rule.name": K,
    "rule.version": K,
    "rule.ruleset": K,
    "rule.category": K,
    "rule.reference": K,
    "threat.framework": K,
    "threat.tactic.id": K,
    "threat.tactic.name": K,
    "threat.tactic.reference": K,
    "threat.technique.id": K,
    "threat.technique.name": K,
    "threat.technique.reference": K,
    "source.ip": IP,
    "source.port": L,
    "source.mac": K,
    "destination.ip": IP,
    "destination.port": L,
    "destination.mac": K,
    "related.ip": IP,
    "network.transport": K,
    "network.protocol": K,
    "network.community_id": K,
    "network.vlan.id": K,
    "network.inner.vlan.id": K,
    "observer.type": K,
    "observer.vendor": K,
    "observer.product": K,
    "observer.version": K,
    "observer.name": K,
    "observer.hostname": K,
    "observer.ingress.interface.name": K,
    "observer.ingress.zone": K,
    "device.id": K,
    "device.manufacturer": K,
    "device.model.identifier": K,
    "device.model.name": K,
}

#: ``otsentry.alert``, ``otsentry.anomaly``, ``otsentry.evidence``: what an alert adds
ALERT_FIELDS: Final[dict[str, str]] = {
    "alert.kind": K,
    "alert.count": L,
    "alert.attack_version": K,
    "alert.group": FREE,  # the correlation rule's group-by fields and values
    "anomaly.kind": K,
    "anomaly.aspect": K,
    "anomaly.level": K,
    "anomaly.baseline.id": K,
    "anomaly.baseline.version": K,
    "anomaly.baseline.format_version": L,
    "anomaly.baseline.sufficient": B,
    "anomaly.score": D,
    "anomaly.model": K,
    "anomaly.items_dropped": L,
    # per anomaly kind different keys (some of them dotted feature names): free-form
    "anomaly.item": FREE,
    "anomaly.items": FREE,
    "anomaly.expected": FREE,
    "anomaly.observed": FREE,
    "anomaly.features": FREE,
    "evidence.pcap": K,
}

ASSET_FIELDS: Final[dict[str, str]] = {
    "asset.ip": IP,
    "asset.mac": K,
    "asset.vendor": K,
    "asset.segment": K,
    "asset.vlan": L,
    "asset.first_seen": DATE,
    "asset.last_seen": DATE,
    "asset.roles": K,
    "asset.role_evidence.role": K,
    "asset.role_evidence.first_seen": DATE,
    "asset.role_evidence.action": K,
    "asset.role_evidence.peer": IP,
    "asset.role_evidence.connection_type": K,
    "asset.protocols": K,
    "asset.services.transport": K,
    "asset.services.port": L,
    "asset.services.protocol": K,
    "asset.client_protocols": K,
    "asset.peers.count": L,
    "asset.peers.ip": IP,
    "asset.packets": L,
    "asset.bytes": L,
    "asset.identity": FREE,  # per protocol what the device said about itself
}

#: flow and ARP records (``otsentry.network``), in network alerts
NETWORK_FIELDS: Final[dict[str, str]] = {
    "network.anomalies": K,
    "network.direction": K,
    "network.arp_op": K,
    "network.ip": IP,
    "network.old_mac": K,
    "network.new_mac": K,
    "network.virtual_mac": K,
    "network.new_mac_ips": L,
    "network.old_mac_held_seconds": D,
    "network.old_mac_idle_seconds": D,
    "network.changes": L,
    "network.flips": L,
    "network.gratuitous": B,
    "network.solicited": B,
    "network.suppressed": L,
    "network.ics_protocols": K,
    "network.ics_service": K,
    "network.protocol": K,
    "network.transport": K,
    "network.roles_from": K,
    "network.server_port": L,
    "network.syn": B,
    "network.vlan": L,
    "network.state": K,
    "network.reason": K,
    "network.duration": D,
    "network.bytes_to_client": L,
    "network.bytes_to_server": L,
    "network.packets_to_client": L,
    "network.packets_to_server": L,
}

_COMMON_RECORD: Final[dict[str, str]] = {
    "direction": K,
    "anomalies": K,
    "request_frame": L,
    "response_frame": L,
    "skipped_bytes": L,
    "sample": K,
    "truncated": B,
}

MODBUS_FIELDS: Final[dict[str, str]] = {
    **{f"modbus.{k}": v for k, v in _COMMON_RECORD.items()},
    "modbus.transaction_id": L,
    "modbus.unit_id": L,
    "modbus.function_code": L,
    "modbus.function": K,
    "modbus.response_function_code": L,
    "modbus.exception_code": L,
    "modbus.exception": K,
    "modbus.address": L,
    "modbus.quantity": L,
    "modbus.byte_count": L,
    "modbus.response_byte_count": L,
    "modbus.values": VALUE,  # booleans for coils and discrete inputs, integers for registers
    "modbus.write_address": L,
    "modbus.write_quantity": L,
    "modbus.write_values": L,
    "modbus.and_mask": L,
    "modbus.or_mask": L,
    "modbus.data": K,
    "modbus.length": L,
    "modbus.received_bytes": L,
    "modbus.sub_function": L,
    "modbus.sub_function_name": K,
    "modbus.status": L,
    "modbus.event_count": L,
    "modbus.message_count": L,
    "modbus.events": L,
    "modbus.fifo_count": L,
    "modbus.file_records.file_number": L,
    "modbus.file_records.record_number": L,
    "modbus.file_records.record_length": L,
    "modbus.file_records.reference_type": L,
    "modbus.file_records.values": L,
    "modbus.mei_type": L,
    "modbus.mei": K,
    "modbus.read_device_id_code": L,
    "modbus.read_device_id": K,
    "modbus.object_id": L,
    "modbus.next_object_id": L,
    "modbus.more_follows": B,
    "modbus.conformity_level": L,
    "modbus.objects.vendor_name": K,
    "modbus.objects.product_code": K,
    "modbus.objects.revision": K,
    "modbus.objects.vendor_url": K,
    "modbus.objects.product_name": K,
    "modbus.objects.model_name": K,
    "modbus.objects.user_application_name": K,
    "modbus.server_id": K,
    "modbus.server_id_text": K,
    "modbus.run_indicator": K,
    "modbus.umas.function_code": L,
    "modbus.umas.pair_key": L,
    "modbus.umas.return_code": L,
}

S7COMM_FIELDS: Final[dict[str, str]] = {
    **{f"s7comm.{k}": v for k, v in _COMMON_RECORD.items()},
    "s7comm.rosctr": L,
    "s7comm.rosctr_name": K,
    "s7comm.response_rosctr": L,
    "s7comm.pdu_reference": L,
    "s7comm.function": L,
    "s7comm.function_name": K,
    "s7comm.error_class": L,
    "s7comm.error_code": L,
    "s7comm.error": K,
    "s7comm.item_count": L,
    "s7comm.items.syntax_id": L,
    "s7comm.items.transport_size": L,
    "s7comm.items.transport_size_name": K,
    "s7comm.items.length": L,
    "s7comm.items.db": L,
    "s7comm.items.area": L,
    "s7comm.items.area_name": K,
    "s7comm.items.byte": L,
    "s7comm.items.bit": L,
    "s7comm.values.return_code": L,
    "s7comm.values.return_code_name": K,
    "s7comm.values.transport_size": L,
    "s7comm.values.length": L,
    "s7comm.values.value": K,
    "s7comm.return_code": L,
    "s7comm.return_code_name": K,
    "s7comm.return_codes": L,
    "s7comm.connection.connection_type": K,
    "s7comm.connection.src_tsap": K,
    "s7comm.connection.dst_tsap": K,
    "s7comm.connection.rack": L,
    "s7comm.connection.slot": L,
    "s7comm.connection_type": K,
    "s7comm.src_tsap": K,
    "s7comm.dst_tsap": K,
    "s7comm.rack": L,
    "s7comm.slot": L,
    "s7comm.tpdu_size": L,
    "s7comm.class": L,
    "s7comm.cotp_type": L,
    "s7comm.cotp_type_name": K,
    "s7comm.src_ref": L,
    "s7comm.dst_ref": L,
    "s7comm.reason": L,
    "s7comm.status": L,
    "s7comm.max_amq_calling": L,
    "s7comm.max_amq_called": L,
    "s7comm.pdu_size": L,
    "s7comm.userdata_type": L,
    "s7comm.userdata_type_name": K,
    "s7comm.userdata_group": L,
    "s7comm.userdata_group_name": K,
    "s7comm.userdata_subfunction": L,
    "s7comm.userdata_subfunction_name": K,
    "s7comm.userdata_error_code": L,
    "s7comm.response_userdata_group": L,
    "s7comm.response_userdata_subfunction": L,
    "s7comm.sequence": L,
    "s7comm.data_unit_reference": L,
    "s7comm.last_data_unit": B,
    "s7comm.transport_size": L,
    "s7comm.szl_id": L,
    "s7comm.szl_index": L,
    "s7comm.szl_record_length": L,
    "s7comm.szl_record_count": L,
    "s7comm.szl_records.index": L,
    "s7comm.szl_records.mlfb": K,
    "s7comm.szl_records.module_type_id": L,
    "s7comm.szl_records.ausbg": L,
    "s7comm.clock": DATE,
    "s7comm.pi_service": K,
    "s7comm.pi_service_name": K,
    "s7comm.pi_arguments": K,
    "s7comm.pi_blocks": K,
    "s7comm.restart": K,
    "s7comm.block": K,
    "s7comm.block_type": K,
    "s7comm.block_number": L,
    "s7comm.block_count": L,
    "s7comm.block_counts": FREE,  # block type → count
    # block numbers (list blocks of type) or block objects (PI services): both kept as sent
    "s7comm.blocks": OPAQUE,
    "s7comm.block_languages": K,
    "s7comm.block_language": K,
    "s7comm.block_name": K,
    "s7comm.block_version": K,
    "s7comm.block_flags": L,
    "s7comm.block_security": K,
    "s7comm.block_checksum": L,
    "s7comm.block_data_length": L,
    "s7comm.block_info_length": L,
    "s7comm.subblock_type": L,
    "s7comm.load_memory_length": L,
    "s7comm.local_data_length": L,
    "s7comm.mc7_length": L,
    "s7comm.ssb_length": L,
    "s7comm.add_length": L,
    "s7comm.author": K,
    "s7comm.family": K,
    "s7comm.code_timestamp": DATE,
    "s7comm.interface_timestamp": DATE,
    "s7comm.filename": K,
    "s7comm.filesystem": K,
    "s7comm.upload_id": L,
    "s7comm.password_present": B,
    "s7comm.tis_parameter_size": L,
    "s7comm.tis_data_size": L,
}

_APPLICATION: Final[dict[str, str]] = {
    "application_name": K,
    "application_uri": K,
    "application_type": K,
    "product_uri": K,
    "discovery_urls": K,
}

OPCUA_FIELDS: Final[dict[str, str]] = {
    **{f"opcua.{k}": v for k, v in _COMMON_RECORD.items()},
    "opcua.message_type": K,
    "opcua.response_message_type": K,
    "opcua.is_response": B,
    "opcua.response_is_response": B,
    "opcua.chunk_count": L,
    "opcua.protocol_version": L,
    "opcua.receive_buffer_size": L,
    "opcua.send_buffer_size": L,
    "opcua.max_message_size": L,
    "opcua.max_chunk_count": L,
    "opcua.response_receive_buffer_size": L,
    "opcua.response_send_buffer_size": L,
    "opcua.response_max_message_size": L,
    "opcua.response_max_chunk_count": L,
    "opcua.endpoint_url": K,
    "opcua.secure_channel_id": L,
    "opcua.response_secure_channel_id": L,
    "opcua.security_policy_uri": K,
    "opcua.security_mode": K,
    "opcua.sender_certificate_thumbprint": K,
    "opcua.receiver_certificate_thumbprint": K,
    "opcua.client_certificate_thumbprint": K,
    "opcua.server_certificate_thumbprint": K,
    "opcua.encrypted": B,
    "opcua.encryption_algorithm": K,
    "opcua.channel.security_policy": K,
    "opcua.channel.security_policy_uri": K,
    "opcua.channel.security_mode": K,
    "opcua.channel.client_certificate_thumbprint": K,
    "opcua.channel.server_certificate_thumbprint": K,
    "opcua.sequence_number": L,
    "opcua.response_sequence_number": L,
    "opcua.request_id": L,
    "opcua.token_id": L,
    "opcua.token_created_at": DATE,
    "opcua.request_type": K,
    "opcua.requested_lifetime": L,
    "opcua.revised_lifetime": L,
    "opcua.client_protocol_version": L,
    "opcua.server_protocol_version": L,
    "opcua.service_id": L,
    "opcua.service": K,
    "opcua.response_service_id": L,
    "opcua.response_service": K,
    "opcua.request_handle": L,
    "opcua.timestamp": DATE,
    "opcua.response_timestamp": DATE,
    "opcua.timeout_hint": L,
    "opcua.service_result": L,
    "opcua.service_result_name": K,
    "opcua.session_id": K,
    "opcua.session_name": K,
    "opcua.requested_session_timeout": D,
    "opcua.revised_session_timeout": D,
    "opcua.max_request_message_size": L,
    "opcua.max_response_message_size": L,
    **{f"opcua.client.{k}": v for k, v in _APPLICATION.items()},
    **{f"opcua.servers.{k}": v for k, v in _APPLICATION.items()},
    "opcua.endpoints.endpoint_url": K,
    "opcua.endpoints.security_mode": K,
    "opcua.endpoints.security_policy_uri": K,
    "opcua.endpoints.security_level": L,
    "opcua.endpoints.transport_profile_uri": K,
    "opcua.endpoints.user_token_types": K,
    "opcua.endpoints.server_certificate_thumbprint": K,
    **{f"opcua.endpoints.server.{k}": v for k, v in _APPLICATION.items()},
    "opcua.identity_token_type": K,
    "opcua.policy_id": K,
    "opcua.user_name": K,
    "opcua.password_encrypted": B,
    "opcua.locale_ids": K,
    "opcua.max_age": D,
    "opcua.timestamps_to_return": K,
    "opcua.node_count": L,
    "opcua.nodes.node_id": K,
    "opcua.nodes.attribute_id": L,
    "opcua.nodes.attribute": K,
    "opcua.nodes.browse_direction": K,
    "opcua.nodes.reference_type_id": K,
    "opcua.nodes.include_subtypes": B,
    "opcua.nodes.type": K,
    "opcua.nodes.status": L,
    "opcua.nodes.status_name": K,
    "opcua.nodes.value": OPAQUE,  # a written value: any OPC UA type, ExtensionObjects nested
    "opcua.requested_max_references_per_node": L,
    "opcua.result_count": L,
    "opcua.results.status": L,
    "opcua.results.status_name": K,
    "opcua.results.type": K,
    "opcua.results.array_length": L,
    "opcua.results.value": OPAQUE,  # a read value: any OPC UA type, ExtensionObjects nested
    "opcua.results.server_timestamp": DATE,
    "opcua.results.source_timestamp": DATE,
    "opcua.results.reference_count": L,
    "opcua.results.continuation_point": B,
    "opcua.results.targets": OPAQUE,  # node ids (browse) or target objects (translate)
    "opcua.results.monitored_item_id": L,
    "opcua.results.revised_sampling_interval": D,
    "opcua.results.revised_queue_size": L,
    "opcua.results.input_argument_results.status": L,
    "opcua.results.input_argument_results.status_name": K,
    "opcua.results.output_arguments.type": K,
    "opcua.results.output_arguments.value": OPAQUE,
    "opcua.reference_count": L,
    "opcua.continuation_point_count": L,
    "opcua.release_continuation_points": B,
    "opcua.path_count": L,
    "opcua.paths.start_node": K,
    "opcua.paths.path": K,
    "opcua.subscription_id": L,
    "opcua.subscription_ids": L,
    "opcua.delete_subscriptions": B,
    "opcua.requested_publishing_interval": D,
    "opcua.revised_publishing_interval": D,
    "opcua.requested_lifetime_count": L,
    "opcua.revised_lifetime_count": L,
    "opcua.requested_max_keep_alive_count": L,
    "opcua.revised_max_keep_alive_count": L,
    "opcua.max_notifications_per_publish": L,
    "opcua.publishing_enabled": B,
    "opcua.priority": L,
    "opcua.item_count": L,
    "opcua.items.node_id": K,
    "opcua.items.attribute_id": L,
    "opcua.items.attribute": K,
    "opcua.items.monitoring_mode": K,
    "opcua.items.client_handle": L,
    "opcua.items.sampling_interval": D,
    "opcua.items.queue_size": L,
    "opcua.items.discard_oldest": B,
    "opcua.acknowledgement_count": L,
    "opcua.acknowledgements.subscription_id": L,
    "opcua.acknowledgements.sequence_number": L,
    "opcua.available_sequence_numbers": L,
    "opcua.more_notifications": B,
    "opcua.notification_sequence_number": L,
    "opcua.publish_time": DATE,
    "opcua.notification_count": L,
    "opcua.values.client_handle": L,
    "opcua.values.type": K,
    "opcua.values.value": OPAQUE,  # a monitored item's value: any OPC UA type
    "opcua.values.status": L,
    "opcua.values.status_name": K,
    "opcua.values.source_timestamp": DATE,
    "opcua.values.server_timestamp": DATE,
    "opcua.method_count": L,
    "opcua.methods.object_id": K,
    "opcua.methods.method_id": K,
    "opcua.methods.input_arguments.type": K,
    "opcua.methods.input_arguments.value": OPAQUE,
}

#: everything under ``otsentry.`` (relative names)
OTSENTRY_FIELDS: Final[dict[str, str]] = {
    **ALERT_FIELDS,
    **ASSET_FIELDS,
    **NETWORK_FIELDS,
    **MODBUS_FIELDS,
    **S7COMM_FIELDS,
    **OPCUA_FIELDS,
}


def _free_form_type(flavour: Flavour, flat_object: bool) -> str | None:
    """The free-form object type: ``flattened`` / ``flat_object``; None: an opaque object
    (OpenSearch before 2.7 has no ``flat_object``)."""
    if flavour == "elasticsearch":
        return "flattened"
    return "flat_object" if flat_object else None


def _field(kind: str, flavour: Flavour, flat_object: bool) -> dict[str, Any]:
    """The mapping of one field kind."""
    if kind == K:
        return {"type": "keyword", "ignore_above": IGNORE_ABOVE}
    if kind == TEXT:
        return {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": IGNORE_ABOVE}},
        }
    if kind == VALUE:
        return {
            "type": "keyword",
            "ignore_above": IGNORE_ABOVE,
            "fields": {"number": {"type": "double", "ignore_malformed": True}},
        }
    if kind == FREE:
        free = _free_form_type(flavour, flat_object)
        return {"type": free} if free else {"type": "object", "enabled": False}
    if kind == OPAQUE:
        return {"type": "object", "enabled": False}
    if kind in (L, D, F, DATE, IP):
        return {"type": kind, "ignore_malformed": True}
    return {"type": kind}


def _properties(fields: Mapping[str, str], flavour: Flavour, flat_object: bool) -> dict[str, Any]:
    """Dotted field names → nested ``properties``."""
    root: dict[str, Any] = {}
    for name, kind in fields.items():
        *parents, leaf = name.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = _field(kind, flavour, flat_object)
    return root


def dynamic_templates() -> list[dict[str, Any]]:
    """For fields the mapping does not name: stats numbers as doubles, strings as keywords."""
    return [
        {
            "otsentry_stats_floats": {
                "path_match": "otsentry.stats.*",
                "match_mapping_type": "double",
                "mapping": {"type": "double"},
            }
        },
        {
            "otsentry_strings_as_keywords": {
                "match_mapping_type": "string",
                "mapping": {"type": "keyword", "ignore_above": IGNORE_ABOVE},
            }
        },
    ]


def mappings(flavour: Flavour = "elasticsearch", *, flat_object: bool = True) -> dict[str, Any]:
    """The ``mappings`` of ``otsentry@mappings``."""
    properties = _properties(ECS_FIELDS, flavour, flat_object)
    properties["otsentry"] = {
        "properties": {
            **_properties(OTSENTRY_FIELDS, flavour, flat_object),
            # the run's stats.json in ``otsentry.stats`` documents: mapped dynamically
            "stats": {"type": "object", "dynamic": True},
        }
    }
    return {
        "dynamic": True,
        "date_detection": False,
        "dynamic_templates": dynamic_templates(),
        "properties": properties,
    }


def mapped_fields(
    flavour: Flavour = "elasticsearch", *, flat_object: bool = True
) -> dict[str, str]:
    """Dotted field name → mapping type, sub-fields included (``message.keyword``), for every
    field ``otsentry@mappings`` maps explicitly. Free-form and opaque objects appear under their
    own name (``flattened`` / ``flat_object`` / ``object``)."""
    out: dict[str, str] = {}

    def walk(prefix: str, props: Mapping[str, Any]) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if "properties" in spec:
                walk(f"{path}.", spec["properties"])
                continue
            out[path] = spec.get("type", "object")
            for sub, sub_spec in spec.get("fields", {}).items():
                out[f"{path}.{sub}"] = sub_spec["type"]

    walk("", mappings(flavour, flat_object=flat_object)["properties"])
    out.pop("otsentry.stats", None)
    return dict(sorted(out.items()))


def settings(flavour: Flavour = "elasticsearch", *, lifecycle: bool = True) -> dict[str, Any]:
    """The ``settings`` of ``otsentry@settings``. ``lifecycle``: name the ILM policy
    (Elasticsearch with data streams and ILM; a plain index has nothing to roll over to, and
    OpenSearch's ISM policy attaches itself through its ``ism_template``)."""
    out: dict[str, Any] = {
        "index.mapping.ignore_malformed": True,
        "index.mapping.total_fields.limit": TOTAL_FIELDS_LIMIT,
    }
    if flavour == "elasticsearch" and lifecycle:
        out["index.lifecycle.name"] = POLICY_NAME
    return out


def digest(body: Mapping[str, Any]) -> str:
    """A short content hash of a body (``_meta`` left out): tells an outdated install apart."""
    content = {k: v for k, v in body.items() if k != "_meta"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _with_meta(body: dict[str, Any], description: str) -> dict[str, Any]:
    body["_meta"] = {"managed_by": MANAGED_BY, "description": description, "digest": digest(body)}
    return body


def component_templates(
    flavour: Flavour = "elasticsearch", *, lifecycle: bool = True, flat_object: bool = True
) -> dict[str, dict[str, Any]]:
    """``otsentry@mappings`` and ``otsentry@settings``: name → request body (``lifecycle`` and
    ``flat_object`` as for ``settings`` and ``mappings``)."""
    return {
        MAPPINGS_COMPONENT: _with_meta(
            {"template": {"mappings": mappings(flavour, flat_object=flat_object)}},
            "otsentry: ECS mapping of alerts, protocol events, assets and stats",
        ),
        SETTINGS_COMPONENT: _with_meta(
            {"template": {"settings": settings(flavour, lifecycle=lifecycle)}},
            "otsentry: index settings (lifecycle, malformed values, field limit)",
        ),
    }


def custom_template_name(dataset: str) -> str:
    """The user's hook for one dataset's template: ``logs-otsentry.alert@custom``."""
    return f"{template_name(dataset)}@custom"


def custom_template() -> dict[str, Any]:
    """An empty ``@custom`` component template (OpenSearch needs it to exist)."""
    return {
        "template": {},
        "_meta": {"description": "user settings and mappings for this otsentry dataset"},
    }


def _stack_components(kind: str, data_streams: bool) -> list[str]:
    """Elastic's built-in component templates for a data stream type (8.x names). Their
    ``@settings`` attach the stack's own lifecycle policy, so plain indices leave it out."""
    names = [f"{kind}@mappings"]
    if data_streams:
        names.append(f"{kind}@settings")
    return names


def index_templates(
    flavour: Flavour = "elasticsearch", *, data_streams: bool = True
) -> dict[str, dict[str, Any]]:
    """One composable index template per dataset: name → request body."""
    out: dict[str, dict[str, Any]] = {}
    for dataset, kind in DATASETS.items():
        name = template_name(dataset)
        custom = custom_template_name(dataset)
        composed: list[str] = []
        optional: list[str] = []
        if flavour == "elasticsearch":  # ECS dynamic rules first: they name fields we do not
            stack = [*_stack_components(kind, data_streams), "ecs@mappings"]
            composed += stack
            optional += [*stack, custom]
        composed += [MAPPINGS_COMPONENT, SETTINGS_COMPONENT, custom]
        body: dict[str, Any] = {
            "index_patterns": [f"{name}-*"],
            "priority": PRIORITY,
            "composed_of": composed,
        }
        if optional:
            body["ignore_missing_component_templates"] = optional
        if data_streams:
            body["data_stream"] = {}
        out[name] = _with_meta(body, f"otsentry: {dataset} documents")
    return out


def ilm_policy(retention_days: int = RETENTION_DAYS) -> dict[str, Any]:
    """The Elasticsearch ILM policy ``otsentry``: roll over at 30 days or a 50 GB primary shard,
    delete ``retention_days`` after rollover."""
    body: dict[str, Any] = {
        "policy": {
            "phases": {
                "hot": {
                    "min_age": "0ms",
                    "actions": {
                        "rollover": {
                            "max_age": ROLLOVER_MAX_AGE,
                            "max_primary_shard_size": ROLLOVER_MAX_PRIMARY_SHARD_SIZE,
                        }
                    },
                },
                "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
            },
        }
    }
    policy = body["policy"]
    policy["_meta"] = {
        "managed_by": MANAGED_BY,
        "description": f"otsentry: roll over at {ROLLOVER_MAX_AGE} / "
        f"{ROLLOVER_MAX_PRIMARY_SHARD_SIZE}, delete after {retention_days} days",
        "digest": digest(policy),
    }
    return body


def ism_policy(retention_days: int = RETENTION_DAYS) -> dict[str, Any]:
    """The OpenSearch ISM policy ``otsentry``, the ILM policy's equivalent; its
    ``ism_template`` attaches it to every new otsentry data stream index."""
    return {
        "policy": {
            "description": f"otsentry: roll over at {ROLLOVER_MAX_AGE} / "
            f"{ROLLOVER_MAX_PRIMARY_SHARD_SIZE}, delete {retention_days} days after creation",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [
                        {
                            "rollover": {
                                "min_index_age": ROLLOVER_MAX_AGE,
                                "min_primary_shard_size": ROLLOVER_MAX_PRIMARY_SHARD_SIZE,
                            }
                        }
                    ],
                    "transitions": [
                        {
                            "state_name": "delete",
                            "conditions": {"min_index_age": f"{retention_days}d"},
                        }
                    ],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [
                {
                    "index_patterns": sorted({f"{kind}-otsentry.*" for kind in DATASETS.values()}),
                    "priority": PRIORITY,
                }
            ],
        }
    }
