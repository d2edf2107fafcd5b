"""Roles, identities and vendors of every host of the lab captures, from real replays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.assets.replay import asset_docs, replay
from tests.conftest import LAB_PCAPS

PLC1, PLC2, OPCSRV, RTU1, HMI, ENG, ATTACKER = (
    "10.10.30.5",
    "10.10.30.6",
    "10.10.30.7",
    "10.10.30.8",
    "10.10.30.10",
    "10.10.30.20",
    "10.10.30.66",
)
#: the lab's MACs (pcaps/lab/plant.py) and the organisations the IEEE registered their OUIs to
VENDORS = {
    PLC1: ("00-80-F4-0C-30-05", "TELEMECANIQUE ELECTRIQUE"),  # Schneider Electric's brand
    PLC2: ("00-1B-1B-3F-30-06", "Siemens AG"),
    OPCSRV: ("00-1E-0B-7A-30-07", "Hewlett Packard"),
    RTU1: ("00-30-DE-4B-30-08", "WAGO Kontakttechnik GmbH"),
    HMI: ("00-D0-C9-1A-30-0A", "ADVANTECH CO., LTD."),
    ENG: ("00-14-22-5E-30-14", "Dell Inc."),
    ATTACKER: ("A4-C3-F0-5D-30-42", "Intel Corporate"),
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, Any]]]:
    """Asset documents by capture name, then by IP."""
    runs = {}
    for name in ("modbus_attacks", "s7comm_engineering", "opcua_normal", "opcua_secure"):
        out = tmp_path_factory.mktemp(name)
        replay(LAB_PCAPS / f"{name}.pcap", out)
        runs[name] = asset_docs(out)
    return runs


def asset(doc: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = doc["otsentry"]["asset"]
    return block


def roles(docs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {ip: asset(doc)["roles"] for ip, doc in docs.items()}


def evidence(doc: dict[str, Any], role: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in asset(doc)["role_evidence"] if e["role"] == role)
    return found


def test_vendors_from_the_mac_oui(lab: dict[str, dict[str, dict[str, Any]]]) -> None:
    seen = {ip: doc for docs in lab.values() for ip, doc in docs.items()}
    assert set(seen) == set(VENDORS)
    for ip, (mac, vendor) in VENDORS.items():
        assert (asset(seen[ip])["mac"], asset(seen[ip])["vendor"]) == (mac, vendor), ip


def test_modbus_roles_identity_and_device(lab: dict[str, dict[str, dict[str, Any]]]) -> None:
    docs = lab["modbus_attacks"]
    assert roles(docs) == {
        PLC1: ["modbus-server"],
        RTU1: ["modbus-server"],
        HMI: ["modbus-client"],
        ATTACKER: ["modbus-client"],
    }
    plc = asset(docs[PLC1])
    assert plc["identity"]["modbus"]["product_code"] == "BMXP342020"
    assert plc["identity"]["modbus"]["server_id"] == "Schneider Electric-BMXP342020-V3.20"
    assert docs[PLC1]["device"] == {
        "manufacturer": "Schneider Electric",  # what the PLC says, before the OUI's registrant
        "model": {"identifier": "BMXP342020", "name": "Modicon M340"},
    }
    assert asset(docs[RTU1])["identity"]["modbus"]["revision"] == "01.10.05"
    assert plc["protocols"] == ["modbus"]
    assert plc["peers"] == {"count": 2, "ip": [HMI, ATTACKER]}
    served = evidence(docs[PLC1], "modbus-server")
    assert served["peer"] == HMI and served["action"].startswith("modbus-")
    assert served["first_seen"] >= plc["first_seen"]
    assert "device" in docs[HMI] and docs[HMI]["device"] == {"manufacturer": "ADVANTECH CO., LTD."}
    assert "host" not in docs[PLC1]  # ECS: host.* describes the sensor's machine
    assert docs[PLC1]["related"] == {"ip": [PLC1]}


def test_s7_engineering_station_hmi_and_plc(lab: dict[str, dict[str, dict[str, Any]]]) -> None:
    docs = lab["s7comm_engineering"]
    assert roles(docs) == {PLC2: ["s7-plc"], HMI: ["s7-hmi"], ENG: ["s7-engineering-station"]}
    # the connection type named in the COTP connection request decided the clients
    assert evidence(docs[ENG], "s7-engineering-station") == {
        "role": "s7-engineering-station",
        "first_seen": evidence(docs[ENG], "s7-engineering-station")["first_seen"],
        "action": "s7comm-cotp-connection-request",
        "peer": PLC2,
        "connection_type": "pg",
    }
    assert evidence(docs[HMI], "s7-hmi")["connection_type"] == "op"
    assert evidence(docs[PLC2], "s7-plc")["action"] == "s7comm-cotp-connection-confirm"
    plc = asset(docs[PLC2])
    assert plc["identity"]["s7comm"]["order_number"] == "6ES7 315-2EH14-0AB0"
    assert docs[PLC2]["device"]["model"] == {"identifier": "6ES7 315-2EH14-0AB0"}
    assert plc["vendor"] == "Siemens AG" and plc["protocols"] == ["s7comm"]
    assert plc["services"] == [{"transport": "tcp", "port": 102, "protocol": "s7comm"}]
    assert asset(docs[ENG])["identity"] == {}


def test_opcua_clients_and_server_with_application_descriptions(
    lab: dict[str, dict[str, dict[str, Any]]],
) -> None:
    normal, secure = lab["opcua_normal"], lab["opcua_secure"]
    assert roles(normal) == {OPCSRV: ["opcua-server"], ENG: ["opcua-client"]}
    assert roles(secure) == {OPCSRV: ["opcua-server"], HMI: ["opcua-client"], ENG: ["opcua-client"]}
    server = asset(normal[OPCSRV])["identity"]["opcua"]
    assert server["application_uri"] == "urn:freeopcua:python:server"
    assert server["application_name"] == "Plant OPC UA Server"
    client = asset(normal[ENG])["identity"]["opcua"]
    assert client["application_type"] == "Client"
    assert client["product_uri"] == "urn:freeopcua.github.io:client"
    assert asset(secure[HMI])["identity"]["opcua"]["application_uri"] == "urn:otsentry:lab:hmi"
    assert asset(secure[OPCSRV])["identity"]["opcua"]["security_used"] == [
        "Basic256Sha256/SignAndEncrypt",
        "Basic256Sha256/Sign",
    ]
    # an OPC UA product URI names software, not a device model
    assert "model" not in normal[ENG].get("device", {})
    assert evidence(normal[ENG], "opcua-client")["action"] == "opcua-hello"


def test_assets_in_address_order(tmp_path: Path) -> None:
    replay(LAB_PCAPS / "modbus_normal.pcap", tmp_path)
    lines = (tmp_path / "assets.ndjson").read_text().splitlines()
    assert [asset(json.loads(line))["ip"] for line in lines] == [PLC1, RTU1, HMI]  # not 10 < 5
