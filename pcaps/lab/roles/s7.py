"""S7comm roles: a python-snap7 server playing an S7-300 on plc2, the HMI's session, and an
engineering station's session (identify, blocks, upload, download, clock, stop/start, ...).

Memory of the PLC: DB1 process values, DB2 setpoints, process image inputs (PE) and
outputs (PA), merkers (MK), and optionally further (empty) DBs. Every read of DB1 advances
the process model one scan.
"""

from __future__ import annotations

import contextlib
import random
import struct
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lab.process import ProcessModel, Sample
from lab.roles import RoleArgs, announce_ready, exit_on_sigterm, role

PORT = 102
RACK, SLOT = 0, 2  # S7-300 CPU in slot 2
CONNECTION_TYPE_PG = 1  # programming device (engineering station) connection
CONNECTION_TYPE_OP = 2  # HMI ("operator panel") connection
DB_PROCESS, DB_SETPOINTS = 1, 2
#: DBs the engineering scenario adds: the recipe DB it downloads, and one it writes
DB_RECIPE, DB_SCRATCH = 3, 10


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
    extra = {int(number): bytearray(size) for number, size in args.get("extra_dbs", {}).items()}
    for number, area in extra.items():
        server.register_area(SrvArea.DB, number, area)

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


class _Engineer:
    """The engineering session's clock, pacing and PG connection, reconnecting when dropped."""

    def __init__(self, plc: str, duration: float, seed: int) -> None:
        import snap7

        self.plc = plc
        self.rng = random.Random(seed)
        self.start = time.monotonic()
        self.pause = duration / 28  # between the 14 steps
        self.gap = duration / 300  # between the requests of one step (about 50 of them)
        self.requests = 0
        self.errors = 0
        self.reconnects = 0
        self.client = snap7.Client()
        self.client.set_connection_type(CONNECTION_TYPE_PG)  # remote TSAP 0x01xx

    def say(self, what: str) -> None:
        print(f"s7-engineering: {time.monotonic() - self.start:5.2f} s {what}", flush=True)

    def connect(self) -> None:
        self.client.connect(self.plc, RACK, SLOT, tcp_port=PORT)
        c = self.client
        self.say(
            f"  connected, TSAP {c.local_tsap:#06x} -> {c.remote_tsap:#06x}, PDU {c.pdu_length}"
        )

    def reconnect(self) -> None:
        with contextlib.suppress(Exception):  # the old socket may be gone already
            self.client.disconnect()
        self.reconnects += 1
        self.connect()

    def do(self, what: str, call: Callable[[], Any], *, refused: bool = False) -> Any:
        """One request (or exchange); refused: the server answers it with an error."""
        from snap7.error import S7ConnectionError, S7ProtocolError, S7TimeoutError

        self.requests += 1
        result: Any = None
        try:
            result = call()
            outcome = "ok"
        except (S7ProtocolError, RuntimeError) as exc:
            outcome = f"error response ({exc})"
            self.errors += 1
        except (S7ConnectionError, S7TimeoutError, OSError) as exc:
            self.say(f"  {what}: connection lost ({exc}), reconnecting")
            self.reconnect()
            return None
        if refused != outcome.startswith("error"):
            raise SystemExit(f"s7-engineering: {what}: {outcome}, expected the other")
        shown = "" if result is None or result == 0 else f" -> {_show(result)}"
        self.say(f"  {what}: {outcome}{shown}")
        time.sleep(self.gap)
        return result


def _show(value: Any) -> str:
    """A short text for a python-snap7 result (ctypes structures show their fields)."""
    fields = getattr(value, "_fields_", None)
    if fields:
        parts = []
        for name, *_ in fields:
            item = getattr(value, name)
            if isinstance(item, bytes):
                item = item.rstrip(b"\x00").decode(errors="replace")
            elif not isinstance(item, int | str):
                continue
            parts.append(f"{name}={item}")
        return ", ".join(parts)[:160]
    if isinstance(value, tuple):  # full_upload: (block, size)
        return f"{value[1]} bytes: " + _show(value[0])
    if isinstance(value, bytes | bytearray):
        return value.hex(" ")[:96]
    return str(value)[:160]


#: DB3, the recipe table the engineer downloads: RECIPES recipes of five REALs (640 bytes, so
#: the block with its 36-byte header takes two download fragments of at most 462 bytes)
RECIPES = 32


def _recipes(rng: random.Random) -> bytes:
    """The recipe table: level setpoint %, flow m3/h, pressure limit bar, dosing ratio, batch l."""
    table = bytearray()
    for _ in range(RECIPES):
        table += struct.pack(
            ">5f",
            round(rng.uniform(55, 70), 1),
            round(rng.uniform(38, 46), 1),
            round(rng.uniform(5.0, 5.6), 2),
            round(rng.uniform(0.8, 1.4), 2),
            float(rng.choice((1200, 1500, 1800))),
        )
    return bytes(table)


