"""Regression tests for what fuzzing found: each crashing input, committed as found, and a
minimal one showing the behaviour now expected."""

from __future__ import annotations

import base64

import pytest

from otsentry.flow.reassembly import ReassemblyStats, TcpStream

from .replay import failures, records, replay

#: atheris, fuzz/modbus.py: a request (FC 23) answered by an FC 21 response with no records
#: raised KeyError('file_records') while merging the two
MODBUS_FILE_RECORDS = (
    b"\x01\x00\x13\x00\x17\x00\x00\x00\r\x01\x17\x00\xff\xff\xff\xff\xff\xff\xff1\x00\x00\x00"
    b"\x00\x0b\x00\x17\x00\x00\x00\x05\x01\x15\x02\x02\x8a\x0100000001\x00\n\x00\x18\x00\x00"
    b"\x00\x04\x01\x18\x00\x00\xff\xff\xff\xff\xff\x00\x00\x14\x00\x18\x00\x00\x00\x0e\x01\x18"
    b"\x00\n\x00\x0e\x01\x18\x00\n\x00\x04\x00\x00\x01\x00\x00\x00\x00\x0c\x00\x19\x00\x00\x00"
    b"\x06\x01\x19\x00\x00\x00\x01\x00\x00\t\x00\x19\x00\x00\x00\x03\x01\x99\x01\x01\x00\x0c"
    b"\x00\x1a\x00\x01\x00"
)

#: atheris, fuzz/s7comm.py: a start-upload job whose block file name has a latin-1 superscript
#: two among its digits ("_0A0000\xb2A"): str.isdigit accepted it, int() raised ValueError
S7_SUPERSCRIPT_DIGIT = (
    b"\x01\x00#\x03\x00\x00#\x02\xf0\x802\x01\x00\x00\x00\x12\x00\x12\x00\x00\x1d\x00\x00\x00"
    b"\x00\x00\x00\x00\t_0A0000\xb2A"
)

CLEAN = {"dissector_errors": 0, "no_progress": 0}


def test_modbus_fuzz_input_dissects_cleanly() -> None:
    h = replay("modbus", list(records(MODBUS_FILE_RECORDS)))
    assert failures(h) == CLEAN
    assert "modbus-read-fifo-queue" in [e.action for e in h.events]


def test_modbus_file_record_response_to_a_request_without_records() -> None:
    """FC 20 request with no body (no records parsed) answered by a response with none."""
    request = bytes.fromhex("0001000000020114")
    response = bytes.fromhex("000100000003011400")
    h = replay("modbus", [(1, request), (0, response)])
    assert failures(h) == CLEAN
    [event] = h.events
    assert event.action == "modbus-read-file-record"
    assert event.fields["file_records"] == []
    assert event.fields["response_frame"] == 2
    assert "modbus.invalid_length" in event.anomalies


def test_s7comm_block_name_with_a_non_ascii_digit() -> None:
    h = replay("s7comm", list(records(S7_SUPERSCRIPT_DIGIT)))
    assert failures(h) == CLEAN
    [pdu] = h.pdus
    assert pdu["function_name"] == "start_upload"
    assert pdu["filename"] == "_0A0000\xb2A"
    assert pdu["block_type"] == "DB"
    assert "block_number" not in pdu and "block" not in pdu


