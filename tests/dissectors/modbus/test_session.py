"""The Modbus session on pymodbus-encoded traffic, through the real TCP reassembler."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from pymodbus.pdu import bit_message as bits
from pymodbus.pdu import register_message as regs

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.dissect.base import Tracer
from otsentry.dissectors.modbus import SPEC, probe
from otsentry.model import Alert, Direction, Event
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS

from .stack import Harness, adu, exception, feed, streams, transactions


def mbap(tid: int, length: int, unit: int, pdu: bytes, pid: int = 0) -> bytes:
    """A hand-made ADU for malformed cases no real stack sends."""
    return struct.pack(">HHHB", tid, pid, length, unit) + pdu


def test_every_function_code_pairs_into_one_event() -> None:
    client, server = streams()
    h = feed(zip(client, server, strict=True))
    h.close()
    assert len(h.events) == len(transactions())
    assert all(e.envelope.direction is Direction.TRANSACTION for e in h.events)
    assert all(e.outcome == "success" and not e.anomalies for e in h.events)
    codes = [e.fields["function_code"] for e in h.events]
    assert codes == [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43]
    assert h.pdu_count == 2 * len(codes)


def test_values_are_tied_to_the_requested_registers() -> None:
    client, server = streams()
    h = feed(zip(client, server, strict=True))
    by_fc = {e.fields["function_code"]: e for e in h.events}
    read = by_fc[3]
    assert read.action == "modbus-read-holding-registers"
    assert (read.fields["address"], read.fields["quantity"]) == (40, 3)
    assert read.fields["values"] == [1, 65535, 1234]
    assert read.fields["request_frame"] == 5 and read.fields["response_frame"] == 6
    assert read.duration_ns == 500_000
    coils = by_fc[1]
    assert coils.fields["values"] == [
        True,
        False,
        True,
        True,
        False,
        False,
        True,
        False,
        True,
        True,
    ]
    assert by_fc[2].fields["values"] == [False, True, True]  # 3 of the 8 bits sent
    assert by_fc[16].fields["values"] == [1234, 5678]
    assert by_fc[15].fields["values"] == [True] * 9
    assert by_fc[5].fields["values"] == [True]
    rw = by_fc[23]
    assert (rw.fields["address"], rw.fields["quantity"], rw.fields["values"]) == (3, 2, [9, 10])
    assert rw.fields["write_address"] == 14 and rw.fields["write_values"] == [255, 256, 257]
    assert by_fc[22].fields["and_mask"] == 0xF2 and by_fc[22].fields["or_mask"] == 0x25
    assert by_fc[20].fields["file_records"] == [
        {
            "reference_type": 6,
            "file_number": 4,
            "record_number": 1,
            "record_length": 1,  # what pymodbus puts on the wire for record_length=2
            "values": [1, 2],
        }
    ]
    assert by_fc[24].fields["values"] == [440, 4]
    # the traced response PDU carries the request's address and quantity too
    resp = next(p for p in h.by_direction("response") if p["function_code"] == 3)
    assert (resp["address"], resp["quantity"]) == (40, 3)


def test_diagnostics_sub_functions_are_named() -> None:
    client, server = streams()
    h = feed(zip(client, server, strict=True))
    diag = [e.fields for e in h.events if e.fields["function_code"] == 8]
    assert [(d["sub_function"], d["sub_function_name"]) for d in diag] == [
        (0, "return_query_data"),
        (1, "restart_communications_option"),
        (4, "force_listen_only_mode"),
    ]


def test_device_identity_from_fc43_and_fc17() -> None:
    client, server = streams()
    h = feed(zip(client, server, strict=True))
    by_fc = {e.fields["function_code"]: e for e in h.events}
    assert by_fc[43].fields["mei_type"] == 14
    assert by_fc[43].identity == {
        "vendor": "Schneider Electric",
        "product_code": "BMEP582040",
        "revision": "v3.20",
    }
    assert by_fc[17].identity == {"server_id": "M580 BMEP58", "run_indicator": "on"}


def test_exception_response_with_another_function_code_still_pairs() -> None:
    req = adu(regs.ReadHoldingRegistersRequest(address=9000, count=4), 7)
    h = feed([(req, exception(4, 2, 7))])  # a server answering FC 3 with a FC 4 exception
    (event,) = h.events
    assert event.outcome == "failure"
    assert event.fields["function_code"] == 3
    assert event.fields["response_function_code"] == 4
    assert event.fields["exception_code"] == 2
    assert event.fields["exception"] == "illegal_data_address"
    assert event.fields["address"] == 9000
    (resp,) = h.by_direction("response")
    assert resp["function_code"] == 4 and resp["exception_code"] == 2


def test_several_adus_in_one_segment_and_one_adu_split_over_many() -> None:
    client, server = streams()
    h = Harness()
    h.send(True, b"".join(client))  # every request in one segment
    blob = b"".join(server)
    for i in range(0, len(blob), 3):  # responses trickle in three bytes at a time
        h.send(False, blob[i : i + 3])
    h.close()
    assert len(h.events) == len(client)
    assert all(e.outcome == "success" for e in h.events)
    assert {p["frame"] for p in h.by_direction("request")} == {1}


def test_unsolicited_response_and_unanswered_request() -> None:
    read = regs.ReadHoldingRegistersRequest(address=0, count=1)
    h = Harness()
    h.send(False, adu(regs.ReadHoldingRegistersResponse(registers=[5]), 99))
    h.send(True, adu(read, 1))
    h.close()
    unsolicited, unanswered = h.events
    assert unsolicited.envelope.direction is Direction.RESPONSE
    assert unsolicited.anomalies == ("modbus.unsolicited_response",)
    assert unanswered.envelope.direction is Direction.REQUEST
    assert unanswered.outcome == "unknown" and not unanswered.anomalies


def test_open_transactions_are_capped_and_flooding_is_flagged() -> None:
    h = Harness(max_open_transactions=10)
    for tid in range(25):
        h.send(True, adu(regs.ReadHoldingRegistersRequest(address=tid, count=1), tid))
    assert len(h.session.pending) == 10
    flooded = [e for e in h.events if "modbus.flooded" in e.anomalies]
    assert [e.fields["transaction_id"] for e in flooded] == list(range(15))


def test_requests_time_out() -> None:
    h = Harness(transaction_timeout_ns=1_000_000_000)
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=1, count=1), 1), ts=0)
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=2, count=1), 2), ts=2_000_000_000)
    assert [e.fields["transaction_id"] for e in h.events] == [1]
    assert list(h.session.pending) == [2 << 8 | 1]


@pytest.mark.parametrize(
    ("adu_bytes", "anomaly"),
    [
        (mbap(1, 6, 1, b"\x03\x00\x00\x00\x01", pid=1), "modbus.invalid_protocol_id"),
        (mbap(1, 8, 1, b"\x03\x00\x00\x00\x01\x00\x00"), "modbus.invalid_length"),
        (mbap(1, 300, 1, b"\x10" + bytes(298)), "modbus.invalid_length"),
        (mbap(1, 3, 1, b"\x2f\x00"), "modbus.invalid_function_code"),
        (mbap(1, 2, 1, b"\x00"), "modbus.invalid_function_code"),
        (mbap(1, 11, 1, b"\x10\x00\x00\x00\x02\x02\x00\x01\x00\x02"), "modbus.value_mismatch"),
        (mbap(1, 6, 1, b"\x05\x00\x01\x12\x34"), "modbus.invalid_value"),
        (mbap(1, 6, 1, b"\x03\x00\x00\x00\x00"), "modbus.invalid_quantity"),
        (mbap(1, 0, 1, b"")[:-1], "modbus.invalid_length"),
    ],
    ids=[
        "protocol-id",
        "length-vs-pdu",
        "adu-over-260",
        "unassigned-fc",
        "fc-zero",
        "byte-count",
        "coil-value",
        "quantity-zero",
        "zero-length",
    ],
)
def test_malformed_requests_carry_stable_anomaly_ids(adu_bytes: bytes, anomaly: str) -> None:
    h = Harness()
    h.send(True, adu_bytes)
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=0, count=1), 2))  # still in step
    h.close()
    assert anomaly in h.events[0].anomalies
    assert h.events[-1].fields["transaction_id"] == 2 and not h.events[-1].anomalies


def test_response_anomalies() -> None:
    h = Harness()
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=0, count=3), 1))
    h.send(False, mbap(1, 5, 1, b"\x03\x02\x00\x01"))  # 1 register for a request of 3
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=0, count=1), 2))
    h.send(False, mbap(2, 3, 1, b"\x83\x0c"))  # exception code 12 does not exist
    first, second = h.events
    assert first.anomalies == ("modbus.value_mismatch",)
    assert first.fields["values"] == [1]
    assert second.anomalies == ("modbus.invalid_exception_code",)


def test_non_modbus_payload_is_one_event_and_the_stream_recovers() -> None:
    h = Harness()
    junk = b"GET / HTTP/1.1\r\nHost: plc\r\nUser-Agent: curl/8.0\r\n\r\n"
    h.send(True, junk)
    h.send(True, adu(regs.ReadHoldingRegistersRequest(address=0, count=1), 5))
    h.send(False, adu(regs.ReadHoldingRegistersResponse(registers=[7]), 5))
    h.close()
    junk_event, read = h.events
    assert junk_event.action == "modbus-non-modbus-payload"
    assert junk_event.anomalies == ("modbus.non_modbus_payload",)
    assert junk_event.fields["skipped_bytes"] == len(junk)
    assert read.fields["values"] == [7] and read.outcome == "success"


def test_resynchronises_after_a_gap_and_mid_stream() -> None:
    client, server = streams()
    h = Harness()
    h.send(True, client[0])
    h.skip(True, 5)  # lose the first 5 bytes of the next request
    h.send(True, client[1][5:] + client[2])
    h.skip(False, 3)  # the response stream loses the start of its first ADU
    h.send(False, server[0][3:])
    h.send(False, server[1] + server[2])
    h.close()
    done = {e.fields["transaction_id"]: e.envelope.direction for e in h.events}
    assert done[3] is Direction.TRANSACTION  # the first whole ADUs after the losses pair up
    assert done[2] is Direction.RESPONSE  # its request was cut: the response stands alone
    assert not any("modbus.non_modbus_payload" in e.anomalies for e in h.events)


def test_probe_accepts_whole_adus_only() -> None:
    client, server = streams()
    assert probe(client[0], True)
    assert probe(client[0] + client[1], True)
    assert probe(server[0], False)
    assert probe(exception(3, 2, 1), False)
    assert not probe(client[0][:-1], True)
    assert not probe(b"GET / HTTP/1.1\r\n\r\n", True)
    assert not probe(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", True)  # TLS hello
    assert not probe(exception(3, 2, 1), True)  # requests never carry the exception bit
    assert SPEC.ports == (502,)


def test_write_single_coil_off() -> None:
    h = feed(
        [
            (
                adu(bits.WriteSingleCoilRequest(address=9, bits=[False]), 1),
                adu(bits.WriteSingleCoilResponse(address=9, bits=[False]), 1),
            )
        ]
    )
    assert h.events[0].fields["values"] == [False]


def test_connection_ending_inside_an_adu_is_reported() -> None:
    h = Harness()
    h.send(True, mbap(9, 16, 1, b"\x03\x00\x00\x00\x01"))  # says 16 bytes follow, sends 6
    h.close()
    (event,) = h.events
    assert event.action == "modbus-truncated-adu"
    assert event.anomalies == ("modbus.invalid_length",)
    assert event.fields["transaction_id"] == 9 and event.fields["received_bytes"] == 12


@pytest.mark.parametrize("name", ["modbus_normal.pcap", "modbus_attacks.pcap"])
def test_short_read_path_records_what_the_general_path_records(name: str, tmp_path: Path) -> None:
    """Reads take a short path unless PDUs are traced: both must give identical events."""
    path = LAB_PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} missing")

    def events(tracer: Tracer | None, out: Path) -> list[tuple[Any, ...]]:
        seen: list[tuple[Any, ...]] = []

        def hook(event: Event) -> list[Alert]:
            env = event.envelope
            seen.append(
                (env.ts, env.direction, event.action, event.fields, event.anomalies)
                + (event.outcome, event.duration_ns, event.identity)
            )
            return []

        pipeline = Pipeline(Config(), out, tracer=tracer)
        pipeline.event_hooks.append(hook)
        with open_capture(path) as reader:
            pipeline.run(reader)
        pipeline.finish()
        return seen

    short = events(None, tmp_path / "a")
    general = events(lambda *args: None, tmp_path / "b")
    assert len(short) > 100
    assert short == general
