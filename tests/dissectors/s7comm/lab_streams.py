"""The TCP payloads of the lab's S7 captures, per flow and direction, in capture order, read with
otsentry's own capture reader and decoder (no reassembly: the lab has no loss or reordering)."""

from __future__ import annotations

from pathlib import Path

from otsentry.capture import open_capture
from otsentry.decode import Decoder
from tests.conftest import LAB_PCAPS

S7_NORMAL = LAB_PCAPS / "s7comm_normal.pcap"

#: one TCP connection: the payloads in capture order, each with its direction (True: client)
Segments = list[tuple[bool, bytes]]


def flows_to_port(path: Path, port: int = 102) -> list[Segments]:
    """Payload-bearing segments of every connection to ``port``, one list per connection."""
    decoder = Decoder()
    flows: dict[tuple[bytes, int, bytes], Segments] = {}
    with open_capture(path) as reader:
        for ts, linktype, data in reader:
            pkt = decoder.decode(linktype, data, ts)
            if pkt is None:
                continue
            (src, sport, dst, dport, _vlan, _proto), _flags, _seq, payload, _mac = pkt
            if not payload or port not in (sport, dport):
                continue
            to_server = dport == port
            key = (src, sport, dst) if to_server else (dst, dport, src)
            flows.setdefault(key, []).append((to_server, bytes(payload)))
    return list(flows.values())
