"""The lab captures: the committed ones decode, and pcaps/make_lab.py makes a fresh one."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"
MAKE_LAB = PCAPS / "make_lab.py"
CERTS = PCAPS / "lab" / "certs"
MAX_FRAME = 1514
MAX_SIZE = 300_000

# the plant as pcaps/README.md documents it: name -> (IPv4, MAC)
HMI = ("10.10.30.10", "00:d0:c9:1a:30:0a")
ENG = ("10.10.30.20", "00:14:22:5e:30:14")
PLC1 = ("10.10.30.5", "00:80:f4:0c:30:05")
PLC2 = ("10.10.30.6", "00:1b:1b:3f:30:06")
OPCSRV = ("10.10.30.7", "00:1e:0b:7a:30:07")
RTU1 = ("10.10.30.8", "00:30:de:4b:30:08")
ATTACKER = ("10.10.30.66", "a4:c3:f0:5d:30:42")

#: tshark options for Modbus/TCP on port 5020: decode-as, and which side is the server
PORT5020 = ("-d", "tcp.port==5020,mbtcp", "-o", "mbtcp.tcp.port:5020")

# committed capture -> (tshark protocol filter, field once per PDU, (client, server) pairs,
# extra tshark options)
COMMITTED: dict[str, tuple[str, str, list[tuple[tuple[str, str], ...]], tuple[str, ...]]] = {
    "modbus_normal.pcap": ("mbtcp", "mbtcp.trans_id", [(HMI, PLC1), (HMI, RTU1)], ()),
    "modbus_attacks.pcap": (
        "mbtcp",
        "mbtcp.trans_id",
        [(HMI, PLC1), (HMI, RTU1), (ATTACKER, PLC1), (ATTACKER, RTU1)],
        (),
    ),
    "modbus_port5020.pcap": ("mbtcp", "mbtcp.trans_id", [(HMI, PLC1), (HMI, RTU1)], PORT5020),
    "s7comm_normal.pcap": ("s7comm", "s7comm.header.rosctr", [(HMI, PLC2)], ()),
    "s7comm_engineering.pcap": ("s7comm", "s7comm.header.rosctr", [(HMI, PLC2), (ENG, PLC2)], ()),
    "opcua_normal.pcap": ("opcua", "opcua.transport.type", [(ENG, OPCSRV)], ()),
    "opcua_attacks.pcap": (
        "opcua",
        "opcua.transport.type",
        [(HMI, OPCSRV), (ATTACKER, OPCSRV)],
        (),
    ),
    "opcua_secure.pcap": ("opcua", "opcua.transport.type", [(ENG, OPCSRV), (HMI, OPCSRV)], ()),
    "modbus_abuse.pcap": (
        "mbtcp",
        "mbtcp.trans_id",
        [(HMI, PLC1), (HMI, RTU1), (ATTACKER, PLC1), (ATTACKER, RTU1)],
        (),
    ),
    # HMI -> plc1 frames go to the attacker's MAC while it spoofs plc1: only rtu1's are plain
    "network_attacks_modbus.pcap": ("mbtcp", "mbtcp.trans_id", [(HMI, RTU1)], ()),
    "s7comm_attacks.pcap": ("s7comm", "s7comm.header.rosctr", [(HMI, PLC2), (ATTACKER, PLC2)], ()),
    "opcua_auth.pcap": (
        "opcua",
        "opcua.transport.type",
        [(HMI, OPCSRV), (ENG, OPCSRV), (ATTACKER, OPCSRV)],
        (),
    ),
}
#: function codes pymodbus 3.16 implements; its lab servers answer every other one with 01
PYMODBUS_FCS = {1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43}

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


def fields(
    pcap: Path, display_filter: str, *names: str, options: tuple[str, ...] = ()
) -> list[list[str]]:
    """tshark -T fields rows (one list per frame) of the frames matching display_filter."""
    argv = ["tshark", "-n", "-r", str(pcap), *options, "-T", "fields", "-E", "separator=\t"]
    if display_filter:
        argv += ["-Y", display_filter]
    for name in names:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def run_make_lab(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run pcaps/make_lab.py with args."""
    return subprocess.run(
        [sys.executable, str(MAKE_LAB), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_capture_is_small_classic_pcap(name: str) -> None:
    pcap = PCAPS / name
    assert pcap.is_file(), f"{pcap} missing: run sudo python pcaps/make_lab.py"
    head = pcap.read_bytes()[:24]
    assert head[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4"), "not classic microsecond pcap"
    assert int.from_bytes(head[20:24], "little" if head[0] == 0xD4 else "big") == 1  # Ethernet
    assert 24 < pcap.stat().st_size < MAX_SIZE


@needs_tshark
@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_committed_capture_decodes(name: str) -> None:
    pcap = PCAPS / name
    proto, pdu_field, pairs, options = COMMITTED[name]
    rows = fields(pcap, proto, pdu_field, options=options)
    pdus = [v for row in rows for v in row[0].split(",") if v]
    assert pdus, f"tshark decodes no {proto} PDUs in {name}"
    for (c_ip, c_mac), (s_ip, s_mac) in pairs:
        for src, dst in (((c_ip, c_mac), (s_ip, s_mac)), ((s_ip, s_mac), (c_ip, c_mac))):
            flow = f"{proto} && ip.src == {src[0]} && ip.dst == {dst[0]}"
            rows = fields(pcap, flow, "eth.src", "eth.dst", options=options)
            assert rows, f"no {proto} frames {src[0]} -> {dst[0]} in {name}"
            assert {(r[0], r[1]) for r in rows} == {(src[1], dst[1])}
    lengths = [int(r[0]) for r in fields(pcap, "", "frame.len")]
    assert max(lengths) <= MAX_FRAME


#: the long benign runs in pcaps/learning/ (checked by the slow test below)
LEARNING = ["modbus_learn", "s7comm_learn", "opcua_learn"]
LEARNING += [f"{name}_run2" for name in LEARNING]
SECOND_RUNS = ["modbus_normal_run2", "s7comm_normal_run2", "opcua_normal_run2"]


@needs_tshark
def test_check_accepts_committed_captures() -> None:
    names = [name.removesuffix(".pcap") for name in COMMITTED] + SECOND_RUNS
    proc = run_make_lab("--check", "--out", str(PCAPS), "--only", *names, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in names:
        assert str(PCAPS / f"{name}.pcap") in proc.stdout


@pytest.mark.slow
@needs_tshark
def test_check_accepts_the_learning_runs() -> None:
    proc = run_make_lab("--check", "--out", str(PCAPS), "--only", *LEARNING, timeout=600)
    assert proc.returncode == 0, proc.stderr
    for name in LEARNING:
        assert str(PCAPS / "learning" / f"{name}.pcap") in proc.stdout


def test_every_scenario_is_checked() -> None:
    proc = run_make_lab("--list")
    listed = {line.split()[0] for line in proc.stdout.splitlines()}
    checked = {name.removesuffix(".pcap") for name in COMMITTED} | set(SECOND_RUNS)
    assert listed == checked | set(LEARNING)


@needs_tshark
def test_attack_capture_scans_every_function_code() -> None:
    pcap = PCAPS / "modbus_attacks.pcap"
    names = ("modbus.func_code", "modbus.exception_code", "mbtcp.unit_id")
    requests = fields(pcap, f"mbtcp && ip.src == {ATTACKER[0]} && ip.dst == {PLC1[0]}", *names)
    answers = fields(pcap, f"mbtcp && ip.src == {PLC1[0]} && ip.dst == {ATTACKER[0]}", *names)
    assert {int(r[0]) for r in requests if r[0]} >= set(range(1, 128))
    illegal = {int(r[0]) for r in answers if r[1] == "1"}
    assert illegal == set(range(1, 128)) - PYMODBUS_FCS | {0}  # FC 0: the raw reserved one
    assert {r[2] for r in requests + answers} == {"1"}
    swept = fields(pcap, f"modbus.exception_code == 2 && ip.dst == {ATTACKER[0]}", "ip.src")
    assert len(swept) >= 31


@needs_tshark
def test_attack_capture_runs_inside_normal_polling() -> None:
    pcap = PCAPS / "modbus_attacks.pcap"
    times = [float(r[0]) for r in fields(pcap, f"ip.src == {ATTACKER[0]}", "frame.time_relative")]
    hmi = fields(pcap, f"mbtcp && ip.src == {HMI[0]}", "frame.time_relative")
    hmi_times = [float(r[0]) for r in hmi]
    assert min(hmi_times) < min(times) and max(times) < max(hmi_times)
    # only the attacker's deliberately broken frames are malformed
    malformed = fields(pcap, "_ws.malformed", "ip.src", "tcp.dstport")
    assert malformed
    assert {(r[0], r[1]) for r in malformed} == {(ATTACKER[0], "502")}


@needs_tshark
def test_engineering_capture_holds_every_step() -> None:
    pcap = PCAPS / "s7comm_engineering.pcap"
    eng, plc = ENG[0], PLC2[0]
    # PG connection (TSAP 0x0102) from the engineering station, OP (0x0202) from the HMI
    called = fields(pcap, "cotp.type == 0x0e", "ip.src", "cotp.dst-tsap-bytes")
    assert sorted((r[0], r[1]) for r in called) == [(HMI[0], "0202"), (eng, "0102")]
    jobs = fields(pcap, f"s7comm.header.rosctr == 1 && ip.src == {eng}", "s7comm.param.func")
    assert {int(r[0], 16) for r in jobs} >= {0xF0, 0x04, 0x05, 0x1A, 0x1D, 0x1E, 0x1F, 0x28, 0x29}
    # python-snap7's server drives the download: it asks for the block and ends the download
    plc_jobs = fields(pcap, f"s7comm.header.rosctr == 1 && ip.src == {plc}", "s7comm.param.func")
    assert sorted(int(r[0], 16) for r in plc_jobs) == [0x1B, 0x1B, 0x1C]  # DB3 in two fragments
    names = ("s7comm.param.userdata.funcgroup", "s7comm.param.userdata.subfunc")
    userdata = fields(pcap, f"s7comm.header.rosctr == 7 && ip.src == {eng}", *names)
    pairs = {(int(r[0]), int(r[1])) for r in userdata}
    assert pairs == {(4, 1), (3, 1), (3, 2), (3, 3), (7, 1), (7, 2), (5, 1), (5, 2)}
    szl = fields(
        pcap, f"s7comm.data.userdata.szl_id && ip.src == {eng}", "s7comm.data.userdata.szl_id"
    )
    assert {int(r[0], 16) for r in szl} == {0x0000, 0x0011, 0x001C, 0x0131, 0x0132, 0x0232, 0x0424}
    pi = fields(
        pcap,
        f"s7comm.param.pistart.servicename && ip.src == {eng}",
        "s7comm.param.pistart.servicename",
    )
    assert {r[0] for r in pi} == {"P_PROGRAM", "_GARB", "_MODU"}
    assert fields(pcap, f'ip.src == {eng} && tcp.payload contains "_DELE"', "frame.number")
    # upload of OB1 is refused: python-snap7's server holds DBs only
    refused = fields(pcap, f"s7comm.header.rosctr == 2 && ip.dst == {eng}", "s7comm.header.errcls")
    assert [r[0] for r in refused] == ["0xd2"]


def _db_numbers(items: list[list[str]]) -> set[int]:
    """DB numbers of the items (area 0x84) in rows of s7comm.param.item.area, .db."""
    return {
        int(db)
        for area, dbs in items
        for a, db in zip(area.split(","), dbs.split(","), strict=True)
        if int(a, 16) == 0x84
    }


@needs_tshark
def test_engineering_capture_runs_inside_normal_polling() -> None:
    pcap = PCAPS / "s7comm_engineering.pcap"
    eng = fields(pcap, f"ip.src == {ENG[0]}", "frame.time_relative")
    hmi = fields(pcap, f"s7comm && ip.src == {HMI[0]}", "frame.time_relative")
    eng_times, hmi_times = [float(r[0]) for r in eng], [float(r[0]) for r in hmi]
    assert min(hmi_times) < min(eng_times) and max(eng_times) < max(hmi_times)
    # the HMI reads and writes DB1 and DB2 only; the engineer writes DB10
    names = ("s7comm.param.item.area", "s7comm.param.item.db")
    hmi_items = fields(pcap, f"s7comm.param.item.db && ip.src == {HMI[0]}", *names)
    eng_items = fields(pcap, f"s7comm.param.item.db && ip.src == {ENG[0]}", *names)
    assert _db_numbers(hmi_items) == {1, 2}
    assert _db_numbers(eng_items) == {10}
    # malformed to tshark: the server's SZL 0x0011 answer, the client's get_cpu_state job
    # (Read Var without items) twice, its non-standard _DELE job; nothing of the HMI's
    malformed = fields(pcap, "_ws.malformed", "ip.src", "s7comm.param.func", "s7comm.header.rosctr")
    assert sorted((r[0], r[1], r[2]) for r in malformed) == sorted(
        [(PLC2[0], "", "7"), (ENG[0], "0x04", "1"), (ENG[0], "0x04", "1"), (ENG[0], "0x28", "1")]
    )


@needs_tshark
def test_port5020_capture_needs_decode_as() -> None:
    pcap = PCAPS / "modbus_port5020.pcap"
    assert not fields(pcap, "mbtcp", "frame.number")
    assert not fields(pcap, "tcp.port == 502", "frame.number")
    responses = fields(pcap, "mbtcp && tcp.srcport == 5020", "modbus.func_code", options=PORT5020)
    assert {int(r[0]) for r in responses} == {1, 2, 3, 4, 5, 6, 15, 16}
    with_exception = fields(pcap, "modbus.exception_code == 2", "ip.src", options=PORT5020)
    assert [r[0] for r in with_exception] == [PLC1[0]]


@needs_tshark
def test_check_rejects_capture_of_the_wrong_protocol(tmp_path: Path) -> None:
    shutil.copyfile(PCAPS / "modbus_normal.pcap", tmp_path / "s7comm_normal.pcap")
    proc = run_make_lab("--check", "--only", "s7comm_normal", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "tshark finds no s7comm frames" in proc.stderr
    assert "missing: COTP CR" in proc.stderr


@needs_tshark
def test_check_rejects_modbus_on_502_as_port5020(tmp_path: Path) -> None:
    shutil.copyfile(PCAPS / "modbus_normal.pcap", tmp_path / "modbus_port5020.pcap")
    proc = run_make_lab("--check", "--only", "modbus_port5020", "--out", str(tmp_path))
    assert proc.returncode == 1
    assert "missing: FC3" in proc.stderr


#: OPC UA status codes (Part 4 / 6)
BAD_USER_ACCESS_DENIED = "0x801f0000"
BAD_TYPE_MISMATCH = "0x80740000"
BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def _services(rows: list[list[str]]) -> list[int]:
    """The service NodeIds in rows of opcua.servicenodeid.numeric."""
    return [int(v) for row in rows for v in row[0].split(",") if v]


def _thumbprint(stem: str) -> str:
    """SHA-1 of a lab certificate (DER), as hex."""
    return hashlib.sha1((CERTS / f"{stem}.der").read_bytes()).hexdigest()


@needs_tshark
def test_opcua_attack_capture_holds_every_step() -> None:
    pcap = PCAPS / "opcua_attacks.pcap"
    att = ATTACKER[0]
    sent = _services(fields(pcap, f"opcua && ip.src == {att}", "opcua.servicenodeid.numeric"))
    # GetEndpoints, OPN, CLO, CreateSession, ActivateSession, CloseSession, Browse, BrowseNext,
    # Read, Write, Call; nothing else
    assert set(sent) == {428, 446, 452, 461, 467, 473, 527, 533, 631, 673, 712}
    # user "admin" with guessed passwords, in clear text (policy None), refused by ServiceFault
    logins = fields(
        pcap,
        f"opcua.servicenodeid.numeric == 467 && ip.src == {att} && opcua.UserName",
        "opcua.UserName",
        "opcua.Password",
    )
    assert [(r[0], bytes.fromhex(r[1]).decode()) for r in logins] == [
        ("admin", "admin"),
        ("admin", "password"),
    ]
    faults = fields(
        pcap, f"opcua.servicenodeid.numeric == 397 && ip.dst == {att}", "opcua.ServiceResult"
    )
    assert [r[0] for r in faults] == [BAD_USER_ACCESS_DENIED] * 2
    # every continuation point the server hands out is fetched with BrowseNext, none twice
    handed = fields(
        pcap,
        f"(opcua.servicenodeid.numeric == 530 || opcua.servicenodeid.numeric == 536)"
        f" && ip.dst == {att}",
        "opcua.ContinuationPoint",
    )
    points = [v for r in handed for v in r[0].split(",") if v and v != "<MISSING>"]
    asked = fields(
        pcap,
        f"opcua.servicenodeid.numeric == 533 && ip.src == {att}",
        "opcua.ContinuationPoints",
        "opcua.ReleaseContinuationPoints",
    )
    fetched = [v for r in asked for v in r[0].split(",") if v]
    assert points and sorted(fetched) == sorted(points) and len(set(points)) == len(points)
    assert {r[1] for r in asked} == {"0"}
    assert {
        int(r[0])
        for r in fields(
            pcap, "opcua.RequestedMaxReferencesPerNode", "opcua.RequestedMaxReferencesPerNode"
        )
    } >= {8}
    # writes: Setpoint accepted, read-only values refused, a String into Int32 Mode refused
    results = fields(
        pcap, f"opcua.servicenodeid.numeric == 676 && ip.dst == {att}", "opcua.Results"
    )
    codes = sorted(v for r in results for v in r[0].split(","))
    assert codes == sorted(
        ["0x00000000", BAD_USER_ACCESS_DENIED, BAD_USER_ACCESS_DENIED, BAD_USER_ACCESS_DENIED]
        + [BAD_TYPE_MISMATCH]
    )
    called = fields(
        pcap, f"opcua.servicenodeid.numeric == 715 && ip.dst == {att}", "opcua.StatusCode"
    )
    assert [r[0].split(",")[0] for r in called] == ["0x00000000"]


@needs_tshark
def test_opcua_attack_capture_runs_inside_hmi_session() -> None:
    pcap = PCAPS / "opcua_attacks.pcap"
    att = [float(r[0]) for r in fields(pcap, f"ip.src == {ATTACKER[0]}", "frame.time_relative")]
    hmi = [float(r[0]) for r in fields(pcap, f"opcua && ip.src == {HMI[0]}", "frame.time_relative")]
    assert min(hmi) < min(att) and max(att) < max(hmi)
    assert not fields(pcap, "_ws.malformed", "frame.number")
    # the HMI: subscription with data changes, reads, setpoint writes
    services = _services(
        fields(pcap, f"opcua && ip.src == {HMI[0]}", "opcua.servicenodeid.numeric")
    )
    assert {751, 787, 826, 631, 673} <= set(services)
    assert services.count(826) >= 20 and services.count(673) >= 3
    # the 2400-element TrendBuffer: one ReadResponse in three chunks over many TCP segments
    trend = fields(
        pcap,
        f"opcua.servicenodeid.numeric == 634 && opcua.fragment.count && ip.dst == {HMI[0]}",
        "opcua.fragment.count",
        "opcua.reassembled.length",
        "opcua.variant.ArraySize",
    )
    assert len(trend) >= 2
    for count, length, sizes in trend:
        assert int(count) == 3 and int(length) > 19_200 and "2400" in sizes.split(",")
    acks = fields(
        pcap, 'opcua.transport.type == "ACK"', "opcua.transport.rbs", "opcua.transport.sbs"
    )
    assert {(r[0], r[1]) for r in acks} == {("8192", "8192")}


@needs_tshark
def test_opcua_secure_capture_signs_and_encrypts() -> None:
    pcap = PCAPS / "opcua_secure.pcap"
    thumbs = {OPCSRV[0]: "opcsrv", ENG[0]: "eng", HMI[0]: "hmi"}
    thumbs = {ip: _thumbprint(stem) for ip, stem in thumbs.items()}
    names = ("ip.src", "ip.dst", "opcua.security.spu", "opcua.security.scert")
    opn = fields(pcap, 'opcua.transport.type == "OPN"', *names, "opcua.security.rcthumb")
    assert len(opn) == 4
    for src, dst, policy, cert, receiver in opn:
        assert policy == BASIC256SHA256
        assert hashlib.sha1(bytes.fromhex(cert)).hexdigest() == thumbs[src]
        assert receiver == thumbs[dst]
    # eng signs and encrypts: tshark reads no service in its chunks (at most a random NodeId
    # from the ciphertext); the HMI only signs: every chunk decodes
    known = {397, 452, 461, 464, 467, 470, 473, 476, 527, 530, 554, 557, 631, 634, 673, 676}
    eng = fields(
        pcap, f'opcua.transport.type == "MSG" && ip.addr == {ENG[0]}', "opcua.servicenodeid.numeric"
    )
    assert len(eng) >= 20 and not set(_services(eng)) & known
    hmi = fields(
        pcap, f'opcua.transport.type == "MSG" && ip.addr == {HMI[0]}', "opcua.servicenodeid.numeric"
    )
    assert all(r[0] for r in hmi)
    assert {461, 464, 467, 470, 631, 634} <= set(_services(hmi)) <= known
    # the thumbprints are the ones pcaps/README.md records
    readme = (PCAPS / "README.md").read_text()
    assert all(thumb in readme for thumb in thumbs.values())


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "ethtool", "tcpdump", "tshark"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = f"otlabprobe{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if added.returncode != 0:
        return "ip netns is not usable here"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@pytest.mark.lab
def test_quick_modbus_capture(tmp_path: Path) -> None:
    reason = _lab_unavailable()
    if reason:
        pytest.skip(reason)
    proc = run_make_lab("--only", "modbus_normal", "--quick", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    pcap = tmp_path / "modbus_normal.pcap"

    frames = fields(pcap, "", "frame.len", "frame.time_relative", "eth.src", "ip.src")
    assert frames
    assert max(int(f[0]) for f in frames) <= MAX_FRAME
    assert float(frames[-1][1]) < 15, "--quick session ran long"
    stations = {HMI, PLC1, RTU1}
    assert {(f[3], f[2]) for f in frames if f[3]} == stations

    names = ["eth.src", "eth.dst", "ip.src", "ip.dst", "modbus.func_code"]
    names += ["modbus.request_frame", "modbus.exception_code"]
    requests = fields(pcap, "mbtcp && tcp.dstport == 502", *names)
    responses = fields(pcap, "mbtcp && tcp.srcport == 502", *names)
    assert {(r[2], r[0]) for r in requests} == {HMI}
    assert {(r[3], r[1]) for r in requests} == {PLC1, RTU1}
    assert {(r[2], r[0]) for r in responses} == {PLC1, RTU1}
    assert {(r[3], r[1]) for r in responses} == {HMI}
    assert {int(r[4]) for r in requests} >= {1, 2, 3, 4, 5, 6, 15, 16}
    assert len(responses) == len(requests)
    # tshark links every response but exception responses to its request frame
    assert all(r[5] or r[6] for r in responses), "a response matches no request"

    exceptions = fields(pcap, "modbus.exception_code == 2", "ip.src")
    assert [r[0] for r in exceptions] == [PLC1[0]]
    assert fields(pcap, "mbtcp.unit_id == 2 && tcp.srcport == 502", "ip.src")
