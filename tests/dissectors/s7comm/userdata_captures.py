"""S7comm userdata PDUs of a capture, framed by otsentry, and what tshark 4.0 says about them.

``userdata_pdus(path)`` replays a capture through otsentry's own pipeline (capture reader,
decoder, flow table, TCP reassembly) with a test-only dissector on TCP port 102 that frames
TPKT, joins COTP DT TPDUs up to the one with the EOT bit (as Wireshark's COTP reassembly does)
and keeps every S7comm (0x32) PDU with ROSCTR 7, numbered by the frame its last byte arrived in.
It parses the S7 header just enough to hand ``decode_userdata`` its offsets.

``tshark_userdata(tshark, path)`` runs tshark once with ``-T pdml`` on ``s7comm.header.rosctr ==
7`` and returns, per frame, one dict per S7comm tree: field name → the ``show`` strings in tree
order (PDML keeps several S7 PDUs of one frame apart, and keeps SZL records in order), plus
``"szl_records"``: one dict per "SZL data tree" of that PDU.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from struct import Struct
from typing import Any

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.dissect.base import Buffer, DissectorSpec, FlowContext
from otsentry.dissect.registry import DissectorRegistry
from otsentry.pipeline import Pipeline

TPKT = Struct(">BBH")
S7_HEADER = Struct(">BBHHHH")  # protocol id, rosctr, redundancy id, pdu reference, param, data
COTP_DT = 0xF0
S7COMM_ID = 0x32


@dataclass(frozen=True)
class UserdataPdu:
    """One S7comm userdata PDU: where it is, and the offsets ``decode_userdata`` takes."""

    frame: int
    flow: int  # connection number (one reassembly state per connection)
    from_client: bool
    pdu: bytes  # the whole S7 PDU, from the 0x32
    pdu_reference: int
    param_off: int
    param_len: int
    data_off: int
    data_len: int


class _TpktFramer:
    """TPKT → COTP DT (joined up to EOT) → S7 PDUs; logs (frame, flow, from_client, bytes)."""

    def __init__(self, ctx: FlowContext, log: list[tuple[int, int, bool, bytes]], flow: int):
        self.ctx = ctx
        self.log = log
        self.flow = flow
        self.pending = {True: bytearray(), False: bytearray()}

    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        avail = len(data) - start
        if avail < 4:
            return -(4 - avail)
        version, _reserved, length = (int(v) for v in TPKT.unpack_from(data, start))
        if version != 3 or length < 7:  # not a TPKT header: skip to the next plausible one
            pos = data.find(b"\x03\x00", start + 1)
            skip: int = (pos if pos >= 0 else len(data) - 1) - start
            return skip or 1
        if avail < length:
            return -(length - avail)
        self._tpdu(data[start + 4 : start + length], from_client)
        return length

    def _tpdu(self, tpdu: Buffer, from_client: bool) -> None:
        li = tpdu[0]
        if tpdu[1] & 0xF0 != COTP_DT or li < 2 or len(tpdu) < 1 + li:
            return
        pending = self.pending[from_client]
        pending += tpdu[1 + li :]
        if tpdu[2] & 0x80:
            if pending[:1] == bytes([S7COMM_ID]):
                self.log.append((self.ctx.frame, self.flow, from_client, bytes(pending)))
            pending.clear()

    def gap(self, from_client: bool, ts: int) -> None:
        self.pending[from_client].clear()

    def close(self, ts: int) -> None:
        pass


def _split(frame: int, flow: int, from_client: bool, pdu: bytes) -> UserdataPdu | None:
    if len(pdu) < 10:
        return None
    _pid, rosctr, _red, ref, plen, _dlen = S7_HEADER.unpack_from(pdu)
    if rosctr != 7:
        return None
    param_off = 10
    data_off = min(param_off + plen, len(pdu))
    return UserdataPdu(
        frame,
        flow,
        from_client,
        pdu,
        ref,
        param_off,
        data_off - param_off,
        data_off,
        len(pdu) - data_off,
    )


@functools.lru_cache(maxsize=32)
def userdata_pdus(path: Path) -> tuple[UserdataPdu, ...]:
    """Every S7comm userdata PDU of a capture, in the order otsentry frames them."""
    log: list[tuple[int, int, bool, bytes]] = []
    flows = [0]

    def factory(ctx: FlowContext) -> _TpktFramer:
        flows[0] += 1
        return _TpktFramer(ctx, log, flows[0])

    spec = DissectorSpec(name="s7-userdata-test", ports=(102,), factory=factory)
    with tempfile.TemporaryDirectory() as out:
        pipeline = Pipeline(Config(), Path(out), registry=DissectorRegistry([spec]))
        with open_capture(path) as reader:
            pipeline.run(reader)
        pipeline.finish()
    pdus = (_split(*entry) for entry in log)
    return tuple(p for p in pdus if p is not None)


# -- tshark ------------------------------------------------------------------------------------------
#: one S7comm tree: field name → show strings in tree order, and the SZL records
WsPdu = dict[str, Any]


def _szl_record(tree: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for field in tree.iter("field"):
        name = field.get("name", "")
        if name.startswith(("s7comm.szl.", "s7comm.cpu.diag_msg", "s7comm.data.ts")):
            out.setdefault(name, field.get("show", ""))
    return out


def _s7comm_tree(proto: ET.Element) -> WsPdu:
    fields: defaultdict[str, list[str]] = defaultdict(list)
    records: list[dict[str, str]] = []
    for field in proto.iter("field"):
        name = field.get("name", "")
        if name == "s7comm.data.userdata.szl_data_tree":
            records.append(_szl_record(field))
        elif name:
            fields[name].append(field.get("show", ""))
    pdu: WsPdu = dict(fields)
    pdu["szl_records"] = records
    return pdu


@functools.lru_cache(maxsize=32)
def tshark_userdata(tshark: str, path: Path) -> dict[int, list[WsPdu]]:
    """Per frame, the S7comm userdata trees tshark dissects there (with an empty profile)."""
    with tempfile.TemporaryDirectory() as confdir:
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": confdir}
        out = subprocess.run(
            [tshark, "-n", "-r", str(path), "-Y", "s7comm.header.rosctr == 7", "-T", "pdml"],
            capture_output=True,
            check=True,
            env=env,
        ).stdout
    frames: dict[int, list[WsPdu]] = {}
    root = ET.fromstring(out)
    for packet in root.iter("packet"):
        number = 0
        trees: list[WsPdu] = []
        for proto in packet.findall("proto"):
            if proto.get("name") == "frame":
                for field in proto.iter("field"):
                    if field.get("name") == "frame.number":
                        number = int(field.get("show", "0"))
                        break
            elif proto.get("name") == "s7comm":
                trees.append(_s7comm_tree(proto))
        frames[number] = [t for t in trees if t.get("s7comm.header.rosctr") == ["7"]]
    return frames