@role("s7-engineering")
def s7_engineering(args: RoleArgs) -> None:
    """An engineering station (PG connection) works through plc2; see pcaps/README.md."""
    from snap7.type import Area, Block

    duration = float(args["duration"])
    eng = _Engineer(args["plc"], duration, int(args["seed"]))
    c = eng.client
    time.sleep(duration / 10)  # the HMI's normal polling comes first

    eng.say("1 connect: COTP CR (PG TSAP), setup communication")
    eng.connect()
    time.sleep(eng.pause)

    eng.say("2 identify: read SZL 0x0000, 0x0011, 0x001C, 0x0131, 0x0232, 0x0132, 0x0424")
    eng.do("SZL 0x0000 (list of SZL ids)", c.read_szl_list)
    eng.do("get_order_code (SZL 0x0011)", c.get_order_code)
    eng.do("get_cpu_info (SZL 0x001C)", c.get_cpu_info)
    eng.do("get_cp_info (SZL 0x0131)", c.get_cp_info)
    eng.do("get_protection (SZL 0x0232)", c.get_protection)
    eng.do("SZL 0x0132 index 4 (protection)", lambda: c.read_szl(0x0132, 4), refused=True)
    eng.do("SZL 0x0424 (CPU mode)", lambda: c.read_szl(0x0424, 0), refused=True)
    time.sleep(eng.pause)

    eng.say("3 CPU state: get_cpu_state")
    eng.do("get_cpu_state", c.get_cpu_state)
    time.sleep(eng.pause)

    eng.say("4 blocks: list_blocks, list_blocks_of_type DB and OB, get_block_info")
    eng.do("list_blocks", c.list_blocks)
    eng.do("list_blocks_of_type DB", lambda: c.list_blocks_of_type(Block.DB, 64))
    eng.do("list_blocks_of_type OB", lambda: c.list_blocks_of_type(Block.OB, 64))
    eng.do("get_block_info DB1", lambda: c.get_block_info(Block.DB, DB_PROCESS))
    eng.do("get_block_info OB1", lambda: c.get_block_info(Block.OB, 1), refused=True)
    time.sleep(eng.pause)

    eng.say("5 upload: upload DB1, full_upload DB2, full_upload OB1")
    eng.do("upload DB1", lambda: c.upload(DB_PROCESS))
    uploaded = eng.do("full_upload DB2", lambda: c.full_upload(Block.DB, DB_SETPOINTS))
    eng.do("full_upload OB1", lambda: c.full_upload(Block.OB, 1), refused=True)
    time.sleep(eng.pause)

    eng.say("6 session password: set_session_password")
    eng.do("set_session_password", lambda: c.set_session_password("plant30"))
    time.sleep(eng.pause)

    eng.say("7 PLC stop")
    eng.do("plc_stop", c.plc_stop)
    time.sleep(eng.pause)

    eng.say("8 download: DB3 (recipe table) built on DB2's uploaded header, upload to compare")
    recipe = _recipes(eng.rng)
    header = bytearray(uploaded[0][:36] if uploaded else bytes(36))
    header[2], header[4], header[5] = 0x01, 0x05, 0x0A  # as python-snap7 uploads a DB
    struct.pack_into(">H", header, 6, DB_RECIPE)
    struct.pack_into(">I", header, 8, 36 + len(recipe))
    struct.pack_into(">H", header, 34, len(recipe))
    eng.do("download DB3", lambda: c.download(bytearray(header + recipe), DB_RECIPE))
    back = eng.do("full_upload DB3", lambda: c.full_upload(Block.DB, DB_RECIPE))
    # python-snap7's server keeps the whole downloaded block, header included, as DB3's
    # bytes, and uploads them behind a header of its own
    if back is not None and bytes(back[0][72 : 72 + len(recipe)]) != recipe:
        raise SystemExit("s7-engineering: DB3 uploads other bytes than the recipe table")
    time.sleep(eng.pause)

    eng.say("9 write a DB the HMI never touches: db_write DB10")
    scratch = struct.pack(">4h2f", *(eng.rng.randrange(-500, 500) for _ in range(4)), 0.5, 1.5)
    eng.do("db_write DB10", lambda: c.db_write(DB_SCRATCH, 0, bytearray(scratch)))
    time.sleep(eng.pause)

    eng.say("10 clock: get, set to a fixed time, set to the PG's time, get")
    eng.do("get_plc_datetime", c.get_plc_datetime)
    fixed = datetime(2024, 3, 18, 6, 0, 0)
    eng.do("set_plc_datetime 2024-03-18 06:00", lambda: c.set_plc_datetime(fixed))
    eng.do("set_plc_system_datetime", c.set_plc_system_datetime)
    eng.do("get_plc_datetime", c.get_plc_datetime)
    time.sleep(eng.pause)

    eng.say("11 memory: compress, copy RAM to ROM")
    eng.do("compress", lambda: c.compress(2000))
    eng.do("copy_ram_to_rom", lambda: c.copy_ram_to_rom(2000))
    time.sleep(eng.pause)

    eng.say("12 block delete: delete DB10")
    eng.do("delete DB10", lambda: c.delete(Block.DB, DB_SCRATCH))
    time.sleep(eng.pause)

    eng.say("13 restart: cold start, stop, hot start")
    eng.do("plc_cold_start", c.plc_cold_start)
    eng.do("plc_stop", c.plc_stop)
    eng.do("plc_hot_start", c.plc_hot_start)
    eng.do("get_cpu_state", c.get_cpu_state)
    time.sleep(eng.pause)

    eng.say("14 monitor/modify M, I, Q; clear session password; disconnect")
    eng.do("read MB0-15", lambda: c.read_area(Area.MK, 0, 0, 16))
    eng.do("read IB0-7", lambda: c.read_area(Area.PE, 0, 0, 8))
    eng.do("read QB0-7", lambda: c.read_area(Area.PA, 0, 0, 8))
    eng.do("write MB30 := 1", lambda: c.write_area(Area.MK, 0, 30, bytearray(b"\x01")))
    eng.do("write IB1 := 0x80", lambda: c.write_area(Area.PE, 0, 1, bytearray(b"\x80")))
    eng.do("write QB1 := 0x01", lambda: c.write_area(Area.PA, 0, 1, bytearray(b"\x01")))
    eng.do("clear_session_password", c.clear_session_password)
    c.disconnect()
    eng.say(
        f"done, {eng.requests} requests, {eng.errors} error responses, {eng.reconnects} reconnects"
    )
