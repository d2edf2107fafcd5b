"""Fuzz the compiled flow-table path (otsentry/_flowpath.c) against ``FlowTable.packet``.

The input is a script of TCP packets between three clients and one server: handshakes, data in
order, retransmissions, holes, FIN and RST, pure ACKs, time jumps past the idle sweep, and
payloads a length-prefixed test dissector consumes, waits on, stalls on or raises on. The script
goes through one flow table by ``fast_packet()`` and through another by ``packet``; what the
dissectors were given, the flows' counters and ends and the reassembly counters must be the
same (``tests/flow/test_flowpath.py`` holds the script player).

Run from the repository root: ``python fuzz/flowpath.py -atheris_runs=1000000``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the tests' script player

with atheris.instrument_imports():
    from otsentry.accel import SPEEDUPS
    from tests.flow.test_flowpath import KINDS, run_script

if SPEEDUPS is None:
    sys.exit("otsentry._speedups is not built (or OTSENTRY_PURE_PYTHON is set)")
STEPS = (1, 1, 1, 7_000_000_000, 400_000_000_000)


def test_one_input(data: bytes) -> None:
    """Play one script both ways; raise when they differ."""
    fdp = atheris.FuzzedDataProvider(data)
    script = []
    while fdp.remaining_bytes() and len(script) < 200:
        script.append(
            (
                fdp.ConsumeIntInRange(1, 3),
                fdp.ConsumeBool(),
                KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)],
                fdp.ConsumeIntInRange(-8, 64),
                fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 40)) or b"\x00",
                STEPS[fdp.ConsumeIntInRange(0, len(STEPS) - 1)],
            )
        )
    fast = run_script(script, True)
    slow = run_script(script, False)
    fast.pop("fast")
    slow.pop("fast")
    if fast != slow:
        raise AssertionError(f"compiled and Python flow paths differ on {script!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
