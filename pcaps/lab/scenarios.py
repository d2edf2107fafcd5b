"""The scenario registry: which servers and clients run where, and what the capture must hold.

Adding a scenario is one Scenario(...) entry in SCENARIOS; its roles live in lab.roles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
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
class Step:
    """One action of a scenario's actor: it starts at the first of the actor's frames, after the
    previous step's start, that matches ``start`` (or at the first frame of that frame's TCP
    connection when the connection opened after the previous step began), and ends before the
    next step starts."""

    name: str
    #: display filter of the step's first frame (ANDed with the actor's frames; "": any)
    start: str
    #: what the step is about, in plain words
    summary: str = ""


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
    #: extra tshark options for every verification pass, e.g. decode-as for a non-standard port
    tshark_args: tuple[str, ...] = ()
    #: display filter of the frames that may be malformed on purpose ("": none may be)
    malformed_ok: str = ""
    #: a host whose frames may carry other stations' addresses (ARP spoofing, forwarding)
    impersonator: str = ""
    #: sub-directory of the output directory the capture goes to ("": the directory itself)
    folder: str = ""
    #: the attack steps, in order, for the steps file written beside the capture
    steps: tuple[Step, ...] = ()
    #: the station whose frames make the steps (its IPv4 and MAC addresses)
    actor: str = ""

    @property
    def file(self) -> str:
        """File name of the capture, relative to the output directory."""
        return f"{self.folder}/{self.name}.pcap" if self.folder else f"{self.name}.pcap"

    @property
    def steps_file(self) -> str:
        """File name of the steps file, relative to the output directory."""
        return self.file.removesuffix(".pcap") + ".steps.json"

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


def _modbus_servers(seed_offset: int = 0, **extra: Any) -> tuple[Proc, ...]:
    """plc1 (pump station, units 1 and 2) and rtu1 (I/O coupler) as pymodbus servers; their
    process models are seeded 1005 and 1008 (plus seed_offset)."""
    return (
        Proc(
            "plc1",
            "modbus-server",
            {"ip": _ip("plc1"), "device": "pump-station", "seed": 1005 + seed_offset} | extra,
        ),
        Proc(
            "rtu1",
            "modbus-server",
            {"ip": _ip("rtu1"), "device": "io-coupler", "seed": 1008 + seed_offset} | extra,
        ),
    )


def _modbus_hmi(**extra: Any) -> Proc:
    """The HMI polling plc1 every 200 ms and rtu1 every second."""
    args = {"plc": _ip("plc1"), "rtu": _ip("rtu1"), "period": 0.2} | extra
    return Proc("hmi", "modbus-hmi", args, peers=("plc1", "rtu1"))


#: function codes a normal HMI session uses (and the servers answer)
_MODBUS_NORMAL_FCS = (1, 2, 3, 4, 5, 6, 15, 16)

_ATT, _PLC1, _RTU1 = _ip("attacker"), _ip("plc1"), _ip("rtu1")
#: a curl-style HTTP request, sent to ICS ports
_HTTP_GET = (
    "GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
)
_FROM_ATT = f"ip.src == {_ATT} && tcp.dstport == 502"

#: what the attack capture must show, step by step (see pcaps/README.md)
MODBUS_ATTACKS = {
    "scan: FC 65 (user-defined)": f"modbus.func_code == 65 && {_FROM_ATT}",
    "scan: FC 127": f"modbus.func_code == 127 && {_FROM_ATT}",
    "scan: FC 127 | 0x80 exception 01": f"modbus.func_code == 127 && modbus.exception_code == 1"
    f" && ip.dst == {_ATT}",
    "sweep: FC3 above HR 60000": f"modbus.func_code == 3 && modbus.reference_num > 60000"
    f" && {_FROM_ATT}",
    "sweep: exception 02 to the attacker": f"modbus.exception_code == 2 && ip.dst == {_ATT}",
    "write: FC6 HR 2": f"modbus.func_code == 6 && modbus.reference_num == 2 && {_FROM_ATT}",
    "write: FC16 HR 3-4": f"modbus.func_code == 16 && modbus.reference_num == 3"
    f" && modbus.word_cnt == 2 && {_FROM_ATT}",
    "write: FC5 coil 0": f"modbus.func_code == 5 && modbus.reference_num == 0 && {_FROM_ATT}",
    "write: FC15 coils 0-3": f"modbus.func_code == 15 && modbus.reference_num == 0"
    f" && modbus.bit_cnt == 4 && {_FROM_ATT}",
    "FC8 sub 0 return query data": f"modbus.func_code == 8 && modbus.diagnostic_code == 0"
    f" && {_FROM_ATT}",
    "FC8 sub 4 force listen only": f"modbus.func_code == 8 && modbus.diagnostic_code == 4"
    f" && {_FROM_ATT}",
    "FC8 sub 1 restart communications": f"modbus.func_code == 8 && modbus.diagnostic_code == 1"
    f" && {_FROM_ATT}",
    "FC43 basic to plc1": f"modbus.mei == 14 && modbus.read_device_id == 1 && ip.dst == {_PLC1}",
    "FC43 regular to plc1": f"modbus.mei == 14 && modbus.read_device_id == 2 && ip.dst == {_PLC1}",
    "FC43 regular to rtu1": f"modbus.mei == 14 && modbus.read_device_id == 2 && ip.dst == {_RTU1}",
    "FC43 plc1 model name": f"modbus.object_id == 5 && ip.src == {_PLC1}",
    "FC43 rtu1 model name": f"modbus.object_id == 5 && ip.src == {_RTU1}",
    "FC17 answer from plc1": f"modbus.func_code == 17 && ip.src == {_PLC1} && ip.dst == {_ATT}",
    "FC17 answer from rtu1": f"modbus.func_code == 17 && ip.src == {_RTU1} && ip.dst == {_ATT}",
    "raw: MBAP protocol id 1": f"{_FROM_ATT} && tcp.payload[2:2] == 00:01",
    "raw: MBAP length short of the bytes sent": f"{_FROM_ATT} && mbtcp.len + 6 < tcp.len",
    "raw: MBAP length beyond the bytes sent": f"{_FROM_ATT} && tcp.len == 12"
    " && tcp.payload[4:2] == 00:10",
    "raw: MBAP length > 260": f"{_FROM_ATT} && mbtcp.len > 260",
    "raw: zero-length PDU": f"{_FROM_ATT} && tcp.len == 7 && tcp.payload[4:2] == 00:01",
    "raw: reserved FC 0": f"modbus.func_code == 0 && {_FROM_ATT}",
    "raw: HTTP GET to port 502": f"http.request && {_FROM_ATT}",
}


#: what the abuse capture must show, step by step (see pcaps/README.md)
MODBUS_ABUSE = {
    "FC8 sub 0x0A clear counters": f"modbus.func_code == 8 && modbus.diagnostic_code == 10"
    f" && {_FROM_ATT}",
    "FC8 sub 0x14 clear overrun counter": f"modbus.func_code == 8 && modbus.diagnostic_code == 20"
    f" && {_FROM_ATT}",
    "brute force: FC5 coil 2": f"modbus.func_code == 5 && modbus.reference_num == 2 && {_FROM_ATT}",
    "brute force: FC6 HR 4": f"modbus.func_code == 6 && modbus.reference_num == 4 && {_FROM_ATT}",
    "unit sweep: unit 31 to plc1": f"mbtcp.unit_id == 31 && ip.dst == {_PLC1} && {_FROM_ATT}",
    "unit sweep: exception 04 from plc1": f"modbus.exception_code == 4 && ip.src == {_PLC1}",
    "unit sweep: unit 31 to rtu1": f"mbtcp.unit_id == 31 && ip.dst == {_RTU1} && {_FROM_ATT}",
    "pipelined flood: 16 requests in one segment": f"ip.dst == {_RTU1} && {_FROM_ATT}"
    " && tcp.len == 192",
    "parameter flood: exception 06 busy": f"modbus.exception_code == 6 && ip.dst == {_ATT}",
    "parameter write: exception 05 acknowledge": f"modbus.exception_code == 5 && ip.dst == {_ATT}",
    **{
        f"UMAS {name}": f"modbus.func_code == 90 && tcp.payload[9:1] == {code:02x} && {_FROM_ATT}"
        for name, code in (
            ("stop PLC", 0x41),
            ("start PLC", 0x40),
            ("init download", 0x33),
            ("init upload", 0x30),
            ("reservation", 0x10),
        )
    },
    "UMAS answered 0xFE": f"modbus.func_code == 90 && tcp.payload[9:1] == fe && ip.dst == {_ATT}",
}


_S = Step
#: the attacker's six steps in modbus_attacks (see pcaps/README.md)
MODBUS_ATTACK_STEPS = (
    _S("function-code scan", "", "every function code 1-127 to plc1 unit 1"),
    _S(
        "holding-register sweep",
        f"modbus.func_code == 3 && modbus.word_cnt == 64 && ip.src == {_ATT}",
        "FC3 64 registers at every 2048th address",
    ),
    _S(
        "writes the HMI never makes",
        f"modbus.func_code == 6 && modbus.reference_num == 2 && ip.src == {_ATT}",
        "FC6 HR 2, FC16 HR 3-4, FC5 coil 0, FC15 coils 0-3",
    ),
    _S("diagnostics", f"modbus.func_code == 8 && ip.src == {_ATT}", "FC8 sub-functions 0, 4, 1"),
    _S(
        "identification",
        f"(modbus.func_code == 43 || modbus.func_code == 17) && ip.src == {_ATT}",
        "FC43/14 device identification and FC17 report server id, plc1 and rtu1",
    ),
    _S(
        "malformed frames",
        f"ip.src == {_ATT} && tcp.payload[2:2] == 00:01",
        "seven raw connections to plc1:502, one broken frame each",
    ),
)

#: the attacker's six steps in modbus_abuse
MODBUS_ABUSE_STEPS = (
    _S("clear counters", "", "FC8 sub-functions 0x0A and 0x14"),
    _S(
        "brute-force I/O",
        f"modbus.func_code == 5 && ip.src == {_ATT}",
        "coil 2 and HR 4 written 24 times each",
    ),
    _S(
        "unit-id sweep of plc1",
        f"mbtcp.unit_id == 0 && ip.dst == {_PLC1} && ip.src == {_ATT}",
        "FC3 HR 0 to units 0-31",
    ),
    _S(
        "unit-id sweep and pipelined flood of rtu1",
        f"ip.src == {_ATT} && ip.dst == {_RTU1}",
        "the same sweep, then 128 pipelined FC4 requests",
    ),
    _S(
        "parameter flood",
        f"ip.src == {_ATT} && mbtcp.unit_id == 2 && modbus.reference_num >= 100",
        "40 FC3 reads and 2 writes of the drive's parameters",
    ),
    _S("UMAS", f"modbus.func_code == 90 && ip.src == {_ATT}", "stop, download, upload, start"),
)

_OPCSRV_IP, _HMI_IP = _ip("opcsrv"), _ip("hmi")
_ATT_MAC = HOSTS["attacker"].mac
_SYN_FROM_ATT = f"ip.src == {_ATT} && tcp.flags.syn == 1 && tcp.flags.ack == 0"
#: the subnet the sweep covers: .1 to .SWEEP_LAST (the plant's stations and empty addresses)
SWEEP_LAST = 24
#: what the network attack capture must show (see pcaps/README.md)
NETWORK_ATTACKS = {
    **{
        f"sweep: SYN to {host}:{port}": f"{_SYN_FROM_ATT} && ip.dst == {_ip(host)}"
        f" && tcp.dstport == {port}"
        for host in ("plc1", "plc2", "opcsrv", "rtu1", "hmi")
        for port in (502, 102, 4840)
    },
    "sweep: ARP for an empty address": f"arp.opcode == 1 && eth.src == {_ATT_MAC}"
    " && arp.dst.proto_ipv4 == 10.10.30.1",
    "sweep: RST from a closed ICS port": f"ip.src == {_PLC1} && tcp.srcport == 102"
    " && tcp.flags.reset == 1",
    "scan: SYN to plc2:44818 (EtherNet/IP)": f"{_SYN_FROM_ATT} && ip.dst == {_ip('plc2')}"
    " && tcp.dstport == 44818",
    "scan: SYN to plc2:20000 (DNP3)": f"{_SYN_FROM_ATT} && ip.dst == {_ip('plc2')}"
    " && tcp.dstport == 20000",
    # tshark reads these as TPKT and OPC UA: the payload, not the http dissector, shows them
    "payload: HTTP to S7 port 102": f"ip.dst == {_ip('plc2')} && tcp.dstport == 102"
    ' && tcp.payload contains "GET / HTTP/1.1"',
    "payload: HTTP to OPC UA port 4840": f"ip.dst == {_OPCSRV_IP} && tcp.dstport == 4840"
    ' && tcp.payload contains "GET / HTTP/1.1"',
    "payload: SSH banner to Modbus port 502": 'tcp.dstport == 502 && tcp.payload contains "SSH-2.0"',
    "ARP spoofing: gratuitous reply claiming plc1": f"arp.opcode == 2 && eth.src == {_ATT_MAC}"
    f" && arp.src.proto_ipv4 == {_PLC1} && arp.src.hw_mac == {_ATT_MAC}"
    " && eth.dst == ff:ff:ff:ff:ff:ff",
    "ARP spoofing: reply to the HMI claiming plc1": f"arp.opcode == 2 && eth.src == {_ATT_MAC}"
    f" && arp.src.proto_ipv4 == {_PLC1} && arp.src.hw_mac == {_ATT_MAC}"
    f" && arp.dst.proto_ipv4 == {_HMI_IP}",
    "ARP spoofing: HMI's Modbus sent to the attacker's MAC": f"mbtcp && ip.src == {_HMI_IP}"
    f" && ip.dst == {_PLC1} && eth.dst == {_ATT_MAC}",
    # the SPAN port sees each of them twice; tshark calls the forwarded copy a retransmission
    "ARP spoofing: forwarded to plc1 by the attacker": f"ip.src == {_HMI_IP} && ip.dst == {_PLC1}"
    f" && eth.src == {_ATT_MAC} && tcp.dstport == 502 && tcp.len > 0",
    "ARP spoofing: restored": f"arp.opcode == 2 && eth.src == {_ATT_MAC}"
    f" && arp.src.proto_ipv4 == {_PLC1} && arp.src.hw_mac == {HOSTS['plc1'].mac}",
}


#: the attacker's four steps in network_attacks_modbus
NETWORK_ATTACK_STEPS = (
    Step("ICS sweep", "", "TCP connects to 502, 102, 4840 on 10.10.30.1-24"),
    Step(
        "port scan of plc2",
        f"{_SYN_FROM_ATT} && ip.dst == {_ip('plc2')} && tcp.dstport != 502 && tcp.dstport != 102 && tcp.dstport != 4840",
        "53 ports of plc2",
    ),
    Step(
        "non-ICS payloads on ICS ports",
        f"ip.src == {_ATT} && tcp.len > 0",
        "HTTP to plc2:102 and opcsrv:4840, an SSH banner to plc1:502",
    ),
    Step(
        "ARP spoofing",
        f"arp.opcode == 2 && eth.src == {_ATT_MAC}",
        "claims plc1's address, forwards the HMI's requests, restores",
    ),
)

_ENG, _PLC2 = _ip("eng"), _ip("plc2")
_ENG_JOB = f"ip.src == {_ENG} && s7comm.header.rosctr == 1"
_ENG_UD = f"ip.src == {_ENG} && s7comm.header.rosctr == 7"
_TO_ENG = f"ip.src == {_PLC2} && ip.dst == {_ENG}"

#: what the engineering capture must show, step by step (see pcaps/README.md)
S7_ENGINEERING = {
    "PG connect: COTP CR to TSAP 0x0102": f"cotp.type == 0x0e && ip.src == {_ENG}"
    " && cotp.dst-tsap-bytes == 01:02",
    "PG connect: COTP CC": f"cotp.type == 0x0d && {_TO_ENG}",
    "PG connect: setup communication": f"s7comm.param.func == 0xf0 && ip.src == {_ENG}",
    **{
        f"read SZL {szl:#06x}": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 4"
        f" && s7comm.param.userdata.subfunc == 1 && s7comm.data.userdata.szl_id == {szl:#06x}"
        for szl in (0x0000, 0x0011, 0x001C, 0x0131, 0x0132, 0x0232, 0x0424)
    },
    "SZL 0x001C answered": f"{_TO_ENG} && s7comm.data.userdata.szl_id == 0x001c",
    "list blocks": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 3"
    " && s7comm.param.userdata.subfunc == 1",
    "list blocks of type": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 3"
    " && s7comm.param.userdata.subfunc == 2",
    "get block info": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 3"
    " && s7comm.param.userdata.subfunc == 3",
    "start upload DB1": f"{_ENG_JOB} && s7comm.param.func == 0x1d"
    ' && s7comm.param.blockcontrol.filename == "_0A00001A"',
    "start upload OB1": f"{_ENG_JOB} && s7comm.param.func == 0x1d"
    ' && s7comm.param.blockcontrol.filename == "_0800001A"',
    "start upload OB1 refused": f"{_TO_ENG} && s7comm.header.rosctr == 2"
    " && s7comm.header.errcls == 0xd2",
    "start upload DB3 (compare after download)": f"{_ENG_JOB} && s7comm.param.func == 0x1d"
    ' && s7comm.param.blockcontrol.filename == "_0A00003A"',
    "upload": f"{_ENG_JOB} && s7comm.param.func == 0x1e",
    "upload: more data following": f"{_TO_ENG} && s7comm.param.func == 0x1e"
    " && s7comm.param.blockcontrol.functionstatus.more == 1",
    "upload data": f"{_TO_ENG} && s7comm.param.func == 0x1e && s7comm.header.rosctr == 3",
    "end upload": f"{_ENG_JOB} && s7comm.param.func == 0x1f",
    "request download DB3": f"{_ENG_JOB} && s7comm.param.func == 0x1a"
    ' && s7comm.param.blockcontrol.filename == "_0A00003P"',
    "download block (PLC asks)": f"ip.src == {_PLC2} && s7comm.header.rosctr == 1"
    " && s7comm.param.func == 0x1b",
    "download block (data)": f"ip.src == {_ENG} && s7comm.header.rosctr == 3"
    " && s7comm.param.func == 0x1b",
    "download block: more data following": f"ip.src == {_ENG} && s7comm.param.func == 0x1b"
    " && s7comm.param.blockcontrol.functionstatus.more == 1",
    "download ended": f"ip.src == {_PLC2} && s7comm.header.rosctr == 1"
    " && s7comm.param.func == 0x1c",
    "write var DB10": f"{_ENG_JOB} && s7comm.param.func == 0x05 && s7comm.param.item.db == 10",
    "read clock": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 7"
    " && s7comm.param.userdata.subfunc == 1",
    "set clock": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 7"
    " && s7comm.param.userdata.subfunc == 2",
    "PLC stop": f"{_ENG_JOB} && s7comm.param.func == 0x29"
    ' && s7comm.param.pistart.servicename == "P_PROGRAM"',
    "PI start P_PROGRAM (hot/cold start)": f"{_ENG_JOB} && s7comm.param.func == 0x28"
    ' && s7comm.param.pistart.servicename == "P_PROGRAM"',
    "PI _GARB (compress)": f'{_ENG_JOB} && s7comm.param.pistart.servicename == "_GARB"',
    "PI _MODU (copy RAM to ROM)": f'{_ENG_JOB} && s7comm.param.pistart.servicename == "_MODU"',
    "PI _DELE (block delete)": f'{_ENG_JOB} && s7comm.param.func == 0x28 && tcp.payload contains "_DELE"',
    "set session password": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 5"
    " && s7comm.param.userdata.subfunc == 1",
    "clear session password": f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 5"
    " && s7comm.param.userdata.subfunc == 2",
    "read var M": f"{_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.param.item.area == 0x83",
    "read var I": f"{_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.param.item.area == 0x81",
    "read var Q": f"{_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.param.item.area == 0x82",
    "write var M": f"{_ENG_JOB} && s7comm.param.func == 0x05 && s7comm.param.item.area == 0x83",
    "write var I": f"{_ENG_JOB} && s7comm.param.func == 0x05 && s7comm.param.item.area == 0x81",
    "write var Q": f"{_ENG_JOB} && s7comm.param.func == 0x05 && s7comm.param.item.area == 0x82",
    "get_cpu_state: read var without items": f"{_ENG_JOB} && s7comm.param.func == 0x04"
    " && s7comm.header.parlg == 1",
    "HMI connect: COTP CR to TSAP 0x0202 (OP)": f"cotp.type == 0x0e && ip.src == {_ip('hmi')}"
    " && cotp.dst-tsap-bytes == 02:02",
    "HMI read var DB1": f"ip.src == {_ip('hmi')} && s7comm.param.func == 0x04"
    " && s7comm.param.item.db == 1",
}


#: the engineering station's fourteen steps in s7comm_engineering
S7_ENGINEERING_STEPS = (
    Step("connect", "", "COTP CR to TSAP 0x0102 (PG), setup communication"),
    Step("identify", f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 4", "seven SZL reads"),
    Step(
        "CPU state",
        f"{_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.header.parlg == 1",
        "get_cpu_state",
    ),
    Step("blocks", f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 3", "list blocks, block info"),
    Step("upload", f"{_ENG_JOB} && s7comm.param.func == 0x1d", "upload DB1, DB2, OB1 (refused)"),
    Step(
        "session password",
        f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 5",
        "set_session_password",
    ),
    Step("PLC stop", f"{_ENG_JOB} && s7comm.param.func == 0x29", "P_PROGRAM stop"),
    Step("download", f"{_ENG_JOB} && s7comm.param.func == 0x1a", "download DB3, upload it back"),
    Step("write a new DB", f"{_ENG_JOB} && s7comm.param.func == 0x05", "db_write DB10"),
    Step("clock", f"{_ENG_UD} && s7comm.param.userdata.funcgroup == 7", "read, set, set, read"),
    Step(
        "memory",
        f'{_ENG_JOB} && s7comm.param.pistart.servicename == "_GARB"',
        "compress, copy RAM to ROM",
    ),
    Step("block delete", f'{_ENG_JOB} && tcp.payload contains "_DELE"', "delete DB10"),
    Step("restart", f"{_ENG_JOB} && s7comm.param.func == 0x28", "cold start, stop, hot start"),
    Step(
        "monitor/modify M, I, Q and leave",
        f"{_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.param.item.area == 0x83",
        "read MB/IB/QB, write MB30, IB1, QB1, clear password, disconnect",
    ),
)

#: python-snap7's frames tshark 4.0 calls malformed: the server's SZL 0x0011 answer (26-byte
#: records), get_cpu_state's Read Var without items, the client's non-standard _DELE PI job
S7_ENGINEERING_MALFORMED = (
    f"({_TO_ENG} && s7comm.data.userdata.szl_id == 0x0011)"
    f" || ({_ENG_JOB} && s7comm.param.func == 0x04 && s7comm.header.parlg == 1)"
    f' || ({_ENG_JOB} && s7comm.param.func == 0x28 && tcp.payload contains "_DELE")'
)

_ATT_JOB = f"ip.src == {_ATT} && s7comm.header.rosctr == 1"
_ATT_UD = f"ip.src == {_ATT} && s7comm.header.rosctr == 7"
#: what the S7 attack capture must show (see pcaps/README.md)
S7_ATTACKS = {
    "attacker connect: COTP CR to TSAP 0x0102 (PG)": f"cotp.type == 0x0e && ip.src == {_ATT}"
    " && cotp.dst-tsap-bytes == 01:02",
    "attacker read SZL 0x0011": f"{_ATT_UD} && s7comm.data.userdata.szl_id == 0x0011",
    "attacker read SZL 0x001C": f"{_ATT_UD} && s7comm.data.userdata.szl_id == 0x001c",
    "attacker PLC stop": f"{_ATT_JOB} && s7comm.param.func == 0x29",
    "attacker PI _DELE (S7 encoding)": f'{_ATT_JOB} && s7comm.param.pistart.servicename == "_DELE"'
    ' && s7comm.param.blockcontrol.filename == "0A00010B"',
    "attacker force (group 1 / 9)": f"{_ATT_UD} && s7comm.param.userdata.funcgroup == 1"
    " && s7comm.param.userdata.subfunc == 9",
    "attacker modify variable (group 1 / 8)": f"{_ATT_UD} && s7comm.param.userdata.funcgroup == 1"
    " && s7comm.param.userdata.subfunc == 8",
    "attacker cold start": f'{_ATT_JOB} && s7comm.param.pistart.servicename == "P_PROGRAM"'
    ' && s7comm.param.pistart.argument == "C "',
    "attacker PI start": f'{_ATT_JOB} && s7comm.param.pistart.servicename == "P_PROGRAM"'
    " && s7comm.param.func == 0x28",
    "HMI read var DB1": f"ip.src == {_ip('hmi')} && s7comm.param.func == 0x04"
    " && s7comm.param.item.db == 1",
}


#: the attacker's eight steps in s7comm_attacks
S7_ATTACK_STEPS = (
    Step("connect and identify", "", "PG connection, SZL 0x0011 and 0x001C"),
    Step("PLC stop", f"{_ATT_JOB} && s7comm.param.func == 0x29", "P_PROGRAM stop"),
    Step("block delete", f'{_ATT_JOB} && tcp.payload contains "_DELE"', "PI _DELE of DB10"),
    Step(
        "force",
        f"{_ATT_UD} && s7comm.param.userdata.funcgroup == 1 && s7comm.param.userdata.subfunc == 9",
        "force Q 0.1 := 1",
    ),
    Step(
        "modify variable",
        f"{_ATT_UD} && s7comm.param.userdata.funcgroup == 1 && s7comm.param.userdata.subfunc == 8",
        "MW 20 := 0",
    ),
    Step("cold start", f"{_ATT_JOB} && s7comm.param.func == 0x28", 'P_PROGRAM "C "'),
    Step("PLC stop again", f"{_ATT_JOB} && s7comm.param.func == 0x29", "P_PROGRAM stop"),
    Step("warm start", f"{_ATT_JOB} && s7comm.param.func == 0x28", "P_PROGRAM"),
)

_OPCSRV, _HMI = _ip("opcsrv"), _ip("hmi")
_UA_FROM_ATT = f"opcua && ip.src == {_ATT}"
_UA_TO_ATT = f"opcua && ip.src == {_OPCSRV} && ip.dst == {_ATT}"
_UA_FROM_HMI = f"opcua && ip.src == {_HMI}"
_UA_TO_HMI = f"opcua && ip.src == {_OPCSRV} && ip.dst == {_HMI}"
#: OPC UA status codes the attack provokes
BAD_USER_ACCESS_DENIED = 0x801F0000
BAD_TYPE_MISMATCH = 0x80740000


def _service(node_id: int) -> str:
    return f"opcua.servicenodeid.numeric == {node_id}"


#: what the OPC UA attack capture must show, step by step (see pcaps/README.md)
OPCUA_ATTACKS = {
    "HMI ActivateSession": f"{_UA_FROM_HMI} && {_service(467)}",
    "HMI CreateMonitoredItems": f"{_UA_FROM_HMI} && {_service(751)}",
    "HMI Publish": f"{_UA_FROM_HMI} && {_service(826)}",
    "HMI data change notifications": f"{_UA_TO_HMI} && {_service(829)} && opcua.ClientHandle",
    "HMI Read": f"{_UA_FROM_HMI} && {_service(631)}",
    "HMI Write": f"{_UA_FROM_HMI} && {_service(673)}",
    "HMI TrendBuffer: intermediate chunk": f'{_UA_TO_HMI} && opcua.transport.chunk == "C"',
    "HMI TrendBuffer: ReadResponse of 3 chunks": f"{_UA_TO_HMI} && {_service(634)}"
    " && opcua.fragment.count >= 3",
    "attacker GetEndpoints": f"{_UA_FROM_ATT} && {_service(428)}",
    "attacker ActivateSession as admin": f'{_UA_FROM_ATT} && {_service(467)} && opcua.UserName == "admin"',
    "ActivateSession refused: ServiceFault BadUserAccessDenied": f"{_UA_TO_ATT} && {_service(397)}"
    f" && opcua.ServiceResult == {BAD_USER_ACCESS_DENIED:#x}",
    "attacker anonymous ActivateSession": f"{_UA_FROM_ATT} && {_service(467)} && !opcua.UserName",
    "attacker Browse with max references per node": f"{_UA_FROM_ATT} && {_service(527)}"
    " && opcua.RequestedMaxReferencesPerNode > 0",
    "Browse answered with continuation points": f"{_UA_TO_ATT} && {_service(530)}"
    ' && opcua.ContinuationPoint contains "cp"',
    "attacker BrowseNext (continuation points kept)": f"{_UA_FROM_ATT} && {_service(533)}"
    ' && opcua.ContinuationPoints contains "cp" && opcua.ReleaseContinuationPoints == 0',
    "BrowseNext response": f"{_UA_TO_ATT} && {_service(536)}",
    "BrowseNext answered with a further continuation point": f"{_UA_TO_ATT} && {_service(536)}"
    ' && opcua.ContinuationPoint contains "cp"',
    "attacker Read": f"{_UA_FROM_ATT} && {_service(631)}",
    "attacker Read: a ReadResponse of 3 chunks": f"{_UA_TO_ATT} && {_service(634)}"
    " && opcua.fragment.count >= 3",
    "attacker Write": f"{_UA_FROM_ATT} && {_service(673)}",
    "Write accepted (Setpoint)": f"{_UA_TO_ATT} && {_service(676)} && opcua.Results == 0",
    "Write refused: BadUserAccessDenied": f"{_UA_TO_ATT} && {_service(676)}"
    f" && opcua.Results == {BAD_USER_ACCESS_DENIED:#x}",
    "Write refused: BadTypeMismatch": f"{_UA_TO_ATT} && {_service(676)}"
    f" && opcua.Results == {BAD_TYPE_MISMATCH:#x}",
    "attacker Call": f"{_UA_FROM_ATT} && {_service(712)}",
    "Call response": f"{_UA_TO_ATT} && {_service(715)}",
}

BAD_IDENTITY_TOKEN_REJECTED = 0x80210000
_POLICY = "http://opcfoundation.org/UA/SecurityPolicy#"
#: the passwords the authentication attack guesses for "operator"
GUESSES = ["operator", "Operator1", "admin", "password", "123456", "plant30"]
#: what the OPC UA authentication capture must show (see pcaps/README.md)
OPCUA_AUTH = {
    "attacker FindServers": f"{_UA_FROM_ATT} && {_service(422)}",
    "FindServers response": f"{_UA_TO_ATT} && {_service(425)}",
    "attacker GetEndpoints": f"{_UA_FROM_ATT} && {_service(428)}",
    "endpoint with Basic128Rsa15": f'{_UA_TO_ATT} && opcua.SecurityPolicyUri == "{_POLICY}Basic128Rsa15"',
    "endpoint with Basic256": f'{_UA_TO_ATT} && opcua.SecurityPolicyUri == "{_POLICY}Basic256"',
    "attacker anonymous ActivateSession": f"{_UA_FROM_ATT} && {_service(467)} && !opcua.UserName",
    "refused: BadIdentityTokenRejected": f"{_UA_TO_ATT} && {_service(397)}"
    f" && opcua.ServiceResult == {BAD_IDENTITY_TOKEN_REJECTED:#x}",
    "attacker ActivateSession as operator": f"{_UA_FROM_ATT} && {_service(467)}"
    ' && opcua.UserName == "operator"',
    "refused: BadUserAccessDenied": f"{_UA_TO_ATT} && {_service(397)}"
    f" && opcua.ServiceResult == {BAD_USER_ACCESS_DENIED:#x}",
    "HMI ActivateSession as operator": f"{_UA_FROM_HMI} && {_service(467)}"
    ' && opcua.UserName == "operator"',
    "HMI Publish": f"{_UA_FROM_HMI} && {_service(826)}",
    "eng OPN with Basic128Rsa15": f'opcua && ip.src == {_ENG} && opcua.transport.type == "OPN"'
    f' && opcua.security.spu == "{_POLICY}Basic128Rsa15"',
    "eng MSG, encrypted": f'opcua && ip.src == {_ENG} && opcua.transport.type == "MSG"'
    " && !opcua.servicenodeid.numeric",
}


#: the attacker's six steps in opcua_attacks
OPCUA_ATTACK_STEPS = (
    Step("discovery", "", "GetEndpoints on a channel of its own"),
    Step(
        "failed logins",
        f'{_UA_FROM_ATT} && {_service(467)} && opcua.UserName == "admin"',
        "admin / admin and admin / password, refused",
    ),
    Step("browse the address space", f"{_UA_FROM_ATT} && {_service(527)}", "Browse, BrowseNext"),
    Step("read everything", f"{_UA_FROM_ATT} && {_service(631)}", "the value of 483 variables"),
    Step("writes", f"{_UA_FROM_ATT} && {_service(673)}", "Setpoint, read-only values, Mode"),
    Step("method call", f"{_UA_FROM_ATT} && {_service(712)}", "StartBatch(99)"),
)

#: the attacker's three steps in opcua_auth
OPCUA_AUTH_STEPS = (
    Step("discovery", "", "FindServers and GetEndpoints"),
    Step(
        "anonymous login",
        f"{_UA_FROM_ATT} && {_service(467)} && !opcua.UserName",
        "refused: BadIdentityTokenRejected",
    ),
    Step(
        "password guessing",
        f'{_UA_FROM_ATT} && {_service(467)} && opcua.UserName == "operator"',
        "six passwords for operator",
    ),
)

_BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
_ENG_UA = f"opcua && ip.src == {_ENG}"
_UA_TO_ENG = f"opcua && ip.src == {_OPCSRV} && ip.dst == {_ENG}"
#: the lab's OPC UA application certificates (LAB ONLY, see pcaps/lab/certs/make_certs.py)
CERTS = Path(__file__).resolve().parent / "certs"


def thumbprint(stem: str) -> str:
    """SHA-1 thumbprint of a lab certificate as a tshark byte string (aa:bb:...)."""
    digest = hashlib.sha1((CERTS / f"{stem}.der").read_bytes()).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _opn(src: str, receiver: str) -> str:
    """An OPN chunk from src with the Basic256Sha256 policy URI, for receiver's certificate."""
    return (
        f'opcua && ip.src == {src} && opcua.transport.type == "OPN"'
        f' && opcua.security.spu == "{_BASIC256SHA256}"'
        f" && opcua.security.rcthumb == {thumbprint(receiver)}"
    )


