"""Fuzz the capture readers: pcap, pcapng and gzip, chosen by magic through ``open_capture``.

Every input is written to a file in ``/dev/shm`` (the readers read paths) and read to the end.
The only exception allowed out is ``CaptureError``; every frame must lie inside the input's
(uncompressed) bytes.

Run: ``python fuzz/pcap_readers.py fuzz/corpus/pcap_readers -atheris_runs=1000000``.
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from otsentry.capture.base import CaptureError
    from otsentry.capture.open import open_capture

_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
PATH = os.path.join(_DIR, f"otsentry-fuzz-{os.getpid()}.cap")
#: gzip inputs may expand; stop reading after this many frames
MAX_FRAMES = 100_000


def test_one_input(data: bytes) -> None:
    """Read one file to its end or to a CaptureError."""
    with open(PATH, "wb") as fh:
        fh.write(data)
    try:
        with open_capture(PATH) as reader:
            for i, (_ts, linktype, frame) in enumerate(reader):
                if not isinstance(linktype, int) or not isinstance(frame, bytes | memoryview):
                    raise AssertionError(f"bad frame tuple {linktype!r} {type(frame)}")
                if data[:2] != b"\x1f\x8b" and len(frame) > len(data):
                    raise AssertionError(f"a {len(frame)}-byte frame from {len(data)} bytes")
                if i >= MAX_FRAMES:
                    break
    except CaptureError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        if os.path.exists(PATH):
            os.unlink(PATH)
