"""Fuzz the modbus dissector: any byte stream, either direction, with gaps; nothing may escape.

Run: `python fuzz/modbus.py fuzz/corpus/modbus -atheris_runs=1000000` (see fuzz/README.md).
"""

from __future__ import annotations

import importlib
import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from driver import run

    SPEC = importlib.import_module("otsentry.dissectors.modbus").SPEC


def test_one_input(data: bytes) -> None:
    """One conversation: the driver raises on an escaping exception or a contract breach."""
    run(SPEC.factory, data)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