class Recorder:
    """Collects what a stream delivers; consumes everything."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.gaps = 0

    def parse(self, data: bytes | bytearray, start: int, from_client: bool, ts: int) -> int:
        self.data += data[start:]
        return len(data) - start

    def gap(self, from_client: bool, ts: int) -> None:
        self.gaps += 1

    def close(self, ts: int) -> None:
        pass


def test_skipping_a_hole_leaves_no_waiting_segment_over_the_cap() -> None:
    """atheris, fuzz/reassembly.py: a 1-byte segment then a 25-byte one, both beyond holes, with
    a 16-byte cap and room for one waiting segment: one skip delivered the first and left 25
    bytes waiting over the cap. Holes are now skipped until the waiting bytes fit."""
    stats = ReassemblyStats()
    stream = TcpStream(True, stats, max_buffer=16, max_ooo=1, total_cap=1 << 20)
    rec = Recorder()
    stream.dissector = rec
    stream.syn(0)
    stream.segment(1403, b"\xff", 0)
    stream.segment(2043, bytes(range(25)), 0)
    assert stream.ooo_bytes == 0 and not stream.ooo
    assert stats.bytes_buffered == 0
    assert stats.gaps == 2 and rec.gaps == 2
    assert rec.data == b"\xff" + bytes(range(25))


def test_modbus_umas_response_too_short_for_its_header() -> None:
    """atheris, fuzz/modbus.py: a UMAS (FC 90) response with no pairing key or code, to a request
    that had them, raised KeyError('umas')."""
    request = bytes.fromhex("000100000004015a0002")
    response = bytes.fromhex("000100000002015a")
    h = replay("modbus", [(1, request), (0, response)])
    assert failures(h) == CLEAN
    [event] = h.events
    assert event.action == "modbus-umas"
    assert event.fields["sub_function_name"] == "read_id"
    assert event.fields["response_frame"] == 2
    assert "modbus.invalid_length" in event.anomalies


#: atheris, fuzz/opcua.py: after resynchronising, a secure chunk too short for its headers had
#: them unpacked past its end and past the buffer (struct.error); base64 of the input as found
OPCUA_SHORT_SECURE_CHUNK = base64.b64decode(
    "AABwU01HRnAAAAAHAAAADQAAAACyiYDggLjdSp+dbmTywHXi3E4mfdookLPh195E01mDzalLQjQlE0JlqC4hm7PZ"
    "Q7mg+4fsSJFcBPssM62IGM/eQYPlfGGRZQAAUE1TR0YQAAAABwAAzmUBAFBDTE9GUAAAAAcAAAANAAAAlFf3hvHy"
    "BTVqg/IwWJTppzTMSyuA6aByn9bVX0mgMg9WGkUtr5gnRSRrB/+Jb48xb8KKmhKdtBvSB8Yry+ipLZ85r4HL4pIs"
    "dn/oce8qZaVpypNZ6tLcV6IwAQBgTVNHRmAAAAAHAAAADQAAAPUU/jAQisjxjc4BhvYn/NR4/IMEhlkdC06ZgyJE"
    "+i4K1GyefqozRtCTqUtCNCUTQmWoLiGbs9lDuaD7h+xIkVwE+ywzrYgYz95Bg+V8YZFlAABQTVNHRhAAAAAHAADO"
    "ZQEAUENMT0ZQAAAABwAAAA0AAACUV/eG8fIFNWqD8jBYlOmnNMxLK4DpoHKf1tVfSaAyD1YaRS2vmCdFJGsH/4lv"
    "jzFvwoqaEp20G9IHxivL6Kktnzmvgcvikix2fzmTJcLjMaJcgMzoWHS7Ino2JGQ5unUUKeEQjA8j0RX/////AQIE"
    "3wIkDE2pu5MGgo9NPfagayzRDhk0f5rPDywGAo7RoKjvsgj2q0wAANBNU0dG0AAAAAcAAAANAAAA62a/p7DyVhht"
    "3C0IxqePcXtVvp3N/dOrUPh1nMGVSfQ8ZcVm8SnZmqYcsd3c5Lsmns0ie7rKyVemhqFu8XdEh2FQswQPg83oce8q"
    "ZaVpypNZ6tLcV6IwAQBgTVNHRmAAAAAHAAAADQAAAPUU/jAQisjxjc4BhvYn/NR4/IMEhlkdC06ZgyJE+i4K1Gye"
    "fqozRtCTqUtCNCUTQmWoLiGbs9lDuaD7h+xIkVwE+ywzrYgYz95Bg+V8YZFlAABQTVNHRhAAAAAHAADOZQEAUENM"
    "T0ZQAAAABwAAAA0AAACUV/eG8fIFNWqD8jBYlOmnNMxLK4DpoHKf1tVfSaAyD1YaRS2vmCdFJGsH/4lvjzFvwoqa"
    "Ep20G9IHxivL6Kktnzmvgcvikix2fzmTJcLjMaJcgMzoWHS7Ino2JGQ5unUUKeEQjA8j0RX/////AQIE3wIkDE2p"
    "u5MGgo9NPfagayzRDhk0f5rPDywGAo7RoKjvsgj2q0wAANBNU0dG0AAAAAcAAAANAAAA62a/p7DyVhht3C0IxqeP"
    "cXtVvp3N/dPUdi2grVJomdJpe36jvxuHJ3cADQAAAP////8N+rTofpzEWCeQWPWPr89pcXWXxkGQt5BHNHAwa48L"
    "z8SgTukqkBzIdSDR2s9tvWiYCQq5lZj6ZhXchpivEzE7mhfu6+wuT7OzfVcNs/oQ3QAA/4B1fzTa6GerUPh1nMGV"
    "SfQ8ZcVm8RyxKZrZpt0wB35qWowWuo1Sxpy+ytbxfxSJNvj///8="
)


def test_opcua_fuzz_input_dissects_cleanly() -> None:
    h = replay("opcua", list(records(OPCUA_SHORT_SECURE_CHUNK)))
    assert failures(h) == CLEAN
    assert [e.action for e in h.events][-1] == "opcua-malformed-chunk"


@pytest.mark.parametrize("size", range(8, 24))
def test_opcua_secure_chunk_shorter_than_its_headers(size: int) -> None:
    """A MSG chunk with room for neither channel id, token id and sequence header: truncated."""
    chunk = b"MSGF" + size.to_bytes(4, "little") + bytes(range(1, size - 7))
    h = replay("opcua", [(1, chunk)])
    assert failures(h) == CLEAN
    [event] = h.events
    assert event.action == "opcua-malformed-chunk"
    assert event.anomalies == ("opcua.truncated",)


def test_opcua_secure_headers_are_not_read_from_the_next_chunk() -> None:
    """A 16-byte MSG chunk followed by a HEL: the sequence header is missing, not the HEL's."""
    hello = (
        b"HELF" + (32).to_bytes(4, "little") + bytes(20) + (-1).to_bytes(4, "little", signed=True)
    )
    h = replay("opcua", [(1, b"MSGF" + (16).to_bytes(4, "little") + bytes(8) + hello)])
    assert failures(h) == CLEAN
    assert [p.get("sequence_number") for p in h.pdus if p.get("message_type") == "MSG"] == [None]


@pytest.mark.parametrize(
    ("mtype", "size"),
    [(t, n) for t in (b"HEL", b"ACK") for n in (8, 11, 12, 27)] + [(b"ERR", 8), (b"ERR", 11)],
)
def test_opcua_connection_chunk_shorter_than_its_fields(mtype: bytes, size: int) -> None:
    """HEL/ACK with less than their five UInt32 fields, ERR without its code: truncated."""
    chunk = mtype + b"F" + size.to_bytes(4, "little") + bytes(size - 8)
    h = replay("opcua", [(1 if mtype == b"HEL" else 0, chunk)])
    assert failures(h) == CLEAN
    [event] = h.events
    assert event.action == "opcua-malformed-chunk"
    assert event.anomalies == ("opcua.truncated",)
