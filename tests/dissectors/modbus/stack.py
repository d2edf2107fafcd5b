"""Modbus ADUs encoded by pymodbus (a real protocol stack), and a harness feeding them through the
real TCP reassembler into our dissector."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu import bit_message as bits
from pymodbus.pdu import diag_message as diag
from pymodbus.pdu import file_message as files
from pymodbus.pdu import mei_message as mei
from pymodbus.pdu import other_message as other
from pymodbus.pdu import register_message as regs

from otsentry.dissectors.modbus import ModbusSession
from otsentry.model import Conn
from tests.dissectors.harness import FlowHarness

_FRAMER = FramerSocket(DecodePDU(False))
CONN = Conn("1:test", "tcp", "10.0.0.5", 50212, "10.0.0.9", 502, segment="lab")  # as the harness's


def adu(pdu: ModbusPDU, tid: int, unit: int = 1) -> bytes:
    """One MBAP-framed ADU, as pymodbus sends it."""
    pdu.transaction_id = tid
    pdu.dev_id = unit
    return bytes(_FRAMER.buildFrame(pdu))


def exception(fc: int, code: int, tid: int, unit: int = 1) -> bytes:
    """An exception response, as pymodbus' server sends it."""
    return adu(ExceptionResponse(fc, code), tid, unit)


#: (request, response) PDUs covering every public function code pymodbus implements
def transactions() -> list[tuple[ModbusPDU, ModbusPDU | None]]:
    coils = [True, False, True, True, False, False, True, False, True, True]
    return [
        (bits.ReadCoilsRequest(address=100, count=10), bits.ReadCoilsResponse(bits=coils)),
        (
            bits.ReadDiscreteInputsRequest(address=7, count=3),
            bits.ReadDiscreteInputsResponse(bits=[False, True, True]),
        ),
        (
            regs.ReadHoldingRegistersRequest(address=40, count=3),
            regs.ReadHoldingRegistersResponse(registers=[1, 65535, 1234]),
        ),
        (
            regs.ReadInputRegistersRequest(address=0, count=2),
            regs.ReadInputRegistersResponse(registers=[17, 18]),
        ),
        (
            bits.WriteSingleCoilRequest(address=5, bits=[True]),
            bits.WriteSingleCoilResponse(address=5, bits=[True]),
        ),
        (
            regs.WriteSingleRegisterRequest(address=3, registers=[4242]),
            regs.WriteSingleRegisterResponse(address=3, registers=[4242]),
        ),
        (other.ReadExceptionStatusRequest(), other.ReadExceptionStatusResponse(status=0x55)),
        (diag.ReturnQueryDataRequest(0x1234), diag.ReturnQueryDataResponse(0x1234)),
        (diag.RestartCommunicationsOptionRequest(0), None),
        (diag.ForceListenOnlyModeRequest(0), None),
        (other.GetCommEventCounterRequest(), other.GetCommEventCounterResponse(count=12)),
        (
            other.GetCommEventLogRequest(),
            other.GetCommEventLogResponse(message_count=3, event_count=2, events=[1, 2]),
        ),
        (
            bits.WriteMultipleCoilsRequest(address=20, bits=[True] * 9),
            bits.WriteMultipleCoilsResponse(address=20, count=9),
        ),
        (
            regs.WriteMultipleRegistersRequest(address=40, registers=[1234, 5678]),
            regs.WriteMultipleRegistersResponse(address=40, count=2),
        ),
        (
            other.ReportDeviceIdRequest(),
            other.ReportDeviceIdResponse(identifier=b"M580 BMEP58", status=True),
        ),
        (
            files.ReadFileRecordRequest(
                [files.FileRecord(file_number=4, record_number=1, record_length=2)]
            ),
            files.ReadFileRecordResponse([files.FileRecord(record_data=b"\x00\x01\x00\x02")]),
        ),
        (
            files.WriteFileRecordRequest(
                [files.FileRecord(file_number=4, record_number=7, record_data=b"\x12\x34")]
            ),
            files.WriteFileRecordResponse(
                [files.FileRecord(file_number=4, record_number=7, record_data=b"\x12\x34")]
            ),
        ),
        (
            regs.MaskWriteRegisterRequest(address=4, and_mask=0x00F2, or_mask=0x0025),
            regs.MaskWriteRegisterResponse(address=4, and_mask=0x00F2, or_mask=0x0025),
        ),
        (
            regs.ReadWriteMultipleRegistersRequest(
                read_address=3, read_count=2, write_address=14, write_registers=[255, 256, 257]
            ),
            regs.ReadWriteMultipleRegistersResponse(registers=[9, 10]),
        ),
        (files.ReadFifoQueueRequest(address=1246), files.ReadFifoQueueResponse(values=[440, 4])),
        (
            mei.ReadDeviceInformationRequest(read_code=1, object_id=0),
            mei.ReadDeviceInformationResponse(
                read_code=1,
                information={0: b"Schneider Electric", 1: b"BMEP582040", 2: b"v3.20"},
            ),
        ),
    ]


def streams(unit: int = 1, first_tid: int = 1) -> tuple[list[bytes], list[bytes]]:
    """Client and server ADUs of one conversation over every function code above."""
    client, server = [], []
    for tid, (req, resp) in enumerate(transactions(), first_tid):
        client.append(adu(req, tid, unit))
        server.append(adu(resp if resp is not None else type(req)(), tid, unit))
    return client, server


@dataclass
class Harness(FlowHarness):
    """The flow harness with a Modbus session."""

    factory: Callable[[Any], Any] = ModbusSession


def feed(pairs: Iterable[tuple[bytes, bytes]], harness: Harness | None = None) -> Harness:
    """Each request then its response as one segment each."""
    h = harness if harness is not None else Harness()
    for i, (req, resp) in enumerate(pairs):
        h.send(True, req, ts=i * 1_000_000)
        h.send(False, resp, ts=i * 1_000_000 + 500_000)
    return h