#: what the secure capture must show (see pcaps/README.md)
OPCUA_SECURE = {
    "eng OPN: Basic256Sha256 for opcsrv's certificate": _opn(_ENG, "opcsrv"),
    "opcsrv OPN to eng: for eng's certificate": _opn(_OPCSRV, "eng"),
    "hmi OPN: Basic256Sha256 for opcsrv's certificate": _opn(_HMI, "opcsrv"),
    "opcsrv OPN to hmi: for hmi's certificate": _opn(_OPCSRV, "hmi"),
    "eng MSG, encrypted (no service tshark can read)": f'{_ENG_UA} && opcua.transport.type == "MSG"'
    " && !opcua.servicenodeid.numeric",
    "opcsrv MSG to eng, encrypted": f'{_UA_TO_ENG} && opcua.transport.type == "MSG"'
    " && !opcua.servicenodeid.numeric",
    "eng CLO": f'{_ENG_UA} && opcua.transport.type == "CLO"',
    "hmi signed only: CreateSession readable": f"{_UA_FROM_HMI} && {_service(461)}",
    "hmi signed only: ActivateSession readable": f"{_UA_FROM_HMI} && {_service(467)}",
    "hmi signed only: Read readable": f"{_UA_FROM_HMI} && {_service(631)}",
    "hmi signed only: ReadResponse readable": f"{_UA_TO_HMI} && {_service(634)}",
    "hmi signed only: CloseSecureChannel readable": f'{_UA_FROM_HMI} && opcua.transport.type == "CLO"'
    f" && {_service(452)}",
}

