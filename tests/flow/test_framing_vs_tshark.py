"""Reassembly end to end: ADUs framed from our reassembled streams equal tshark's Modbus PDUs.

The test framer (tests/dissect/framers.py) only frames MBAP headers, so these captures are the
ones whose streams it can resynchronise unambiguously; the real Modbus dissector is checked on
every capture by its own conformance tests.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.dissect.registry import DissectorRegistry
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS, SHARED_PCAPS
from tests.dissect.framers import mbap_spec

CAPTURES = [
    "iti-ics-security-tools/pcaps/ModbusTCP/Modbus/modbus_test.pcap",
    "iti-ics-security-tools/pcaps/ModbusTCP/Modbus/modbus_test_2.pcap",
    "iti-ics-security-tools/pcaps/ModbusTCP/modbus_test_data_part1.pcap",
    "iti-ics-security-tools/pcaps/ModbusTCP/modbus_test_data_part2.pcap",
    "ndpi/tests/cfgs/default/pcap/modbus.pcap",
    "suricata-verify/tests/modbus/modbus.pcap",
    "suricata-verify/pr3260/tests/modbus-keywords-write/input.pcap",
    "zeek/testing/btest/Traces/modbus/modbus-and-non-modbus-p502.pcap",
    "zeek/testing/btest/Traces/modbus/modbusSmall.pcap",
]


def tshark_modbus_pdus(tshark: str, path: Path) -> int:
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(path),
            "-Y",
            "mbtcp",
            "-T",
            "fields",
            "-e",
            "mbtcp.trans_id",
            "-E",
            "occurrence=a",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(len(line.split(",")) for line in out.splitlines() if line)


@pytest.mark.parametrize("rel", ["lab:modbus_normal.pcap", *CAPTURES])
def test_adu_count_equals_tshark(rel: str, tshark: str, tmp_path: Path) -> None:
    path = LAB_PCAPS / rel[4:] if rel.startswith("lab:") else SHARED_PCAPS / rel
    if not path.is_file():
        pytest.skip("../shared/pcaps is absent")
    log: list[tuple[bool, int, bytes]] = []
    pipeline = Pipeline(Config(), tmp_path, registry=DissectorRegistry([mbap_spec(log)]))
    reader = open_capture(path)
    pipeline.run(reader)
    reader.close()
    stats = pipeline.finish()
    assert len(log) == tshark_modbus_pdus(tshark, path)
    assert stats["pdus"]["mbap"] == len(log)
    assert stats["events"]["mbap"] == len(log)
    assert stats["tcp"]["bytes_buffered"] == 0


def test_port_probe_and_decode_as(tmp_path: Path) -> None:
    """A dissector with no port of its own: the probe finds it, or ``--decode-as 502=mbap``."""
    from dataclasses import replace

    from otsentry.config import DecodeAs

    path = LAB_PCAPS / "modbus_normal.pcap"

    def run(name: str, probe: bool, decode_as: list[DecodeAs]) -> int:
        log: list[tuple[bool, int, bytes]] = []
        spec = mbap_spec(log, ports=())
        if not probe:
            spec = replace(spec, probe=None)
        pipeline = Pipeline(
            Config(), tmp_path / name, registry=DissectorRegistry([spec]), decode_as=decode_as
        )
        with open_capture(path) as reader:
            pipeline.run(reader)
        assert pipeline.finish()["pdus"]["mbap"] == len(log)
        return len(log)

    assert run("none", probe=False, decode_as=[]) == 0
    assert run("forced", probe=False, decode_as=[DecodeAs(502, "mbap")]) == 934
    assert run("probed", probe=True, decode_as=[]) == 934
