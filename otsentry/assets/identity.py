"""Device identity facts, as protocols reveal them, → ECS ``device.*`` and a one-line summary.

Identity keys per protocol (what the dissectors put in ``Event.identity``):

- ``modbus`` (FC 43/14, FC 17): vendor, product_code, revision, product_name, model,
  vendor_url, application, server_id, run_indicator;
- ``s7comm`` (SZL 0x0011 / 0x001C): order_number, module_type_name, module_name,
  firmware_version, hardware_version, serial_number, system_name, plant_id, copyright…;
- ``opcua`` (application descriptions, BuildInfo): application_uri, application_name,
  product_uri, application_type, manufacturer_name, product_name, software_version…
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: where each ECS device field is found, by protocol, best first
_MANUFACTURER = (("modbus", "vendor"), ("opcua", "manufacturer_name"))
_MODEL_ID = (("s7comm", "order_number"), ("modbus", "product_code"))
_MODEL_NAME = (
    ("s7comm", "module_type_name"),
    ("s7comm", "module_name"),
    ("modbus", "product_name"),
    ("modbus", "model"),
    ("opcua", "product_name"),
)
#: the keys a summary shows, by protocol, in order
_SUMMARY_KEYS = {
    "modbus": ("vendor", "product_name", "product_code", "revision", "application"),
    "s7comm": ("module_type_name", "order_number", "firmware_version", "system_name", "plant_id"),
    "opcua": ("application_name", "manufacturer_name", "product_name", "software_version"),
}
_FALLBACK_KEYS = {"modbus": ("server_id",), "opcua": ("application_uri",)}


def _first(identity: Mapping[str, Any], where: tuple[tuple[str, str], ...]) -> str | None:
    for protocol, key in where:
        facts = identity.get(protocol)
        value = facts.get(key) if isinstance(facts, Mapping) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def device_fields(identity: Mapping[str, Any], oui_vendor: str | None) -> dict[str, Any]:
    """ECS ``device.*``: manufacturer (as the device says, else the MAC's OUI organisation),
    model identifier (order number, product code) and model name; empty when nothing is known.
    An OPC UA product URI names software, not a device model, so it stays out."""
    doc: dict[str, Any] = {}
    manufacturer = _first(identity, _MANUFACTURER) or oui_vendor
    if manufacturer:
        doc["manufacturer"] = manufacturer
    model: dict[str, str] = {}
    identifier = _first(identity, _MODEL_ID)
    if identifier:
        model["identifier"] = identifier
    name = _first(identity, _MODEL_NAME)
    if name:
        model["name"] = name
    if model:
        doc["model"] = model
    return doc


def summary(identity: Mapping[str, Any]) -> str:
    """``Schneider Electric Modicon M340 BMXP342020 V3.20 PUMP_STATION_1``: the identifying
    values of every protocol, each once."""
    parts: list[str] = []
    for protocol in sorted(identity):
        facts = identity[protocol]
        if not isinstance(facts, Mapping):
            continue
        keys = _SUMMARY_KEYS.get(protocol, ())
        values = [facts.get(k) for k in keys]
        if not any(values):
            values = [facts.get(k) for k in _FALLBACK_KEYS.get(protocol, ())]
        for value in values:
            text = value.strip() if isinstance(value, str) else ""
            if text and text not in parts:
                parts.append(text)
    return " ".join(parts)