#: what a normal Modbus session must show (modbus_normal and the benign runs made like it)
MODBUS_NORMAL = {
    f"FC{fc}": f"modbus.func_code == {fc} && tcp.srcport == 502" for fc in _MODBUS_NORMAL_FCS
} | {
    "exception 02": "modbus.exception_code == 2",
    "unit id 2": "mbtcp.unit_id == 2",
}
#: what a normal S7 session must show
S7_NORMAL = {
    "COTP CR": "cotp.type == 0x0e",
    "COTP CC": "cotp.type == 0x0d",
    "setup communication": "s7comm.param.func == 0xf0",
    "read var": "s7comm.param.func == 0x04 && s7comm.header.rosctr == 3",
    "write var": "s7comm.param.func == 0x05 && s7comm.header.rosctr == 3",
    "read SZL": "s7comm.param.userdata.funcgroup == 4 && s7comm.param.userdata.subfunc == 1",
    "read clock": "s7comm.param.userdata.funcgroup == 7",
}
#: what a normal OPC UA session must show
OPCUA_NORMAL = {
    name: f"opcua.servicenodeid.numeric == {node_id}" for name, node_id in OPCUA_SERVICES.items()
}
#: the benign runs' seeds: the process models of a second run are seeded this much higher
RUN2_SEED_OFFSET = 1000
#: sub-directory of the long benign runs a baseline learns from (kept out of pcaps/*.pcap)
LEARNING = "learning"
#: how long the learning runs and their second runs last
LEARN_DURATION, LEARN_RUN2_DURATION = 300.0, 180.0


