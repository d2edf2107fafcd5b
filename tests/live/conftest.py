"""Fixtures of the live plant: built once per module, skipped cleanly where it cannot run."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.live.plant import Plant, Roles, sensor_available, unavailable


@dataclass(frozen=True)
class LivePlant:
    """The plant with its servers listening."""

    plant: Plant
    roles: Roles
    #: whether the OPC UA server runs (asyncua installed)
    opcua: bool

    def traffic(self, seconds: float) -> list[str]:
        """Run the HMI's session (see Roles.traffic)."""
        return self.roles.traffic(seconds, opcua=self.opcua)


@pytest.fixture(scope="module")
def live_plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePlant]:
    """The plant, its PLC serving Modbus/TCP, S7comm and (with asyncua) OPC UA; skips without
    root, the tools, the protocol stacks or kernel support for namespaces and tc mirroring."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    logs: Path = tmp_path_factory.mktemp("plant-logs")
    opcua = importlib.util.find_spec("asyncua") is not None
    with Plant() as plant:
        roles = Roles(plant, logs)
        try:
            roles.start_servers(opcua=opcua)
            yield LivePlant(plant, roles, opcua)
        finally:
            roles.stop()


@pytest.fixture(scope="session")
def sensor_command() -> None:
    """Skip when ``otsentry sensor`` does not exist yet."""
    reason = sensor_available()
    if reason is not None:
        pytest.skip(reason)
