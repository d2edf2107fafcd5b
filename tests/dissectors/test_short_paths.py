"""The Modbus and S7 sessions' short paths (reads, exception responses, read var job / ack_data)
against their general paths, on random streams: a traced session always takes the general path,
so the events of a traced and an untraced session must be the same, field order included."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

import pytest

from otsentry.dissectors.modbus import ModbusSession
from otsentry.dissectors.s7comm import S7Session
from otsentry.model import Event
from tests.dissectors.harness import FlowHarness


class Untraced(FlowHarness):
    """A harness whose session takes the short paths (no tracer)."""

    @property
    def tracer(self) -> Any:
        return None


def _key(event: Event) -> tuple[Any, ...]:
    env = event.envelope
    return (
        env.ts,
        env.direction,
        env.protocol,
        event.action,
        list(event.fields.items()),  # the order is what the NDJSON line shows
        event.anomalies,
        event.outcome,
        event.duration_ns,
        event.identity,
    )


def _both(
    factory: Any, stream: list[tuple[bool, bytes, int]], **kw: Any
) -> tuple[list[Any], list[Any]]:
    out = []
    for cls in (Untraced, FlowHarness):
        h = cls(factory=factory, **kw)
        for from_client, payload, ts in stream:
            h.send(from_client, payload, ts)
        h.close(stream[-1][2] if stream else 0)
        out.append(([_key(e) for e in h.events], h.pdu_count))
    return out[0], out[1]


# -- Modbus ---------------------------------------------------------------------------------------
def _adu(tid: int, unit: int, pdu: bytes, pid: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu


def _modbus_stream(rng: random.Random) -> list[tuple[bool, bytes, int]]:
    stream: list[tuple[bool, bytes, int]] = []
    ts = 0
    asked: list[tuple[int, int, int, int]] = []  # tid, unit, fc, quantity
    for _ in range(rng.randrange(1, 120)):
        ts += rng.choice((1_000, 1_000_000, 40_000_000_000))  # the last one expires requests
        tid, unit = rng.randrange(4), rng.choice((1, 1, 2, 255))
        if rng.random() < 0.5 or not asked:
            fc = rng.choice((1, 2, 3, 4, 1, 3, 5, 6, 17, 43, 20, 90, 0x41, 99, 0x83))
            quantity = rng.choice((0, 1, 7, 8, 9, 16, 17, 125, 126, 2000, 2001))
            body = struct.pack(">HH", rng.randrange(65536), quantity)
            if rng.random() < 0.1:
                body += b"\x00"  # one byte too many
            if fc == 43:
                body = b"\x0e\x01\x00"
            stream.append((True, _adu(tid, unit, bytes((fc,)) + body), ts))
            asked.append((tid, unit, fc, quantity))
            continue
        tid, unit, fc, quantity = rng.choice(asked)
        if rng.random() < 0.1:
            tid ^= 1  # no request waits with this id
        roll = rng.random()
        if roll < 0.3:
            code = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0))
            pdu = bytes((fc | 0x80, code))
            if rng.random() < 0.1:
                pdu += b"\x00"
            if rng.random() < 0.1:
                pdu = bytes(((fc ^ 1) | 0x80, code))  # the exception of another function
        elif fc in (1, 2) or (roll < 0.4 and fc < 5):
            count = (quantity + 7) >> 3
            if rng.random() < 0.2:
                count = rng.randrange(0, 6)
            pdu = bytes((fc, count & 0xFF)) + bytes(rng.randrange(256) for _ in range(count))
        elif fc in (3, 4):
            count = 2 * quantity if rng.random() < 0.8 else rng.randrange(0, 9)
            count = min(count, 250)
            pdu = bytes((fc, count)) + bytes(rng.randrange(256) for _ in range(count))
        else:
            pdu = bytes((fc,)) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 6)))
        stream.append((False, _adu(tid, unit, pdu), ts))
    return stream


# -- S7comm ---------------------------------------------------------------------------------------
def _tpkt(s7: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, 7 + len(s7)) + b"\x02\xf0\x80" + s7


_CR = bytes.fromhex("0300001611e00000000100c0010ac1020100c2020102")


def _item(rng: random.Random) -> bytes:
    size = rng.choice((0x02, 0x04, 0x01))
    return struct.pack(
        ">BBBBHHB", 0x12, 0x0A, 0x10, size, rng.choice((1, 2, 3)), rng.choice((1, 2)), 0x84
    ) + bytes((0, 0, rng.choice((0, 8, 16))))


def _s7_stream(rng: random.Random) -> list[tuple[bool, bytes, int]]:
    stream: list[tuple[bool, bytes, int]] = []
    ts = 0
    if rng.random() < 0.5:
        stream.append((True, _CR, ts))
    params = [
        bytes((0x04, n)) + b"".join(_item(rng) for _ in range(n))
        for n in rng.choice(((1,), (1, 2)))
    ]
    asked: list[int] = []
    for _ in range(rng.randrange(1, 80)):
        ts += rng.choice((1_000, 1_000_000, 40_000_000_000))
        ref = rng.randrange(3)
        if rng.random() < 0.5 or not asked:
            param = rng.choice(params)
            if rng.random() < 0.1:
                param = param[:-1]  # an item cut short
            s7 = struct.pack(">BBHHHH", 0x32, 1, 0, ref, len(param), 0) + param
            stream.append((True, _tpkt(s7), ts))
            asked.append(ref)
            continue
        ref = rng.choice(asked)
        count = rng.choice((1, 1, 2))
        items = b""
        for i in range(count):
            code = rng.choice((0xFF, 0xFF, 0x0A, 0x05))
            size = rng.choice((0x04, 0x03, 0x09))
            nbytes = rng.choice((1, 2, 4))
            length = nbytes * 8 if size in (0x03, 0x04) else nbytes
            value = bytes(rng.randrange(256) for _ in range(nbytes))
            if nbytes & 1 and i < count - 1:
                value += b"\x00"
            items += struct.pack(">BBH", code, size, length) + value
        if rng.random() < 0.1:
            items = items[:-1]
        error_class = 0 if rng.random() < 0.9 else 0x85
        param = bytes((0x04 if rng.random() < 0.95 else 0x05, count))
        s7 = struct.pack(">BBHHHHBB", 0x32, 3, 0, ref, 2, len(items), error_class, 0) + param
        stream.append((False, _tpkt(s7 + items), ts))
    return stream


# -- both -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(300))
@pytest.mark.parametrize(
    ("session", "make_stream"),
    [(ModbusSession, _modbus_stream), (S7Session, _s7_stream)],
    ids=["modbus", "s7comm"],
)
def test_short_paths_record_what_the_general_path_records(
    session: Any, make_stream: Callable[[random.Random], Any], seed: int
) -> None:
    rng = random.Random(seed)
    stream = make_stream(rng)
    short, general = _both(session, stream, max_open_transactions=rng.choice((2, 500)))
    assert short == general
