"""The ``hostpair`` fanout mode: every packet between two hosts — all their flows, both
directions, IPv4 and IPv6 — reaches the same member of the group."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from otsentry.capture.live import LiveCapture, LiveOptions
from tests.capture.live_helpers import Netns, inside, namespaces_unavailable, raw_sender

pytestmark = pytest.mark.skipif(
    namespaces_unavailable() is not None, reason=str(namespaces_unavailable())
)

MAC = bytes.fromhex("001b1b000001") + bytes.fromhex("001b21000002")


def tcp4(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, src, dst)
    return (
        MAC
        + b"\x08\x00"
        + ip
        + struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x10, 1024, 0, 0)
    )


def tcp6(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    ip = struct.pack("!IHBB16s16s", 0x60000000, 20, 6, 64, src, dst)
    return (
        MAC
        + b"\x86\xdd"
        + ip
        + struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x10, 1024, 0, 0)
    )


@pytest.fixture
def net() -> Iterator[Netns]:
    ns = Netns()
    try:
        ns.link("hpp0", "hps0")
        yield ns
    finally:
        ns.close()


def test_hostpair_keeps_every_flow_between_two_hosts_together(net: Netns) -> None:
    group = 0x2000 + os.getpid() % 0x2000
    with inside(net.sensor):
        members = [
            LiveCapture(
                LiveOptions(
                    ("hps0",), fanout_group=group, fanout_mode="hostpair", block_timeout_ms=20
                )
            )
            for _ in range(2)
        ]
    hosts4 = [bytes([10, 10, 30, n]) for n in range(1, 13)]
    hosts6 = [bytes(15) + bytes([n]) for n in range(1, 5)]
    frames: list[tuple[tuple[bytes, bytes], bytes]] = []
    for i, client in enumerate(hosts4[:6]):
        server = hosts4[6 + i]
        for port in range(40000, 40010):  # ten connections per pair, both directions
            frames.append(((client, server), tcp4(client, server, port, 502)))
            frames.append(((client, server), tcp4(server, client, 502, port)))
    for client, server in ((hosts6[0], hosts6[1]), (hosts6[2], hosts6[3])):
        for port in range(50000, 50005):
            frames.append(((client, server), tcp6(client, server, port, 4840)))
            frames.append(((client, server), tcp6(server, client, 4840, port)))
    sender = raw_sender(net.peer, "hpp0")
    try:
        for _, frame in frames:
            sender.send(frame)
        seen: dict[bytes, set[int]] = {}
        for which, cap in enumerate(members):
            while got := cap.read(timeout=0.3):
                for _, _, data in got:
                    seen.setdefault(data, set()).add(which)
    finally:
        sender.close()
        for cap in members:
            cap.close()
    by_pair: dict[tuple[bytes, bytes], set[int]] = {}
    for pair, frame in frames:
        by_pair.setdefault(pair, set()).update(seen.get(frame, set()))
    assert all(len(found) == 1 for found in by_pair.values()), by_pair
    assert {next(iter(m)) for m in by_pair.values()} == {0, 1}  # both members had work
