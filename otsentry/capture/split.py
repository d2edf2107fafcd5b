"""Dealing capture frames to N workers by host pair, from the raw bytes.

Every worker of ``otsentry replay --workers N`` reads the whole capture and keeps the frames whose
host pair falls to it. The pair is hashed symmetrically (the sum of the source and destination
addresses), so both directions of every flow between two hosts, and every IP fragment of a
datagram (each carries the addresses), go to the same worker. Frames without an IP header that
can be found here (ARP, other ethertypes, truncated or unknown link layers) go to worker 0, so
each frame is processed exactly once.

The classifier runs once per frame in every worker: it reads the link header, at most two VLAN
tags and the addresses with a few precompiled ``struct`` unpacks, and decodes nothing else. A
classic pcap file's reader does the same test in its compiled record loop
(``PcapReader.keep_share``, otsentry/_speedups.c) and copies only the frames it keeps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from struct import Struct

from otsentry.capture.base import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    Frame,
)
from otsentry.decode import ETH_IPV4, ETH_IPV6

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, and the BSDs / macOS

_ETHER_V4 = Struct("!12xH12xII")  # ethertype, then an IPv4 header's source and destination
_U16_AT = Struct("!H")
_V4_ADDRS = Struct("!12xII")  # from the start of an IPv4 header
_V6_ADDRS = Struct("!8xQQQQ")  # from the start of an IPv6 header
_NULL_LE = Struct("<I")
_NULL_BE = Struct(">I")
#: Fibonacci hashing: the product's high bits mix every bit of the pair's sum. (A sum, not an
#: XOR: the XOR cancels the prefix two hosts share, so 10.0.1.1-10.0.1.2 and 10.0.2.1-10.0.2.2
#: would always meet on one worker.)
_MIX = 0x9E3779B97F4A7C15


def host_pair_hash(linktype: int, data: bytes) -> int | None:
    """A hash of the frame's IP addresses, the same for both directions; None without IP."""
    n = len(data)
    if linktype == LINKTYPE_ETHERNET:
        if n >= 34:
            etype, src, dst = _ETHER_V4.unpack_from(data)
            if etype == ETH_IPV4:
                return int(src + dst)
        elif n < 14:
            return None
        etype = _U16_AT.unpack_from(data, 12)[0]
        off = 14
        if etype in _VLAN_TPIDS:
            for _ in range(2):
                if n < off + 4:
                    return None
                etype = _U16_AT.unpack_from(data, off + 2)[0]
                off += 4
                if etype not in _VLAN_TPIDS:
                    break
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        etype = _U16_AT.unpack_from(data, 14)[0]
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        etype = _U16_AT.unpack_from(data, 0)[0]
        off = 20
    elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not n:
            return None
        etype = ETH_IPV6 if data[0] >> 4 == 6 else ETH_IPV4
        off = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return None
        if linktype == LINKTYPE_LOOP:
            family = _NULL_BE.unpack_from(data)[0]
        else:
            family = _NULL_LE.unpack_from(data)[0]
            if family > 0xFFFF:  # written on a host of the other byte order
                family = _NULL_BE.unpack_from(data)[0]
        etype = ETH_IPV4 if family == _AF_INET else ETH_IPV6 if family in _AF_INET6 else 0
        off = 4
    else:
        return None
    if etype == ETH_IPV4:
        if n < off + 20:
            return None
        src, dst = _V4_ADDRS.unpack_from(data, off)
        return int(src + dst)
    if etype == ETH_IPV6:
        if n < off + 40:
            return None
        s_hi, s_lo, d_hi, d_lo = _V6_ADDRS.unpack_from(data, off)
        return int(s_hi + s_lo + d_hi + d_lo)
    return None


def share_of(pair_hash: int | None, workers: int) -> int:
    """The worker (0 .. workers-1) a host pair hash falls to; frames without one go to 0."""
    if pair_hash is None:
        return 0
    return ((pair_hash * _MIX) >> 32) % workers


def keep_share(frames: Iterable[Frame], worker: int, workers: int) -> Iterator[Frame]:
    """The frames of ``frames`` that fall to ``worker`` of ``workers`` (all of them for one)."""
    return numbered_share(frames, worker, workers)[0]


def numbered_share(
    frames: Iterable[Frame], worker: int, workers: int
) -> tuple[Iterator[Frame], Iterator[int]]:
    """``keep_share`` with the number (from 1) of each kept frame among all of them: the second
    iterator gives the capture's number of the frame the first gave last. Take one number after
    each frame (as ``zip(frames, numbers)`` does): nothing is held beyond that one number."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of 0..{workers - 1}")
    pending: deque[int] = deque(maxlen=1)
    return share_frames(frames, worker, workers, pending.append), iter(pending.popleft, -1)


def share_frames(
    frames: Iterable[Frame], worker: int, workers: int, keep: Callable[[int], None]
) -> Iterator[Frame]:
    """``keep_share`` passing each kept frame's number to ``keep`` (its test inlined)."""
    etype: int
    src: int
    dst: int
    pair = host_pair_hash
    ether_v4 = _ETHER_V4.unpack_from
    mix = _MIX
    number = 0
    for frame in frames:
        number += 1
        _ts, linktype, data = frame
        if linktype == LINKTYPE_ETHERNET and len(data) >= 34:
            etype, src, dst = ether_v4(data)
            if etype == ETH_IPV4:
                if ((src + dst) * mix >> 32) % workers == worker:
                    keep(number)
                    yield frame
                continue
        if share_of(pair(linktype, data), workers) == worker:
            keep(number)
            yield frame
