"""S7comm roles: a python-snap7 server playing an S7-300 on plc2, and the HMI's session.

Memory of the PLC: DB1 process values, DB2 setpoints, process image inputs (PE) and
outputs (PA), merkers (MK). Every read of DB1 advances the process model one scan.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from lab.process import ProcessModel, Sample
from lab.roles import RoleArgs, announce_ready, exit_on_sigterm, role

PORT = 102
RACK, SLOT = 0, 2  # S7-300 CPU in slot 2
CONNECTION_TYPE_OP = 2  # HMI ("operator panel") connection
DB_PROCESS, DB_SETPOINTS = 1, 2


class PlcMemory:
    """The server's areas, refreshed from the process model."""

    def __init__(self, seed: int) -> None:
        self.model = ProcessModel(seed)
        self.db1 = bytearray(40)
        self.db2 = bytearray(20)
        self.pe = bytearray(8)
        self.pa = bytearray(8)
        self.mk = bytearray(32)
        struct.pack_into(">fff", self.db2, 0, 65.0, 42.0, 5.2)
        struct.pack_into(">hh", self.db2, 12, 1, 3)
        self.mk[0] = 0b0000_0101
        struct.pack_into(">H", self.mk, 10, 1200)
        self.publish(self.model.next())

    def publish(self, s: Sample) -> None:
        """Write one scan into DB1, the process image and the merkers."""
        bits = s.pump_running | s.valve_open << 1 | s.level_high << 2 | s.level_low << 3
        struct.pack_into(
            ">6fhhi",
            self.db1,
            0,
            s.level_pct,
            s.flow_m3h,
            s.pressure_bar,
            s.temperature_c,
            s.pump_rpm,
            s.motor_current_a,
            bits | 1 << 4,
            s.step & 0x7FFF,
            36_000 + s.step,
        )
        self.pe[0] = bits | 1 << 4  # I0.4: emergency stop circuit healthy
        struct.pack_into(
            ">hh", self.pe, 2, round(s.level_pct * 276.48), round(s.pressure_bar * 2764.8)
        )
        self.pa[0] = s.pump_running | s.valve_open << 1
        struct.pack_into(">h", self.pa, 2, round(s.pump_rpm / 1500 * 27648))
        self.mk[1] = s.step & 0xFF
        struct.pack_into(">i", self.mk, 4, s.step)

    def next_scan(self) -> None:
        """Advance the process one scan."""
        self.publish(self.model.next())


@role("s7-server")
def s7_server(args: RoleArgs) -> None:
    """Serve the PLC memory on args["ip"]:102 until SIGTERM."""
    import snap7
    from snap7.type import SrvArea

    memory = PlcMemory(int(args["seed"]))
    server = snap7.Server(log=False)
    server.host = args["ip"]
    server.register_area(SrvArea.DB, DB_PROCESS, memory.db1)
    server.register_area(SrvArea.DB, DB_SETPOINTS, memory.db2)
    server.register_area(SrvArea.PE, 0, memory.pe)
    server.register_area(SrvArea.PA, 0, memory.pa)
    server.register_area(SrvArea.MK, 0, memory.mk)

    def on_read(event: Any) -> None:
        if event.EvtParam1 == SrvArea.DB and event.EvtParam2 == DB_PROCESS:
            memory.next_scan()

    server.set_read_events_callback(on_read)
    exit_on_sigterm()
    server.start(tcp_port=PORT)
    announce_ready()
    try:
        while True:
            time.sleep(1)
    finally:
        server.stop()


@role("s7-hmi")
def s7_hmi(args: RoleArgs) -> None:
    """Identify the CPU, poll DB1 every args["period"] s, write a few setpoints, disconnect."""
    import snap7
    from snap7.type import Area

    client = snap7.Client()
    client.set_connection_type(CONNECTION_TYPE_OP)
    client.connect(args["plc"], RACK, SLOT, tcp_port=PORT)
    info = client.get_cpu_info()  # read SZL 0x001C
    clock = client.get_plc_datetime()
    print(f"s7-hmi: {info.ModuleTypeName.decode()}, PLC clock {clock}")

    period, duration = float(args["period"]), float(args["duration"])
    cycles = max(10, round(duration / period))
    writes = {
        round(0.25 * cycles): lambda: client.db_write(
            DB_SETPOINTS, 0, bytearray(struct.pack(">f", 62.5))
        ),
        round(0.50 * cycles): lambda: client.write_area(Area.MK, 0, 20, bytearray(b"\x01")),
        round(0.75 * cycles): lambda: client.db_write(
            DB_SETPOINTS, 12, bytearray(struct.pack(">hh", 2, 4))
        ),
    }
    image = [
        {"area": Area.PE, "start": 0, "size": 4},
        {"area": Area.PA, "start": 0, "size": 4},
        {"area": Area.MK, "start": 0, "size": 8},
    ]
    reads = 0
    start = time.monotonic()
    for n in range(cycles):
        client.db_read(DB_PROCESS, 0, 32)
        reads += 1
        if n % 5 == 1:
            client.read_area(Area.PE, 0, 0, 4)
            client.read_area(Area.PA, 0, 0, 4)
            client.read_area(Area.MK, 0, 0, 8)
            reads += 3
        if n % 10 == 3:
            client.db_read(DB_SETPOINTS, 0, 16)
            client.read_multi_vars(image)
            reads += 2
        if n in writes:
            writes[n]()
        time.sleep(max(0.0, start + (n + 1) * period - time.monotonic()))
    client.disconnect()
    print(f"s7-hmi: {reads} reads, {len(writes)} writes to {args['plc']}")