def _opcua_plant_server(seed: int) -> Proc:
    """The OPC UA server of opcua_attacks (extended address space, trend buffer, paging)."""
    args = {
        "ip": _OPCSRV,
        "seed": seed,
        "extended": True,
        "trend": 2400,
        "users": {"operator": "Op3rator-30"},
        "buffer": 8192,
        "browse_next": True,
    }
    return Proc("opcsrv", "opcua-server", args)


def _opcua_plant_hmi() -> Proc:
    """The HMI panel of opcua_attacks: subscription, reads, trend reads, setpoint writes."""
    args = {"server": _OPCSRV, "trend_every": 10.0, "write_every": 6.0}
    return Proc("hmi", "opcua-hmi", args, peers=("opcsrv",))


def _benign_runs() -> list[Scenario]:
    """Second runs of the normal scenarios, and the long learning runs with their second runs:
    the same plant, roles and polling, other process seeds (and another time)."""
    off = RUN2_SEED_OFFSET
    out: list[Scenario] = []
    for suffix, folder, offset, duration in (
        ("normal_run2", "", off, None),
        ("learn", LEARNING, 0, LEARN_DURATION),
        ("learn_run2", LEARNING, off, LEARN_RUN2_DURATION),
    ):
        second = " (second run: other process seeds)" if offset else ""
        hmi_s7 = Proc("hmi", "s7-hmi", {"plc": _ip("plc2"), "period": 0.2}, peers=("plc2",))
        eng_ua = Proc("eng", "opcua-client", {"server": _OPCSRV}, peers=("opcsrv",))
        modbus = Scenario(
            name=f"modbus_{suffix}",
            summary=f"modbus_normal for {duration or 20:.0f} s{second}",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=_modbus_servers(offset),
            clients=(_modbus_hmi(),),
            duration=duration or 20.0,
            quick_duration=6.0,
            require=MODBUS_NORMAL,
            folder=folder,
        )
        s7 = Scenario(
            name=f"s7comm_{suffix}",
            summary=f"s7comm_normal for {duration or 20:.0f} s{second}",
            protocol="s7comm",
            pdu_field="s7comm.header.rosctr",
            servers=(Proc("plc2", "s7-server", {"ip": _ip("plc2"), "seed": 1006 + offset}),),
            clients=(hmi_s7,),
            duration=duration or 20.0,
            quick_duration=6.0,
            require=S7_NORMAL,
            folder=folder,
        )
        if folder:
            opcua = Scenario(
                name=f"opcua_{suffix}",
                summary=f"the HMI of opcua_attacks and eng of opcua_normal, {duration:.0f} s"
                + second,
                protocol="opcua",
                pdu_field="opcua.transport.type",
                servers=(_opcua_plant_server(1007 + offset),),
                clients=(_opcua_plant_hmi(), eng_ua),
                duration=duration or 15.0,
                quick_duration=12.0,
                require=OPCUA_NORMAL | OPCUA_PLANT_HMI,
                folder=folder,
            )
        else:
            opcua = Scenario(
                name=f"opcua_{suffix}",
                summary="opcua_normal" + second,
                protocol="opcua",
                pdu_field="opcua.transport.type",
                servers=(Proc("opcsrv", "opcua-server", {"ip": _OPCSRV, "seed": 1007 + offset}),),
                clients=(eng_ua,),
                duration=15.0,
                quick_duration=5.0,
                require=OPCUA_NORMAL,
            )
        out += [modbus, s7, opcua]
    return out


