"""Header decoding: crafted frames (scapy builds them) and a differential check against tshark."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from otsentry.capture import open_capture
from otsentry.capture.base import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from otsentry.decode import ARP_REPLY, ARP_REQUEST, Arp, Decoder, Packet, vlan_ids
from tests.conftest import lab_pcaps, shared_pcaps

A4 = socket.inet_pton(socket.AF_INET, "10.10.30.5")
B4 = socket.inet_pton(socket.AF_INET, "10.10.20.15")
A6 = socket.inet_pton(socket.AF_INET6, "fd00::5")
B6 = socket.inet_pton(socket.AF_INET6, "fd00::15")
B4_HMI = socket.inet_pton(socket.AF_INET, "10.10.30.10")

SEGMENT = (
    IP(src="10.10.30.5", dst="10.10.20.15")
    / TCP(sport=502, dport=49822, seq=1000, flags="PA")
    / Raw(b"\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x02")
)


# flat indices into what flat() returns
P_TRANSPORT, P_SRC, P_DST, P_SPORT, P_DPORT, P_VLAN, P_FLAGS, P_SEQ, P_PAYLOAD = range(9)


def flat(pkt: Packet) -> tuple:  # type: ignore[type-arg]
    """(transport, src, dst, sport, dport, vlan, flags, seq, payload)."""
    (src, sport, dst, dport, vlan, transport), flags, seq, payload, _macoff = pkt
    return (transport, src, dst, sport, dport, vlan, flags, seq, payload)


def decode(linktype: int, frame: bytes) -> tuple:  # type: ignore[type-arg]
    pkt = Decoder().decode(linktype, frame, 0)
    assert pkt is not None
    return flat(pkt)


def test_ethernet_ipv4_tcp() -> None:
    pkt = decode(LINKTYPE_ETHERNET, bytes(Ether() / SEGMENT))
    assert pkt[P_TRANSPORT] == 6
    assert (pkt[P_SRC], pkt[P_DST], pkt[P_SPORT], pkt[P_DPORT]) == (A4, B4, 502, 49822)
    assert pkt[P_SEQ] == 1000
    assert pkt[P_FLAGS] == 0x18
    assert pkt[P_PAYLOAD] == bytes(SEGMENT[Raw])
    assert pkt[P_VLAN] == 0


def test_ethernet_padding_is_not_payload() -> None:
    # a 60-byte minimum frame pads a short segment with zeros the IP total length excludes
    frame = bytes(Ether() / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(flags="A") / Raw(b"ab"))
    padded = frame + b"\x00" * (60 - len(frame))
    assert decode(LINKTYPE_ETHERNET, padded)[P_PAYLOAD] == b"ab"


def test_vlan_and_qinq() -> None:
    pkt = decode(LINKTYPE_ETHERNET, bytes(Ether() / Dot1Q(vlan=30) / SEGMENT))
    assert vlan_ids(pkt[P_VLAN]) == (30, None)
    pkt = decode(LINKTYPE_ETHERNET, bytes(Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=30) / SEGMENT))
    assert vlan_ids(pkt[P_VLAN]) == (100, 30)
    assert pkt[P_SPORT] == 502


def test_udp() -> None:
    pkt = decode(LINKTYPE_ETHERNET, bytes(Ether() / IP() / UDP(sport=4000, dport=4840) / b"xyz"))
    assert (pkt[P_TRANSPORT], pkt[P_SPORT], pkt[P_DPORT], pkt[P_PAYLOAD]) == (
        17,
        4000,
        4840,
        b"xyz",
    )


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (LINKTYPE_RAW, bytes(SEGMENT)),
        (LINKTYPE_LINUX_SLL, bytes(CookedLinux(proto=0x0800) / SEGMENT)),
        (
            LINKTYPE_LINUX_SLL2,
            b"\x08\x00\x00\x00"
            + b"\x00\x00\x00\x02"
            + b"\x00\x01\x04\x06"
            + b"\x00" * 8
            + bytes(SEGMENT),
        ),
        (LINKTYPE_NULL, (2).to_bytes(4, "little") + bytes(SEGMENT)),
        (LINKTYPE_NULL, (2).to_bytes(4, "big") + bytes(SEGMENT)),
        (LINKTYPE_LOOP, (2).to_bytes(4, "big") + bytes(SEGMENT)),
    ],
    ids=["raw", "sll", "sll2", "null-le", "null-be", "loop"],
)
def test_link_types(linktype: int, frame: bytes) -> None:
    pkt = decode(linktype, frame)
    assert (pkt[P_SRC], pkt[P_SPORT], pkt[P_DPORT]) == (A4, 502, 49822)
    assert pkt[P_PAYLOAD] == bytes(SEGMENT[Raw])


def test_raw_ipv6_and_bsd_loopback_ipv6() -> None:
    seg6 = IPv6(src="fd00::5", dst="fd00::15") / TCP(sport=102, dport=50000) / b"S7"
    assert decode(LINKTYPE_RAW, bytes(seg6))[P_SRC] == A6
    assert decode(LINKTYPE_NULL, (30).to_bytes(4, "little") + bytes(seg6))[P_DST] == B6


def test_ipv6_extension_headers() -> None:
    seg6 = (
        IPv6(src="fd00::5", dst="fd00::15")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["fd00::99"])
        / IPv6ExtHdrDestOpt()
        / TCP(sport=4840, dport=51000)
        / b"HELF"
    )
    pkt = decode(LINKTYPE_ETHERNET, bytes(Ether() / seg6))
    assert (pkt[P_SPORT], pkt[P_DPORT], pkt[P_PAYLOAD]) == (4840, 51000, b"HELF")


def test_ipv4_fragments_reassembled_in_any_order() -> None:
    payload = bytes(range(256)) * 12
    whole = IP(src="10.10.30.5", dst="10.10.20.15", id=77) / UDP(sport=1, dport=2) / payload
    frags = [bytes(Ether() / f) for f in fragment(whole, fragsize=512)]
    assert len(frags) > 3
    dec = Decoder()
    order = [frags[2], frags[0], frags[-1], *frags[3:-1], frags[1]]
    results = [dec.decode(LINKTYPE_ETHERNET, f, 0) for f in order]
    assert results[:-1] == [None] * (len(order) - 1)
    last = results[-1]
    assert last is not None and flat(last)[P_PAYLOAD] == payload
    assert dec.fragments_reassembled == 1
    assert dec.fragment_trains_open == 0


def test_ipv6_fragments_reassembled() -> None:
    payload = b"opcua" * 600
    pkt6 = (
        IPv6(src="fd00::5", dst="fd00::15")
        / IPv6ExtHdrFragment(id=9)
        / UDP(sport=4840, dport=4841)
        / payload
    )
    from scapy.layers.inet6 import fragment6

    frags = [bytes(Ether() / f) for f in fragment6(pkt6, 1280)]
    dec = Decoder()
    out = [dec.decode(LINKTYPE_ETHERNET, f, 0) for f in frags]
    last = out[-1]
    assert last is not None and flat(last)[P_PAYLOAD] == payload


def test_fragment_table_is_bounded() -> None:
    dec = Decoder(max_fragment_trains=16)
    for ident in range(1000):
        first = fragment(IP(id=ident, dst="1.1.1.1") / UDP() / (b"x" * 2000), fragsize=1000)[0]
        assert dec.decode(LINKTYPE_RAW, bytes(first), ident) is None
    assert dec.fragment_trains_open <= 16
    assert dec.fragment_trains_evicted >= 1000 - 16


@pytest.mark.parametrize("cut", range(0, 54))
def test_truncated_frames_are_counted_not_raised(cut: int) -> None:
    dec = Decoder()
    frame = bytes(Ether() / SEGMENT)[:cut]
    result = dec.decode(LINKTYPE_ETHERNET, frame, 0)
    assert result is None or flat(result)[P_PAYLOAD] == b""
    if result is None:
        assert sum(dec.errors.values()) == 1


def test_non_ip_is_counted() -> None:
    dec = Decoder()
    assert dec.decode(LINKTYPE_ETHERNET, bytes(Ether() / ARP()), 0) is None
    assert dec.other == {"ethertype.0x0806": 1}


# -- differential: every TCP/UDP header we decode agrees with tshark --------------------------

_FIELDS = [
    "frame.number",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "tcp.len",
    "vlan.id",
]


def _tshark_rows(tshark: str, path: Path) -> dict[int, list[str]]:
    cmd = [
        tshark,
        "-n",
        "-r",
        str(path),
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=f",
        "-o",
        "tcp.desegment_tcp_streams:FALSE",
    ]
    for f in _FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        cols = line.split("|")
        rows[int(cols[0])] = cols[1:]
    return rows


def _differential_files() -> list[Path]:
    files = lab_pcaps() + [p for p in shared_pcaps() if p.stat().st_size < 600_000]
    return files


@pytest.mark.parametrize("path", _differential_files(), ids=lambda p: p.name)
def test_decode_agrees_with_tshark(path: Path, tshark: str) -> None:
    rows = _tshark_rows(tshark, path)
    dec = Decoder()
    reader = open_capture(path)
    checked = 0
    for number, (ts, linktype, frame) in enumerate(reader, start=1):
        decoded = dec.decode(linktype, frame, ts)
        ip_src, ip6_src, tsport, tdport, usport, udport, tlen, vlan = rows[number]
        if decoded is None:
            continue
        pkt = flat(decoded)
        src = socket.inet_ntop(
            socket.AF_INET if len(pkt[P_SRC]) == 4 else socket.AF_INET6, pkt[P_SRC]
        )
        assert src in (ip_src, ip6_src), f"frame {number}"
        if pkt[P_TRANSPORT] == 6 and tsport:
            assert (pkt[P_SPORT], pkt[P_DPORT]) == (int(tsport), int(tdport)), f"frame {number}"
            assert len(pkt[P_PAYLOAD]) == int(tlen), f"frame {number}"
        elif pkt[P_TRANSPORT] == 17 and usport:
            assert (pkt[P_SPORT], pkt[P_DPORT]) == (int(usport), int(udport)), f"frame {number}"
        if vlan:
            assert vlan_ids(pkt[P_VLAN])[0] == int(vlan), f"frame {number}"
        checked += 1
    reader.close()
    assert checked > 0


# -- ARP --------------------------------------------------------------------------------------

PLC_MAC, HMI_MAC = "00:80:f4:0c:30:05", "00:30:de:4b:30:0a"


def arp_frames(dec: Decoder, linktype: int, frame: bytes) -> list[Arp]:
    seen: list[Arp] = []
    dec.on_arp = seen.append
    assert dec.decode(linktype, frame, 7) is None  # ARP is never a flow packet
    return seen


def test_arp_request_and_reply_are_handed_over() -> None:
    dec = Decoder()
    who_has = Ether(src=HMI_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=HMI_MAC, psrc="10.10.30.10", pdst="10.10.30.5"
    )
    (req,) = arp_frames(dec, LINKTYPE_ETHERNET, bytes(who_has))
    assert (req.ts, req.op, req.sender_ip, req.target_ip) == (7, ARP_REQUEST, B4_HMI, A4)
    assert req.sender_mac == req.eth_src == bytes.fromhex(HMI_MAC.replace(":", ""))
    assert req.eth_dst == b"\xff" * 6 and req.target_mac == bytes(6)
    is_at = Ether(src=PLC_MAC, dst=HMI_MAC) / ARP(
        op=2, hwsrc=PLC_MAC, psrc="10.10.30.5", hwdst=HMI_MAC, pdst="10.10.30.10"
    )
    padded = bytes(is_at) + b"\x00" * 18  # the 60-byte minimum frame
    (rep,) = arp_frames(dec, LINKTYPE_ETHERNET, padded)
    assert (rep.op, rep.sender_ip, rep.target_mac) == (ARP_REPLY, A4, req.sender_mac)
    assert dec.arp_packets == 2 and not dec.errors
    assert dec.other == {"ethertype.0x0806": 2}  # still counted as a frame carrying no IP


def test_arp_in_vlans_and_cooked_captures() -> None:
    dec = Decoder()
    arp = ARP(op=1, hwsrc=HMI_MAC, psrc="10.10.30.10", pdst="10.10.30.5")
    (tagged,) = arp_frames(dec, LINKTYPE_ETHERNET, bytes(Ether() / Dot1Q(vlan=30) / arp))
    assert vlan_ids(tagged.vlan) == (30, None) and tagged.target_ip == A4
    qinq = Ether() / Dot1AD(vlan=100) / Dot1Q(vlan=30) / arp
    assert vlan_ids(arp_frames(dec, LINKTYPE_ETHERNET, bytes(qinq))[0].vlan) == (100, 30)
    (cooked,) = arp_frames(dec, LINKTYPE_LINUX_SLL, bytes(CookedLinux(proto=0x0806) / arp))
    assert cooked.eth_src is None and cooked.sender_ip == B4_HMI


def test_malformed_arp_is_counted_never_raised() -> None:
    good = bytes(Ether() / ARP(op=1, psrc="10.10.30.10", pdst="10.10.30.5"))
    for cut in range(14, len(good)):
        dec = Decoder()
        assert arp_frames(dec, LINKTYPE_ETHERNET, good[:cut]) == []
        assert dec.errors == {"arp.truncated": 1}
    dec = Decoder()
    assert arp_frames(dec, LINKTYPE_ETHERNET, good[:20]) == []  # too short, and not IPv4 anyway
    assert arp_frames(dec, LINKTYPE_ETHERNET, good[:16] + b"\x86\xdd" + good[18:30]) == []
    assert dec.errors == {"arp.truncated": 1, "arp.unsupported_addresses": 1}
    cases = {
        "arp.unsupported_addresses": [
            ARP(ptype=0x86DD),  # no ARP for IPv6
            ARP(hwtype=32),  # InfiniBand
            ARP(hwlen=8),
            ARP(plen=16),
        ],
        "arp.unknown_op": [ARP(op=3), ARP(op=0), ARP(op=9)],  # RARP, nothing, InARP
    }
    for reason, arps in cases.items():
        for arp in arps:
            dec = Decoder()
            assert arp_frames(dec, LINKTYPE_ETHERNET, bytes(Ether() / arp)) == []
            assert dec.errors == {reason: 1}, arp.summary()


def test_random_arp_bodies_never_raise() -> None:
    import random

    rng = random.Random(6)
    dec = Decoder()
    seen: list[Arp] = []
    dec.on_arp = seen.append
    head = bytes(Ether(type=0x0806))
    for _ in range(3000):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
        if rng.random() < 0.5 and len(body) >= 8:  # mostly well-formed headers, random addresses
            body = bytes.fromhex("000108000604") + bytes((0, rng.choice((1, 2)))) + body[8:]
        assert dec.decode(LINKTYPE_ETHERNET, head + body, 0) is None
    assert dec.arp_packets == len(seen) > 0
    assert sum(dec.errors.values()) + len(seen) == 3000


@pytest.mark.parametrize("path", lab_pcaps(), ids=lambda p: p.name)
def test_arp_in_lab_captures_agrees_with_tshark(path: Path, tshark: str) -> None:
    out = subprocess.run(
        [tshark, "-r", str(path), "-Y", "arp", "-T", "fields", "-e", "frame.number"]
        + ["-e", "arp.opcode", "-e", "arp.src.hw_mac", "-e", "arp.src.proto_ipv4"]
        + ["-e", "arp.dst.proto_ipv4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = [line.split("\t") for line in out.splitlines()]
    dec = Decoder()
    seen: list[tuple[int, Arp]] = []
    dec.on_arp = lambda a: seen.append((dec.arp_packets, a))
    numbers: dict[int, int] = {}  # ARP packet count → frame number
    with open_capture(path) as frames:
        for number, (ts, linktype, data) in enumerate(frames, start=1):
            dec.decode(linktype, data, ts)
            numbers.setdefault(dec.arp_packets, number)
    got = [
        [
            str(numbers[n]),
            str(a.op),
            a.sender_mac.hex(":"),
            socket.inet_ntoa(a.sender_ip),
            socket.inet_ntoa(a.target_ip),
        ]
        for n, a in seen
    ]
    assert got == expected and got
