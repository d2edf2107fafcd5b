"""Link, network and transport headers: frame bytes → a flat tuple for the flow stage.

Hot path: one call per packet, precompiled ``struct.Struct`` objects, no per-packet objects but the
returned tuple. Checksums are never validated (mirror ports and checksum offload produce bad ones).
Anything that does not decode is counted in ``Decoder.errors`` by a stable reason id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from struct import Struct
from typing import NamedTuple

from otsentry.accel import SPEEDUPS
from otsentry.capture.base import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)

TCP = 6
UDP = 17

# TCP flags
FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))

_U16 = Struct("!H")
_U16_AT12 = Struct("!12xH")
_ETH_IPV4 = Struct("!12xHBxHHHxB2x4s4s")  # ethertype + the IPv4 header fields we use
_IPV4 = Struct("!BxHHHxB2x4s4s")  # ver/ihl, total length, id, flags/frag offset, proto, src, dst
_IPV6 = Struct("!4xHBx16s16s")  # payload length, next header, src, dst
_TCP = Struct("!HHI4xBB")  # sport, dport, seq, data offset, flags
_ETH_IPV4_TCP = Struct("!12xHBxHHHxB2x4s4sHHI4xBB")  # both of the above, back to back
_UDP = Struct("!HHH")  # sport, dport, length
_EXT = Struct("!BB")  # IPv6 extension: next header, length in 8-octet units (beyond the first 8)
_FRAG6 = Struct("!BxHI")  # next header, offset/flags, identification
_ARP = Struct("!HHBBH6s4s6s4s")  # hw type, proto type, hw len, proto len, op, sha, spa, tha, tpa
_ARP_FIXED = Struct("!HHBBH")
_ARP_HW_TYPES = frozenset((1, 6))  # Ethernet, IEEE 802
ARP_REQUEST, ARP_REPLY = 1, 2
_NULL_LE = Struct("<I")
_NULL_BE = Struct(">I")

# BSD loopback address family values meaning IPv6 on the various BSDs / macOS
_AF_INET6 = frozenset((10, 24, 28, 30))

# IPv6 extension headers walked to reach the transport header
_V6_HOPOPTS, _V6_ROUTING, _V6_FRAGMENT, _V6_DSTOPTS, _V6_AH, _V6_MOBILITY = 0, 43, 44, 60, 51, 135
_V6_CHAINED = frozenset((_V6_HOPOPTS, _V6_ROUTING, _V6_DSTOPTS, _V6_MOBILITY, 139, 140))

#: The flow key of a packet as sent: (src ip, src port, dst ip, dst port, vlan tag, transport).
#: IPs are packed bytes (4 or 16). ``vlan`` packs the outer VLAN id in bits 0-11 and the inner
#: (QinQ) id in bits 12-23; 0 = untagged.
FlowKey = tuple[bytes, int, bytes, int, int, int]

#: A decoded packet: (flow key, TCP flags, TCP seq, payload, offset of the MAC header or -1).
Packet = tuple[FlowKey, int, int, bytes, int]

#: the first case of ``Decoder.decode`` compiled (otsentry/_speedups.c), or None: for a frame of
#: link type Ethernet, the packet that ``decode`` would give, or None when ``decode`` must look
FAST_TCP4: Callable[[bytes], Packet | None] | None = (
    SPEEDUPS.ethernet_ipv4_tcp if SPEEDUPS is not None else None
)

K_SRC, K_SPORT, K_DST, K_DPORT, K_VLAN, K_TRANSPORT = range(6)
P_KEY, P_FLAGS, P_SEQ, P_PAYLOAD, P_MACOFF = range(5)


def vlan_ids(vlan: int) -> tuple[int | None, int | None]:
    """Split a packed vlan tag into (outer id, inner id)."""
    outer = vlan & 0xFFF
    inner = (vlan >> 12) & 0xFFF
    return (outer or None, inner or None)


class Arp(NamedTuple):
    """An Ethernet/IPv4 ARP packet (RFC 826): addresses as packed bytes (MACs 6, IPs 4)."""

    ts: int
    op: int  # ARP_REQUEST or ARP_REPLY
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes
    #: the Ethernet header's source and destination (None on link types without one)
    eth_src: bytes | None
    eth_dst: bytes | None
    vlan: int  # packed as in ``FlowKey``


class _FragmentTrain:
    __slots__ = ("first_ts", "header_proto", "parts", "size", "total")

    def __init__(self, ts: int, proto: int) -> None:
        self.first_ts = ts
        self.parts: dict[int, bytes] = {}
        self.total = -1  # payload length once the last fragment is seen
        self.size = 0
        self.header_proto = proto


class Decoder:
    """Decodes frames; holds the bounded IP fragment table and the decode error counters."""

    def __init__(
        self,
        max_fragment_trains: int = 4096,
        fragment_timeout: float = 30.0,
        max_fragment_bytes: int = 65535 + 1500,
        on_arp: Callable[[Arp], None] | None = None,
    ) -> None:
        self.errors: Counter[str] = Counter()
        #: called with every well-formed ARP request or reply
        self.on_arp = on_arp
        self.arp_packets = 0
        self.other: Counter[str] = Counter()  # non-IP ethertypes and non-TCP/UDP IP protocols
        self.fragments_reassembled = 0
        self.fragment_trains_evicted = 0
        self._frags: dict[tuple[bytes, bytes, int, int], _FragmentTrain] = {}
        self._max_trains = max_fragment_trains
        self._frag_timeout_ns = int(fragment_timeout * 1e9)
        self._max_frag_bytes = max_fragment_bytes

    # The decode entry point. Kept as one function with the common case first.
    def decode(self, linktype: int, data: bytes, ts: int) -> Packet | None:
        """Decode one frame; None for frames that carry no TCP/UDP (counted)."""
        vlan = 0
        macoff = -1
        n = len(data)
        if linktype == LINKTYPE_ETHERNET and n >= 54:
            # the commonest frame: untagged Ethernet, IPv4 without options, TCP, in one unpack
            if FAST_TCP4 is not None:
                pkt = FAST_TCP4(data)  # the same, compiled
                if pkt is not None:
                    return pkt
            else:
                (
                    etype,
                    vihl,
                    total,
                    _ident,
                    frag,
                    proto,
                    src,
                    dst,
                    sport,
                    dport,
                    seq,
                    doff,
                    flags,
                ) = _ETH_IPV4_TCP.unpack_from(data)
                if (
                    etype == ETH_IPV4
                    and vihl == 0x45
                    and proto == TCP
                    and not frag & 0x3FFF
                    and total >= 40
                    and doff >= 0x50
                ):
                    end = 14 + total
                    if end > n:
                        end = n
                    return (
                        (src, sport, dst, dport, 0, TCP),
                        flags,
                        seq,
                        data[34 + (doff >> 4) * 4 : end],
                        0,
                    )
        if linktype == LINKTYPE_ETHERNET and n >= 34:
            etype, vihl, total, ident, frag, proto, src, dst = _ETH_IPV4.unpack_from(data)
            if etype == ETH_IPV4 and vihl == 0x45 and not frag & 0x3FFF and total >= 20:
                # the common case: untagged Ethernet, IPv4 without options, not a fragment
                end = 14 + total
                if end > n:
                    end = n
                off = 34
                macoff = 0
                if proto == TCP:
                    if end < 48:
                        self.errors["tcp.truncated"] += 1
                        return None
                    sport, dport, seq, doff, flags = _TCP.unpack_from(data, 34)
                    doff = (doff >> 4) * 4
                    if doff < 20:
                        self.errors["tcp.bad_data_offset"] += 1
                        return None
                    return ((src, sport, dst, dport, 0, TCP), flags, seq, data[34 + doff : end], 0)
        if linktype == LINKTYPE_ETHERNET:
            if n < 14:
                self.errors["ethernet.truncated"] += 1
                return None
            etype = _U16_AT12.unpack_from(data)[0]
            off = 14
            macoff = 0
            if etype in _VLAN_TPIDS:
                depth = 0
                while etype in _VLAN_TPIDS:
                    if len(data) < off + 4:
                        self.errors["vlan.truncated"] += 1
                        return None
                    tci, etype = _U16.unpack_from(data, off)[0], _U16.unpack_from(data, off + 2)[0]
                    if depth == 0:
                        vlan = tci & 0xFFF
                    elif depth == 1:
                        vlan |= (tci & 0xFFF) << 12
                    depth += 1
                    off += 4
        elif linktype == LINKTYPE_LINUX_SLL:
            if len(data) < 16:
                self.errors["sll.truncated"] += 1
                return None
            etype = _U16.unpack_from(data, 14)[0]
            off = 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            if len(data) < 20:
                self.errors["sll2.truncated"] += 1
                return None
            etype = _U16.unpack_from(data, 0)[0]
            off = 20
        elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
            if not data:
                self.errors["raw.empty"] += 1
                return None
            etype = ETH_IPV6 if data[0] >> 4 == 6 else ETH_IPV4
            off = 0
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                self.errors["loopback.truncated"] += 1
                return None
            if linktype == LINKTYPE_LOOP:
                family = _NULL_BE.unpack_from(data)[0]
            else:
                family = _NULL_LE.unpack_from(data)[0]
                if family > 0xFFFF:  # written on a host of the other byte order
                    family = _NULL_BE.unpack_from(data)[0]
            etype = ETH_IPV4 if family == 2 else ETH_IPV6 if family in _AF_INET6 else 0
            off = 4
        else:
            self.errors["linktype.unsupported"] += 1
            return None

        if etype == ETH_IPV4:
            if len(data) < off + 20:
                self.errors["ipv4.truncated"] += 1
                return None
            vihl, total, ident, frag, proto, src, dst = _IPV4.unpack_from(data, off)
            ihl = (vihl & 0x0F) * 4
            if vihl >> 4 != 4 or ihl < 20:
                self.errors["ipv4.bad_header"] += 1
                return None
            end = off + total
            if total < ihl:
                if total != 0:  # 0 = TSO on the capturing host: take the frame length
                    self.errors["ipv4.bad_length"] += 1
                    return None
                end = len(data)
            elif end > len(data):
                end = len(data)  # snaplen-truncated: keep what was captured
            off += ihl
            if frag & 0x3FFF:  # more-fragments flag or a non-zero offset
                reassembled = self._fragment(
                    (src, dst, ident, proto), (frag & 0x1FFF) * 8, frag & 0x2000, data[off:end], ts
                )
                if reassembled is None:
                    return None
                data, off, end = reassembled, 0, len(reassembled)
        elif etype == ETH_IPV6:
            if len(data) < off + 40:
                self.errors["ipv6.truncated"] += 1
                return None
            plen, proto, src, dst = _IPV6.unpack_from(data, off)
            off += 40
            end = off + plen if plen else len(data)
            if end > len(data):
                end = len(data)
            while proto in _V6_CHAINED or proto in (_V6_AH, _V6_FRAGMENT):
                if end < off + 8:
                    self.errors["ipv6.truncated_extension"] += 1
                    return None
                if proto == _V6_FRAGMENT:
                    nxt, offflags, ident = _FRAG6.unpack_from(data, off)
                    off += 8
                    if offflags & 0xFFF9 == 0:  # atomic fragment: offset 0, no more fragments
                        proto = nxt
                        continue
                    reassembled = self._fragment(
                        (src, dst, ident, nxt), offflags & 0xFFF8, offflags & 1, data[off:end], ts
                    )
                    if reassembled is None:
                        return None
                    data, off, end, proto = reassembled, 0, len(reassembled), nxt
                    continue
                nxt, hlen = _EXT.unpack_from(data, off)
                off += (hlen + 2) * 4 if proto == _V6_AH else (hlen + 1) * 8
                proto = nxt
        else:
            self.other[f"ethertype.0x{etype:04x}"] += 1
            if etype == ETH_ARP:
                self._arp(data, off, macoff, vlan, ts)
            return None

        if proto == TCP:
            if end < off + 14:
                self.errors["tcp.truncated"] += 1
                return None
            sport, dport, seq, doff, flags = _TCP.unpack_from(data, off)
            doff = (doff >> 4) * 4
            if doff < 20:
                self.errors["tcp.bad_data_offset"] += 1
                return None
            return ((src, sport, dst, dport, vlan, TCP), flags, seq, data[off + doff : end], macoff)
        if proto == UDP:
            if end < off + 8:
                self.errors["udp.truncated"] += 1
                return None
            sport, dport, ulen = _UDP.unpack_from(data, off)
            uend = off + ulen if ulen >= 8 else end
            return (
                (src, sport, dst, dport, vlan, UDP),
                0,
                0,
                data[off + 8 : min(uend, end)],
                macoff,
            )
        self.other[f"ip.proto.{proto}"] += 1
        return None

    def _arp(self, data: bytes, off: int, macoff: int, vlan: int, ts: int) -> None:
        """Check an ARP packet and hand it to ``on_arp``; anything else is counted."""
        if len(data) >= off + 28:
            htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data, off)
        elif len(data) >= off + 8:  # the fixed part says whether the rest matters
            htype, ptype, hlen, plen, op = _ARP_FIXED.unpack_from(data, off)
            sha = spa = tha = tpa = b""
        else:
            self.errors["arp.truncated"] += 1
            return
        if htype not in _ARP_HW_TYPES or ptype != ETH_IPV4 or hlen != 6 or plen != 4:
            self.errors["arp.unsupported_addresses"] += 1
            return
        if not tpa:
            self.errors["arp.truncated"] += 1
            return
        if op != ARP_REQUEST and op != ARP_REPLY:
            self.errors["arp.unknown_op"] += 1
            return
        self.arp_packets += 1
        if self.on_arp is not None:
            eth_src = data[macoff + 6 : macoff + 12] if macoff >= 0 else None
            eth_dst = data[macoff : macoff + 6] if macoff >= 0 else None
            self.on_arp(Arp(ts, op, sha, spa, tha, tpa, eth_src, eth_dst, vlan))

    def _fragment(
        self, key: tuple[bytes, bytes, int, int], offset: int, more: int, part: bytes, ts: int
    ) -> bytes | None:
        """Hold an IP fragment; return the reassembled transport bytes once complete."""
        frags = self._frags
        train = frags.get(key)
        if train is None:
            if len(frags) >= self._max_trains:
                self._expire_fragments(ts)
                if len(frags) >= self._max_trains:
                    del frags[next(iter(frags))]
                    self.fragment_trains_evicted += 1
            train = frags[key] = _FragmentTrain(ts, key[3])
        elif ts - train.first_ts > self._frag_timeout_ns:
            self.fragment_trains_evicted += 1
            train = frags[key] = _FragmentTrain(ts, key[3])
        if offset + len(part) > self._max_frag_bytes:
            self.errors["ip.fragment_too_large"] += 1
            del frags[key]
            return None
        if offset not in train.parts:  # first copy wins on a duplicate fragment
            train.parts[offset] = part
            train.size += len(part)
        if not more:
            train.total = offset + len(part)
        if train.total < 0 or train.size < train.total:
            return None
        buf = bytearray(train.total)
        covered = 0
        for frag_off in sorted(train.parts):
            piece = train.parts[frag_off]
            if frag_off > covered:
                return None  # a hole remains (overlapping duplicates inflated the size)
            buf[frag_off : frag_off + len(piece)] = piece
            covered = max(covered, frag_off + len(piece))
        del frags[key]
        self.fragments_reassembled += 1
        return bytes(buf[: train.total])

    def _expire_fragments(self, ts: int) -> None:
        limit = ts - self._frag_timeout_ns
        stale = [k for k, t in self._frags.items() if t.first_ts < limit]
        for k in stale:
            del self._frags[k]
        self.fragment_trains_evicted += len(stale)

    @property
    def fragment_trains_open(self) -> int:
        """Fragment trains waiting for their missing pieces."""
        return len(self._frags)