#: what the HMI panel of opcua_attacks shows in a benign run
OPCUA_PLANT_HMI = {k: v for k, v in OPCUA_ATTACKS.items() if k.startswith("HMI ")}

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="modbus_normal",
            summary="HMI polls a Modbus/TCP PLC (units 1 and 2) and an I/O coupler",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=_modbus_servers(),
            clients=(_modbus_hmi(),),
            duration=20.0,
            quick_duration=4.0,
            require=MODBUS_NORMAL,
        ),
        Scenario(
            name="modbus_attacks",
            summary="a rogue laptop scans, sweeps, writes, identifies and fuzzes while HMI polls",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=_modbus_servers(),
            clients=(
                _modbus_hmi(),
                Proc(
                    "attacker",
                    "modbus-attacker",
                    {"plc": _ip("plc1"), "rtu": _ip("rtu1"), "seed": 1066},
                    peers=("plc1", "rtu1"),
                ),
            ),
            duration=24.0,
            quick_duration=10.0,
            require={
                f"HMI FC{fc}": f"modbus.func_code == {fc} && ip.dst == {_ip('hmi')}"
                for fc in _MODBUS_NORMAL_FCS
            }
            | MODBUS_ATTACKS,
            malformed_ok=f"{_FROM_ATT} && mbtcp.len + 6 != tcp.len",
            steps=MODBUS_ATTACK_STEPS,
            actor="attacker",
        ),
        Scenario(
            name="modbus_abuse",
            summary="a rogue laptop clears counters, brute-forces I/O, sweeps units, floods, UMAS",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=(
                Proc(
                    "plc1",
                    "modbus-server",
                    {"ip": _PLC1, "device": "pump-station", "seed": 1005}
                    | {"parameters": True, "umas": True},
                ),
                Proc(
                    "rtu1",
                    "modbus-server",
                    {"ip": _RTU1, "device": "io-coupler", "seed": 1008},
                ),
            ),
            clients=(
                _modbus_hmi(period=0.5),
                Proc(
                    "attacker",
                    "modbus_abuse-attacker",
                    {"plc": _PLC1, "rtu": _RTU1, "seed": 1066},
                    peers=("plc1", "rtu1"),
                ),
            ),
            duration=16.0,
            quick_duration=10.0,
            require={
                f"HMI FC{fc}": f"modbus.func_code == {fc} && ip.dst == {_ip('hmi')}"
                for fc in _MODBUS_NORMAL_FCS
            }
            | MODBUS_ABUSE,
            steps=MODBUS_ABUSE_STEPS,
            actor="attacker",
        ),
        Scenario(
            name="modbus_port5020",
            summary="modbus_normal with the servers on the non-standard TCP port 5020",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=_modbus_servers(port=5020),
            clients=(_modbus_hmi(port=5020),),
            duration=20.0,
            quick_duration=4.0,
            require={
                f"FC{fc}": f"modbus.func_code == {fc} && tcp.srcport == 5020"
                for fc in _MODBUS_NORMAL_FCS
            }
            | {
                "exception 02": "modbus.exception_code == 2",
                "unit id 2": "mbtcp.unit_id == 2",
                "responses matched to requests": "modbus.request_frame && tcp.srcport == 5020",
            },
            # decode as Modbus/TCP, and tell the dissector which side is the server
            tshark_args=("-d", "tcp.port==5020,mbtcp", "-o", "mbtcp.tcp.port:5020"),
        ),
        Scenario(
            name="network_attacks_modbus",
            summary="a rogue laptop sweeps ICS ports, scans plc2, sends non-ICS data, ARP-spoofs",
            protocol="mbtcp",
            pdu_field="mbtcp.trans_id",
            servers=(
                *_modbus_servers(),
                Proc("plc2", "s7-server", {"ip": _ip("plc2"), "seed": 1006}),
                Proc("opcsrv", "opcua-server", {"ip": _OPCSRV_IP, "seed": 1007}),
            ),
            clients=(
                _modbus_hmi(period=0.5),
                Proc(
                    "attacker",
                    "network-attacker",
                    {
                        "subnet": "10.10.30",
                        "last_host": SWEEP_LAST,
                        "scan_ip": _ip("plc2"),
                        "payloads": [
                            [_ip("plc2"), 102, _HTTP_GET.format(host=_ip("plc2"), port=102)],
                            [_OPCSRV_IP, 4840, _HTTP_GET.format(host=_OPCSRV_IP, port=4840)],
                            [_PLC1, 502, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"],
                        ],
                        "mac": _ATT_MAC,
                        "victim_ip": _PLC1,
                        "victim_mac": HOSTS["plc1"].mac,
                        "target_ip": _HMI_IP,
                        "target_mac": HOSTS["hmi"].mac,
                    },
                ),
            ),
            duration=16.0,
            quick_duration=12.0,
            require={
                f"HMI FC{fc}": f"modbus.func_code == {fc} && ip.dst == {_HMI_IP}"
                for fc in _MODBUS_NORMAL_FCS
            }
            | NETWORK_ATTACKS,
            impersonator="attacker",
            steps=NETWORK_ATTACK_STEPS,
            actor="attacker",
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
            require=S7_NORMAL,
        ),
        Scenario(
            name="s7comm_engineering",
            summary="engineering station identifies, uploads, downloads, stops and starts plc2",
            protocol="s7comm",
            pdu_field="s7comm.header.rosctr",
            servers=(
                Proc(
                    "plc2",
                    "s7-server",
                    {"ip": _PLC2, "seed": 1006, "extra_dbs": {"3": 704, "10": 16}},
                ),
            ),
            clients=(
                Proc("hmi", "s7-hmi", {"plc": _PLC2, "period": 0.2}, peers=("plc2",)),
                Proc("eng", "s7-engineering", {"plc": _PLC2, "seed": 1020}, peers=("plc2",)),
            ),
            duration=20.0,
            quick_duration=6.0,
            require=S7_ENGINEERING,
            malformed_ok=S7_ENGINEERING_MALFORMED,
            steps=S7_ENGINEERING_STEPS,
            actor="eng",
        ),
        Scenario(
            name="s7comm_attacks",
            summary="a rogue laptop stops plc2, deletes a block, forces and modifies, restarts",
            protocol="s7comm",
            pdu_field="s7comm.header.rosctr",
            servers=(
                Proc("plc2", "s7-server", {"ip": _PLC2, "seed": 1006, "extra_dbs": {"10": 16}}),
            ),
            clients=(
                Proc("hmi", "s7-hmi", {"plc": _PLC2, "period": 0.2}, peers=("plc2",)),
                Proc("attacker", "s7_attack-attacker", {"plc": _PLC2}, peers=("plc2",)),
            ),
            duration=12.0,
            quick_duration=6.0,
            require=S7_ATTACKS,
            malformed_ok=f"ip.src == {_PLC2} && s7comm.data.userdata.szl_id == 0x0011",
            steps=S7_ATTACK_STEPS,
            actor="attacker",
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
            require=OPCUA_NORMAL,
        ),
        Scenario(
            name="opcua_attacks",
            summary="a rogue laptop logs in, browses, reads, writes and calls while the HMI runs",
            protocol="opcua",
            pdu_field="opcua.transport.type",
            servers=(
                Proc(
                    "opcsrv",
                    "opcua-server",
                    {
                        "ip": _OPCSRV,
                        "seed": 1007,
                        "extended": True,
                        "trend": 2400,
                        "users": {"operator": "Op3rator-30"},
                        "buffer": 8192,
                        "browse_next": True,
                    },
                ),
            ),
            clients=(
                Proc(
                    "hmi",
                    "opcua-hmi",
                    {"server": _OPCSRV, "trend_every": 10.0, "write_every": 6.0},
                    peers=("opcsrv",),
                ),
                Proc(
                    "attacker",
                    "opcua-attacker",
                    {
                        "server": _OPCSRV,
                        "delay": 3.0,
                        "pause": 1.0,
                        "passwords": ["admin", "password"],
                        "max_refs": 8,
                        "batch": 24,
                    },
                    peers=("opcsrv",),
                ),
            ),
            duration=32.0,
            quick_duration=16.0,
            require=OPCUA_ATTACKS,
            steps=OPCUA_ATTACK_STEPS,
            actor="attacker",
        ),
        Scenario(
            name="opcua_auth",
            summary="discovery, refused anonymous login, password guessing; a legacy-policy client",
            protocol="opcua",
            pdu_field="opcua.transport.type",
            servers=(
                Proc(
                    "opcsrv",
                    "opcua-server",
                    {
                        "ip": _OPCSRV,
                        "seed": 1007,
                        "extended": True,
                        "trend": 240,
                        "legacy": True,
                        "users": {"operator": "Op3rator-30", "engineer": "Eng1neer-30"},
                        "users_only": True,
                    },
                ),
            ),
            clients=(
                Proc(
                    "hmi",
                    "opcua-hmi",
                    {"server": _OPCSRV, "trend_every": 6.0, "write_every": 5.0}
                    | {"user": "operator", "password": "Op3rator-30"},
                    peers=("opcsrv",),
                ),
                Proc(
                    "eng",
                    "opcua-secure",
                    {
                        "server": _OPCSRV,
                        "station": "eng",
                        "policy": "Basic128Rsa15",
                        "mode": "SignAndEncrypt",
                        "user": "engineer",
                        "password": "Eng1neer-30",
                        "delay": 1.0,
                        "period": 2.0,
                    },
                    peers=("opcsrv",),
                ),
                Proc(
                    "attacker",
                    "opcua_auth-attacker",
                    {"server": _OPCSRV, "delay": 2.0, "user": "operator", "passwords": GUESSES},
                    peers=("opcsrv",),
                ),
            ),
            duration=12.0,
            quick_duration=10.0,
            require=OPCUA_AUTH,
            steps=OPCUA_AUTH_STEPS,
            actor="attacker",
        ),
        Scenario(
            name="opcua_secure",
            summary="Basic256Sha256 sessions: eng signs and encrypts, the HMI signs only",
            protocol="opcua",
            pdu_field="opcua.transport.type",
            servers=(
                Proc(
                    "opcsrv",
                    "opcua-server",
                    {
                        "ip": _OPCSRV,
                        "seed": 1007,
                        "extended": True,
                        "secure": True,
                        "users": {"engineer": "Eng1neer-30"},
                    },
                ),
            ),
            clients=(
                Proc(
                    "eng",
                    "opcua-secure",
                    {
                        "server": _OPCSRV,
                        "station": "eng",
                        "mode": "SignAndEncrypt",
                        "user": "engineer",
                        "password": "Eng1neer-30",
                        "writes": [["Setpoint", ["Double", 61.0]], ["Mode", ["Int32", 2]]],
                    },
                    peers=("opcsrv",),
                ),
                Proc(
                    "hmi",
                    "opcua-secure",
                    {"server": _OPCSRV, "station": "hmi", "mode": "Sign", "delay": 2.0},
                    peers=("opcsrv",),
                ),
            ),
            duration=12.0,
            quick_duration=6.0,
            require=OPCUA_SECURE,
        ),
    )
} | {s.name: s for s in _benign_runs()}
