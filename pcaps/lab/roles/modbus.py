"""Modbus/TCP roles: pymodbus servers for plc1 and rtu1, and the HMI that polls them.

plc1 unit 1 is the pumping-station controller, unit 2 the pump's drive behind it; rtu1 is an
I/O coupler. Each uses the classic four separate tables (coils, discrete inputs, holding
registers, input registers). Every FC4 read advances the unit's process model one scan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lab.process import ProcessModel, Sample
from lab.roles import RoleArgs, announce_ready, role, until_sigterm

PORT = 502
FC_READ_DISCRETE_INPUTS = 2
FC_READ_INPUT_REGISTERS = 4
ILLEGAL_DATA_ADDRESS = 2


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
) -> Any:
    """A pymodbus SimDevice whose FC4 reads advance model and FC2/FC4 publish its scans."""
    from pymodbus.simulator import DataType, SimData, SimDevice

    latest = [model.next()]

    async def action(
        func_code: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> None:
        if func_code == FC_READ_INPUT_REGISTERS:
            latest[0] = model.next()
            for i, value in enumerate(inputs(latest[0])):
                regs[i - start] = value
        elif func_code == FC_READ_DISCRETE_INPUTS:
            for i, value in enumerate(_pack_bits(discretes(latest[0]))):
                regs[i - start] = value

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


def pump_station(seed: int) -> list[Any]:
    """plc1: unit 1 station controller, unit 2 the pump drive."""
    run_hours = 18_234

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
            holding=[1480, 50, 50, 0x047F, 350, 0, 0, 0],
            inputs=_drive_inputs,
            discretes=drive_discretes,
            input_count=16,
        ),
    ]


def io_coupler(seed: int) -> list[Any]:
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


DEVICES: dict[str, Callable[[int], list[Any]]] = {
    "pump-station": pump_station,
    "io-coupler": io_coupler,
}


@role("modbus-server")
def modbus_server(args: RoleArgs) -> None:
    """Serve one of DEVICES on args["ip"]:502 until SIGTERM."""
    from pymodbus.server import ModbusTcpServer

    devices = DEVICES[args["device"]](int(args["seed"]))

    async def serve() -> None:
        server: Any = ModbusTcpServer(devices, address=(args["ip"], PORT))
        await server.serve_forever(background=True)
        announce_ready()
        await until_sigterm()
        await server.shutdown()

    asyncio.run(serve())


class _Poller:
    """One HMI connection; every request must succeed unless it is meant to fail."""

    def __init__(self, host: str) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        self.host = host
        self.client = AsyncModbusTcpClient(host, port=PORT, timeout=2, retries=0)
        self.requests = 0

    async def connect(self) -> None:
        if not await self.client.connect():
            raise SystemExit(f"modbus: cannot connect to {self.host}:{PORT}")

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
    asyncio.run(_hmi(args["plc"], args["rtu"], float(args["duration"]), float(args["period"])))


async def _hmi(plc_ip: str, rtu_ip: str, duration: float, period: float) -> None:
    plc, rtu = _Poller(plc_ip), _Poller(rtu_ip)
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
