"""S7comm numbers and names: TPKT/COTP, ROSCTR, parameter functions, areas, sizes, return codes.

Names are snake_case; ``event.action`` is ``s7comm-`` plus a name with dashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

S7_PORT = 102
TPKT_VERSION = 3
TPKT_LEN = 4
S7COMM_ID = 0x32
S7COMM_PLUS_ID = 0x72
MAX_TSDU = 65_536  # bytes of one COTP-segmented S7 PDU kept while its DT TPDUs arrive

#: COTP TPDU types (high nibble of the type byte)
COTP_CR, COTP_CC, COTP_DR, COTP_DC, COTP_DT, COTP_ED, COTP_AK, COTP_EA, COTP_RJ, COTP_ER = (
    0xE0,
    0xD0,
    0x80,
    0xC0,
    0xF0,
    0x10,
    0x60,
    0x20,
    0x50,
    0x70,
)
COTP_TYPES: dict[int, str] = {
    COTP_CR: "connection_request",
    COTP_CC: "connection_confirm",
    COTP_DR: "disconnect_request",
    COTP_DC: "disconnect_confirm",
    COTP_DT: "data",
    COTP_ED: "expedited_data",
    COTP_AK: "data_acknowledgement",
    COTP_EA: "expedited_data_acknowledgement",
    COTP_RJ: "reject",
    COTP_ER: "tpdu_error",
}

#: the first byte of a remote TSAP says what kind of client connects (rack/slot in the second)
CONNECTION_TYPES: dict[int, str] = {
    0x01: "pg",  # programming device: an engineering station
    0x02: "op",  # operator panel: an HMI
    0x03: "s7_basic",
    0x10: "s7_basic",
}

ROSCTR: dict[int, str] = {
    1: "job",
    2: "ack",
    3: "ack_data",
    7: "userdata",
}

#: parameter function codes of job / ack_data PDUs
FUNCTIONS: dict[int, str] = {
    0x00: "cpu_services",
    0xF0: "setup_communication",
    0x04: "read_var",
    0x05: "write_var",
    0x1A: "request_download",
    0x1B: "download_block",
    0x1C: "download_ended",
    0x1D: "start_upload",
    0x1E: "upload",
    0x1F: "end_upload",
    0x28: "pi_service",
    0x29: "plc_stop",
}

#: PI services: what the engineering station asks the CPU to do
PI_SERVICES: dict[str, str] = {
    "P_PROGRAM": "plc_start",  # hot restart; "C " as argument: cold restart
    "_INSE": "insert_block",
    "_DELE": "delete_block",
    "_GARB": "compress_memory",
    "_MODU": "copy_ram_to_rom",
    "_EXEC": "execute",
    "_N_": "nc_service",
}

AREAS: dict[int, str] = {
    0x03: "system_info_200",
    0x05: "system_flags_200",
    0x06: "analog_inputs_200",
    0x07: "analog_outputs_200",
    0x1C: "counter",
    0x1D: "timer",
    0x1E: "iec_counter_200",
    0x1F: "iec_timer_200",
    0x80: "direct_peripheral",
    0x81: "inputs",
    0x82: "outputs",
    0x83: "flags",
    0x84: "data_block",
    0x85: "instance_data_block",
    0x86: "local_data",
    0x87: "previous_local_data",
}

#: item transport sizes of a read/write var request (S7ANY)
TRANSPORT_SIZES: dict[int, str] = {
    0x01: "bit",
    0x02: "byte",
    0x03: "char",
    0x04: "word",
    0x05: "int",
    0x06: "dword",
    0x07: "dint",
    0x08: "real",
    0x09: "date",
    0x0A: "tod",
    0x0B: "time",
    0x0C: "s5time",
    0x0F: "date_and_time",
    0x1C: "counter",
    0x1D: "timer",
    0x1E: "iec_timer",
    0x1F: "iec_counter",
    0x20: "hs_counter",
}

#: transport sizes of data items whose length field counts bits, not bytes
DATA_SIZES_IN_BITS = frozenset((0x03, 0x04, 0x05))

RETURN_CODES: dict[int, str] = {
    0x00: "reserved",
    0x01: "hardware_fault",
    0x03: "accessing_object_not_allowed",
    0x05: "invalid_address",
    0x06: "data_type_not_supported",
    0x07: "data_type_inconsistent",
    0x0A: "object_does_not_exist",
    0xFF: "success",
}

ERROR_CLASSES: dict[int, str] = {
    0x00: "no_error",
    0x81: "application_relationship",
    0x82: "object_definition",
    0x83: "no_resources_available",
    0x84: "error_on_service_processing",
    0x85: "error_on_supplies",
    0x87: "access_error",
}

#: block types in file names (two ASCII hex digits after "_")
BLOCK_TYPES: dict[str, str] = {
    "08": "OB",
    "09": "CMOD",
    "0A": "DB",
    "0B": "SDB",
    "0C": "FC",
    "0D": "SFC",
    "0E": "FB",
    "0F": "SFB",
}

#: destination file systems (the last character of a block file name)
FILESYSTEMS: dict[str, str] = {"P": "passive", "A": "active", "B": "active_and_passive"}

#: every anomaly id the S7comm / S7comm-plus dissector emits → what it means
ANOMALIES: Final[Mapping[str, str]] = {
    "s7comm.invalid_tpkt_length": "TPKT length shorter than a COTP header or longer than allowed",
    "s7comm.invalid_cotp_length": "COTP length indicator does not fit the TPDU",
    "s7comm.invalid_length": "S7 header, parameter or data lengths do not fit the PDU",
    "s7comm.item_count_mismatch": "item count differs from the items or return codes present",
    "s7comm.unknown_function": "job or ack_data with an undefined parameter function code",
    "s7comm.unknown_rosctr": "S7 header with an undefined ROSCTR (PDU type)",
    "s7comm.invalid_userdata": "userdata parameter head, method or length not as S7 sends it",
    "s7comm.unknown_userdata_function": "userdata function group or subfunction not defined",
    "s7comm.invalid_szl": "SZL answer whose record length or count does not match its data",
    "s7comm.truncated_data": "userdata data part cut short of its declared length",
    "s7comm.unsolicited_ack": "ack or ack_data with no pending job of that PDU reference",
    "s7comm.flooded": "open jobs at the cap: the oldest unanswered job dropped",
    "s7comm.unknown_protocol": "COTP data that is neither S7comm (0x32) nor S7comm-plus (0x72)",
    "s7comm.tsdu_too_long": "COTP-segmented PDU over 64 KiB: reassembly abandoned",
    "s7comm.non_s7_payload": "bytes on the S7 connection that are no TPKT frame (skipped)",
    "s7comm_plus.invalid_protocol_id": "S7comm-plus PDU whose header does not start with 0x72",
    "s7comm_plus.invalid_length": "S7comm-plus data length does not fit the PDU",
    "s7comm_plus.invalid_trailer": "S7comm-plus trailer differs from the header's id and version",
    "s7comm_plus.unknown_version": "S7comm-plus version not V1/V2/V3, system event or keep-alive",
    "s7comm_plus.unknown_opcode": "S7comm-plus opcode not request, response or notification",
    "s7comm_plus.unknown_function": "S7comm-plus function code that is not defined",
    "s7comm_plus.truncated": "S7comm-plus PDU or body cut short",
}
