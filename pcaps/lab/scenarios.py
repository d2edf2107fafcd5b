"""The scenario registry: which servers and clients run where, and what the capture must hold.

Adding a scenario is one Scenario(...) entry in SCENARIOS; its roles live in lab.roles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.plant import HOSTS


@dataclass(frozen=True)
class Proc:
    """One role run on one plant host; a client names the servers it talks to in peers."""

    host: str
    role: str
    args: dict[str, Any] = field(default_factory=dict)
    peers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A capture: servers started first, then clients whose session lasts duration seconds."""

    name: str
    summary: str
    #: tshark display filter selecting the protocol's frames
    protocol: str
    #: tshark field present once per protocol PDU, to count PDUs
    pdu_field: str
    servers: tuple[Proc, ...]
    clients: tuple[Proc, ...]
    duration: float
    quick_duration: float
    #: description -> display filter that must match at least one frame
    require: dict[str, str] = field(default_factory=dict)
    #: frame.protocols prefixes a frame may have; anything else is noise that leaked in
    stacks: tuple[str, ...] = ("eth:ethertype:arp", "eth:ethertype:ip:tcp")

    @property
    def file(self) -> str:
        """File name of the capture."""
        return f"{self.name}.pcap"

    def pairs(self) -> list[tuple[str, str]]:
        """(client host, server host) pairs whose traffic must show in both directions."""
        return [(c.host, peer) for c in self.clients for peer in c.peers]


#: OPC UA request/response encodings (binary encoding NodeIds) the session must show
OPCUA_SERVICES = {
    "GetEndpoints request": 428,
    "GetEndpoints response": 431,
    "OpenSecureChannel request": 446,
    "OpenSecureChannel response": 449,
    "CloseSecureChannel request": 452,
    "CreateSession request": 461,
    "CreateSession response": 464,
    "ActivateSession request": 467,
    "ActivateSession response": 470,
    "CloseSession request": 473,
    "CloseSession response": 476,
    "Browse request": 527,
    "Browse response": 530,
    "Read request": 631,
    "Read response": 634,
    "Write request": 673,
    "Write response": 676,
    "Call request": 712,
    "Call response": 715,
    "CreateSubscription request": 787,
    "CreateMonitoredItems request": 751,
    "Publish request": 826,
    "Publish response": 829,
}


def _ip(host: str) -> str:
    return HOSTS[host].ip


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="modbus_normal",
            summary="HMI polls a Modbus/TCP PLC (units 1 and 2) and an I/O coupler",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=(
                Proc(
                    "plc1",
                    "modbus-server",
                    {"ip": _ip("plc1"), "device": "pump-station", "seed": 1005},
                ),
                Proc(
                    "rtu1",
                    "modbus-server",
                    {"ip": _ip("rtu1"), "device": "io-coupler", "seed": 1008},
                ),
            ),
            clients=(
                Proc(
                    "hmi",
                    "modbus-hmi",
                    {"plc": _ip("plc1"), "rtu": _ip("rtu1"), "period": 0.2},
                    peers=("plc1", "rtu1"),
                ),
            ),
            duration=20.0,
            quick_duration=4.0,
            require={
                f"FC{fc}": f"modbus.func_code == {fc} && tcp.srcport == 502"
                for fc in (1, 2, 3, 4, 5, 6, 15, 16)
            }
            | {
                "exception 02": "modbus.exception_code == 2",
                "unit id 2": "mbtcp.unit_id == 2",
            },
        ),
        Scenario(
            name="s7comm_normal",
            summary="HMI identifies an S7-300, polls DB1 and the I/O image, writes setpoints",
            protocol="s7comm",
            pdu_field="s7comm.header.rosctr",
            servers=(Proc("plc2", "s7-server", {"ip": _ip("plc2"), "seed": 1006}),),
            clients=(Proc("hmi", "s7-hmi", {"plc": _ip("plc2"), "period": 0.2}, peers=("plc2",)),),
            duration=20.0,
            quick_duration=4.0,
            require={
                "COTP CR": "cotp.type == 0x0e",
                "COTP CC": "cotp.type == 0x0d",
                "setup communication": "s7comm.param.func == 0xf0",
                "read var": "s7comm.param.func == 0x04 && s7comm.header.rosctr == 3",
                "write var": "s7comm.param.func == 0x05 && s7comm.header.rosctr == 3",
                "read SZL": "s7comm.param.userdata.funcgroup == 4 && s7comm.param.userdata.subfunc == 1",
                "read clock": "s7comm.param.userdata.funcgroup == 7",
            },
        ),
        Scenario(
            name="opcua_normal",
            summary="engineering station browses an OPC UA server, writes, subscribes, calls",
            protocol="opcua",
            pdu_field="opcua.transport.type",
            servers=(Proc("opcsrv", "opcua-server", {"ip": _ip("opcsrv"), "seed": 1007}),),
            clients=(Proc("eng", "opcua-client", {"server": _ip("opcsrv")}, peers=("opcsrv",)),),
            duration=15.0,
            quick_duration=5.0,
            require={
                name: f"opcua.servicenodeid.numeric == {node_id}"
                for name, node_id in OPCUA_SERVICES.items()
            },
        ),
    )
}
