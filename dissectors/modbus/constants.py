"""Modbus/TCP numbers and names: function codes, exceptions, diagnostics, MEI, device identity.

Names are snake_case; ``event.action`` is ``modbus-`` plus the name with dashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

MODBUS_PORT = 502
MBAP_LEN = 7  # transaction id, protocol id, length, unit id
MAX_MBAP_LENGTH = 254  # unit id + PDU; the ADU is at most 260 bytes
MAX_ADU = 260
EXCEPTION_BIT = 0x80

#: public function codes (Modbus Application Protocol v1.1b3)
FUNCTIONS: dict[int, str] = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
    5: "write_single_coil",
    6: "write_single_register",
    7: "read_exception_status",
    8: "diagnostics",
    11: "get_comm_event_counter",
    12: "get_comm_event_log",
    15: "write_multiple_coils",
    16: "write_multiple_registers",
    17: "report_server_id",
    20: "read_file_record",
    21: "write_file_record",
    22: "mask_write_register",
    23: "read_write_multiple_registers",
    24: "read_fifo_queue",
    43: "encapsulated_interface_transport",
    90: "umas",  # reserved by the spec; Schneider Electric's UMAS
}

#: codes the spec reserves (legacy or vendor use); kept raw
RESERVED_FUNCTIONS = frozenset((9, 10, 13, 14, 41, 42, 91, 125, 126, 127))
#: codes the spec leaves to users (65-72, 100-110); kept raw
USER_DEFINED_FUNCTIONS = frozenset((*range(65, 73), *range(100, 111)))

READ_FUNCTIONS = frozenset((1, 2, 3, 4, 23, 24, 20))
WRITE_FUNCTIONS = frozenset((5, 6, 15, 16, 21, 22, 23))


def function_name(code: int) -> str:
    """The name of a function code (exception bit cleared): public, umas, or its class."""
    name = FUNCTIONS.get(code)
    if name is not None:
        return name
    if code in USER_DEFINED_FUNCTIONS:
        return "user_defined_function"
    if code in RESERVED_FUNCTIONS:
        return "reserved_function"
    return "unassigned_function"


EXCEPTIONS: dict[int, str] = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    7: "negative_acknowledge",  # legacy (Modicon), still sent by some devices
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_device_failed_to_respond",
}

#: FC 8 sub-functions
DIAGNOSTICS: dict[int, str] = {
    0: "return_query_data",
    1: "restart_communications_option",
    2: "return_diagnostic_register",
    3: "change_ascii_input_delimiter",
    4: "force_listen_only_mode",
    10: "clear_counters_and_diagnostic_register",
    11: "return_bus_message_count",
    12: "return_bus_communication_error_count",
    13: "return_bus_exception_error_count",
    14: "return_server_message_count",
    15: "return_server_no_response_count",
    16: "return_server_nak_count",
    17: "return_server_busy_count",
    18: "return_bus_character_overrun_count",
    19: "return_iop_overrun_count",
    20: "clear_overrun_counter_and_flag",
    21: "get_clear_modbus_plus_statistics",
}

#: FC 43 MEI types
MEI_TYPES: dict[int, str] = {
    13: "canopen_general_reference",
    14: "read_device_identification",
}

#: FC 43/14 read device id codes
READ_DEVICE_ID_CODES: dict[int, str] = {
    1: "basic",
    2: "regular",
    3: "extended",
    4: "specific",
}

#: FC 43/14 object ids (0x00-0x06 basic/regular, 0x80-0xFF private)
DEVICE_ID_OBJECTS: dict[int, str] = {
    0: "vendor_name",
    1: "product_code",
    2: "revision",
    3: "vendor_url",
    4: "product_name",
    5: "model_name",
    6: "user_application_name",
}

#: Schneider UMAS (FC 90) sub-functions
UMAS_FUNCTIONS: dict[int, str] = {
    0x01: "init_comm",
    0x02: "read_id",
    0x03: "read_project_info",
    0x04: "read_plc_info",
    0x06: "read_card_info",
    0x0A: "repeat",
    0x10: "take_plc_reservation",
    0x11: "release_plc_reservation",
    0x12: "keep_alive",
    0x20: "read_memory_block",
    0x22: "read_variables",
    0x23: "write_variables",
    0x24: "read_coils_registers",
    0x25: "write_coils_registers",
    0x26: "enable_disable_data_dictionary",
    0x30: "initialize_upload",
    0x31: "upload_block",
    0x32: "end_strategy_upload",
    0x33: "initialize_download",
    0x34: "download_block",
    0x35: "end_strategy_download",
    0x39: "read_ethernet_master_data",
    0x40: "start_plc",
    0x41: "stop_plc",
    0x50: "monitor_plc",
    0x58: "check_plc",
    0x70: "read_io_object",
    0x71: "write_io_object",
    0x73: "get_status_module",
    0xFD: "response_error",
    0xFE: "response_ok",
}


#: request codes a resynchronising parser or the probe accepts as the start of an ADU
KNOWN_FUNCTIONS = frozenset((*FUNCTIONS, *RESERVED_FUNCTIONS, *USER_DEFINED_FUNCTIONS))
#: response codes likewise: a known code, or one with the exception bit
KNOWN_RESPONSE_FUNCTIONS = KNOWN_FUNCTIONS | frozenset(c | EXCEPTION_BIT for c in KNOWN_FUNCTIONS)

#: every anomaly id the Modbus dissector emits → what it means
ANOMALIES: Final[Mapping[str, str]] = {
    "modbus.invalid_protocol_id": "MBAP protocol id is not 0",
    "modbus.invalid_length": "MBAP length or PDU size does not fit (short, long, over 260, cut)",
    "modbus.invalid_function_code": "code 0 or unassigned, or a request with the exception bit",
    "modbus.invalid_exception_code": "exception response with an undefined exception code",
    "modbus.invalid_quantity": "read or write quantity outside the range the spec allows",
    "modbus.invalid_value": "a value the spec forbids (e.g. a coil value not 0x0000/0xFF00)",
    "modbus.value_mismatch": "response byte count does not match the quantity requested",
    "modbus.unsolicited_response": "response with no pending request of its transaction and unit",
    "modbus.flooded": "open transactions at the cap: the oldest unanswered request dropped",
    "modbus.non_modbus_payload": "bytes on the connection that are no MBAP frame (skipped)",
}
