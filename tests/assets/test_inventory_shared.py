"""Roles and identities on public captures of real devices (../shared/pcaps; skipped when absent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.assets.replay import asset_docs, replay
from tests.conftest import capture_path


def run(capture: str, request: pytest.FixtureRequest, out: Path) -> dict[str, dict[str, Any]]:
    replay(capture_path(capture, request), out)
    return {ip: doc["otsentry"]["asset"] for ip, doc in asset_docs(out).items()}


def test_step7_reading_a_real_cpu(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assets = run(
        "shared/iti-ics-security-tools/pcaps/s7/s7comm_reading_plc_status.pcap", request, tmp_path
    )
    station, cpu = assets["192.168.1.10"], assets["192.168.1.40"]
    assert station["roles"] == ["s7-engineering-station"]
    assert station["role_evidence"][0]["connection_type"] == "pg"
    assert cpu["roles"] == ["s7-plc"]
    assert cpu["vendor"] == "Siemens AG"
    ident = cpu["identity"]["s7comm"]
    assert ident["order_number"] == "6ES7 151-8AB01-0AB0"
    assert ident["module_type_name"] == "IM151-8 PN/DP CPU"
    assert ident["serial_number"] == "S C-C6TW74882012"
    assert ident["firmware_version"] == "V3.2.6"


def test_block_download_makes_an_engineering_station(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    assets = run(
        "shared/iti-ics-security-tools/pcaps/s7/s7comm_downloading_block_db1.pcap",
        request,
        tmp_path,
    )
    assert assets["192.168.1.10"]["roles"] == ["s7-engineering-station"]
    assert assets["192.168.1.40"]["roles"] == ["s7-plc"]


def test_s7comm_plus_server_is_a_plc(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assets = run(
        "shared/iti-ics-security-tools/pcaps/s7/S7-1511_db2_var1_HMI.pcap", request, tmp_path
    )
    plc = assets["192.168.25.139"]
    assert plc["roles"] == ["s7-plc"]
    assert plc["protocols"] == ["s7comm", "s7comm_plus"]
    # S7comm-plus does not say whether its client is an HMI or an engineering station
    assert assets["192.168.25.147"]["roles"] == []
    assert assets["192.168.25.147"]["vendor"] == "VMware, Inc."


def test_one_host_both_ends(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assets = run("shared/icsnpp/icsnpp-s7comm/tests/traces/s7ident.pcap", request, tmp_path)
    host = assets["172.17.0.2"]  # snap7 client and server in one container
    assert host["roles"] == ["s7-engineering-station", "s7-plc"]
    assert host["vendor"] is None  # all-zero MAC: no OUI
    assert host["identity"]["s7comm"]["system_name"] == "SNAP7-SERVER"
