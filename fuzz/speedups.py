"""Fuzz the compiled parts (otsentry/_speedups.c) against the Python code they stand in for.

The input's first byte picks a link type and a number of workers, the second the byte order and
timestamp resolution; the rest is both a frame and a window of pcap records (and, cut where the
second byte says, the two halves of a uuid5 name). For each input the share test, the first
decode case, the record walk and the uuid must give exactly what the pure-Python code gives.
Memory errors in the C code show up as crashes; build the extension with AddressSanitizer to
catch the silent ones (see fuzz/README.md).

Run: ``python fuzz/speedups.py -atheris_runs=1000000``.
"""

from __future__ import annotations

import hashlib
import struct
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    import otsentry.decode as decode_module
    from otsentry.accel import SPEEDUPS
    from otsentry.capture.pcap import MAX_CAPLEN
    from otsentry.capture.split import host_pair_hash, share_of
    from otsentry.decode import Decoder

if SPEEDUPS is None:
    sys.exit("otsentry._speedups is not built (or OTSENTRY_PURE_PYTHON is set)")
FAST = SPEEDUPS
LINKTYPES = (0, 1, 101, 108, 113, 228, 229, 276)


def python_scan(
    buf: bytes, order: str, frac_ns: int, linktype: int, worker: int, workers: int
) -> tuple[list[tuple[int, int, bytes]], list[int], int, int]:
    """The record walk as the pure-Python reader does it, with the share test of split.py."""
    record = struct.Struct(order + "III4x")
    frames: list[tuple[int, int, bytes]] = []
    numbers: list[int] = []
    pos = number = 0
    while pos <= len(buf) - 16:
        sec, frac, caplen = record.unpack_from(buf, pos)
        start = pos + 16
        if start + caplen > len(buf) or caplen > MAX_CAPLEN:
            break
        number += 1
        data = buf[start : start + caplen]
        if workers == 1 or share_of(host_pair_hash(linktype, data), workers) == worker:
            frames.append((sec * 1_000_000_000 + frac * frac_ns, linktype, data))
            numbers.append(number)
        pos = start + caplen
    return frames, numbers, pos, number


def decode_both(data: bytes) -> tuple[object, object]:
    """Decoder.decode of an Ethernet frame with the compiled first case and without."""
    compiled = Decoder().decode(1, data, 0)
    saved = decode_module.FAST_TCP4
    decode_module.FAST_TCP4 = None
    try:
        python = Decoder().decode(1, data, 0)
    finally:
        decode_module.FAST_TCP4 = saved
    return compiled, python


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    workers = 1 + (data[0] >> 4) % 5
    order = ">" if data[1] & 1 else "<"
    frac_ns = 1 if data[1] & 2 else 1000
    body = data[2:]

    got = FAST.share(linktype, body, workers)
    want = share_of(host_pair_hash(linktype, body), workers)
    if got != want:
        raise AssertionError(f"share {got} != {want}")

    compiled, python = decode_both(body)
    if compiled != python:
        raise AssertionError(f"decode {compiled!r} != {python!r}")

    worker = data[1] >> 2 & 0x3F
    worker %= workers
    frames: list[tuple[int, int, bytes]] = []
    numbers: list[int] = []
    pos, number = FAST.scan(
        body, 0, linktype, order == ">", frac_ns, MAX_CAPLEN, worker, workers, 0, frames, numbers
    )
    want_scan = python_scan(body, order, frac_ns, linktype, worker, workers)
    if (frames, numbers, pos, number) != want_scan:
        raise AssertionError("scan differs from the Python record walk")

    cut = data[1] % (len(body) + 1)
    h = hashlib.sha1(body).hexdigest()
    want_id = f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{(int(h[16], 16) & 3) | 8:x}{h[17:20]}-{h[20:32]}"
    if FAST.uuid5(body[:cut], body[cut:]).decode() != want_id:
        raise AssertionError("uuid5 differs from hashlib's SHA-1")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
