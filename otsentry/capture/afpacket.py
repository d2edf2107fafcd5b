"""Linux AF_PACKET sockets, receive side only: open, filter, promiscuous mode, fanout, statistics.

Nothing here transmits: sockets are only bound and read, never written to. A socket is created
with protocol 0, so it receives nothing until ``bind_all`` binds it to ETH_P_ALL on one
interface; everything that must be in place first (the BPF filter, the ring) is set before that.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct

# <linux/if_packet.h>, <linux/if_ether.h>, <asm-generic/socket.h>, <linux/sockios.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772

PACKET_FANOUT_FLAG_DEFRAG = 0x8000
#: fanout modes by name: "hash" is the kernel's symmetric flow hash (IP fragments reassembled
#: first, so that they follow their flow)
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_DATA = 22
FANOUT_MODES = {
    "hash": 0 | PACKET_FANOUT_FLAG_DEFRAG,
    "lb": 1,
    "cpu": 2,
    "qm": 5,
    # the host pair (IPv4: both addresses; IPv6: their last 32 bits), symmetric, by the program
    # below: every flow between two hosts in one worker, so rules correlating a client's
    # connections to a server (sweeps over several connections) see all of them
    "hostpair": PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_DEFRAG,
}

_INSN = struct.Struct("HBBI")  # struct sock_filter: code, jt, jf, k
_SKF_AD_PROTOCOL = -0x1000 + 0  # SKF_AD_OFF + SKF_AD_PROTOCOL: skb->protocol, host order
_SKF_NET = -0x100000  # SKF_NET_OFF: loads relative to the network header
_BPF_LD_W_ABS, _BPF_LD_H_ABS = 0x20, 0x28
_BPF_JEQ_K, _BPF_TAX, _BPF_XOR_X, _BPF_RET_A, _BPF_RET_K = 0x15, 0x07, 0xAC, 0x16, 0x06


def _k(value: int) -> int:
    return value & 0xFFFFFFFF


#: fanout demux program of "hostpair": A = source ^ destination address, so both directions of
#: every flow between two hosts give the same value (the kernel takes it modulo the members)
HOSTPAIR_PROGRAM = b"".join(
    _INSN.pack(*insn)
    for insn in (
        (_BPF_LD_H_ABS, 0, 0, _k(_SKF_AD_PROTOCOL)),  # 0: A = ethertype of the frame
        (_BPF_JEQ_K, 0, 5, 0x0800),  # 1: IPv4, else 7
        (_BPF_LD_W_ABS, 0, 0, _k(_SKF_NET + 12)),  # 2: A = source address
        (_BPF_TAX, 0, 0, 0),  # 3: X = A
        (_BPF_LD_W_ABS, 0, 0, _k(_SKF_NET + 16)),  # 4: A = destination address
        (_BPF_XOR_X, 0, 0, 0),  # 5: A ^= X
        (_BPF_RET_A, 0, 0, 0),  # 6
        (_BPF_JEQ_K, 0, 5, 0x86DD),  # 7: IPv6, else 13
        (_BPF_LD_W_ABS, 0, 0, _k(_SKF_NET + 20)),  # 8: last 32 bits of the source
        (_BPF_TAX, 0, 0, 0),  # 9
        (_BPF_LD_W_ABS, 0, 0, _k(_SKF_NET + 36)),  # 10: last 32 bits of the destination
        (_BPF_XOR_X, 0, 0, 0),  # 11
        (_BPF_RET_A, 0, 0, 0),  # 12
        (_BPF_RET_K, 0, 0, 0),  # 13: not IP (ARP...): the first member
    )
)

_IFREQ_INDEX = struct.Struct("16si12x")
_IFREQ_HWADDR = struct.Struct("16sH14x8x")
_MREQ = struct.Struct("iHH8s")  # struct packet_mreq
_STATS_V3 = struct.Struct("III")  # struct tpacket_stats_v3
_STATS = struct.Struct("II")  # struct tpacket_stats
_SOCK_FPROG = struct.Struct("HP")  # struct sock_fprog: len, pointer to the instructions


class LiveCaptureError(Exception):
    """Live capture cannot start: a one-line reason (interface, privileges, filter, options)."""


def open_socket(interface: str) -> socket.socket:
    """A raw AF_PACKET socket that receives nothing yet (protocol 0, unbound)."""
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise LiveCaptureError(
            f"capturing on {interface} needs root or the CAP_NET_RAW capability"
        ) from None
    except OSError as err:
        raise LiveCaptureError(f"cannot open a packet socket for {interface}: {err}") from None


def interface_info(sock: socket.socket, interface: str) -> tuple[int, int]:
    """Index and ARPHRD type of ``interface`` in the socket's network namespace.

    Ethernet and loopback (which the kernel gives a zeroed Ethernet header) are accepted; other
    link types raise ``LiveCaptureError``, as does an interface that does not exist.
    """
    name = interface.encode()
    if not name or len(name) >= 16 or b"/" in name or b"\0" in name:
        raise LiveCaptureError(f"invalid interface name {interface!r}")
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, _IFREQ_INDEX.pack(name, 0))
        index = _IFREQ_INDEX.unpack(raw)[1]
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, _IFREQ_HWADDR.pack(name, 0))
    except OSError as err:
        if err.errno == errno.ENODEV:
            raise LiveCaptureError(f"interface {interface} does not exist") from None
        raise LiveCaptureError(f"interface {interface}: {err.strerror or err}") from None
    hwtype = _IFREQ_HWADDR.unpack(raw)[1]
    if hwtype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        raise LiveCaptureError(
            f"interface {interface} has hardware type {hwtype} (ARPHRD); "
            "only Ethernet and loopback interfaces can be captured"
        )
    return int(index), int(hwtype)


_PROGRAMS: list[object] = []  # buffers a sock_fprog points into, alive until the kernel copied


def _fprog(program: bytes) -> bytes:
    """A ``struct sock_fprog`` for ``program`` (the kernel copies the instructions at once)."""
    import ctypes

    buf = ctypes.create_string_buffer(program, len(program))
    _PROGRAMS[:] = [buf]
    return _SOCK_FPROG.pack(len(program) // 8, ctypes.addressof(buf))


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF program (``struct sock_filter`` array) with SO_ATTACH_FILTER."""
    fprog = _fprog(program)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
    except OSError as err:
        raise LiveCaptureError(f"the kernel refused the BPF program: {err.strerror}") from None


def set_promiscuous(sock: socket.socket, index: int) -> None:
    """Promiscuous mode for as long as the socket is open (the kernel counts and undoes it)."""
    mreq = _MREQ.pack(index, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)


def ignore_outgoing(sock: socket.socket) -> None:
    """Stop receiving the host's own outgoing packets (Linux 4.20+; older kernels keep them)."""
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError as err:
        if err.errno != errno.ENOPROTOOPT:
            raise LiveCaptureError(f"PACKET_IGNORE_OUTGOING: {err.strerror or err}") from None


def bind_all(sock: socket.socket, interface: str) -> None:
    """Start receiving every protocol (ETH_P_ALL) on ``interface``: receive side only."""
    try:
        sock.bind((interface, ETH_P_ALL))
    except OSError as err:
        raise LiveCaptureError(f"cannot bind to {interface}: {err.strerror or err}") from None


def join_fanout(sock: socket.socket, group: int, mode: str) -> None:
    """Join PACKET_FANOUT group ``group`` (0-65535) in ``mode``; the socket must be bound."""
    if mode not in FANOUT_MODES:
        raise LiveCaptureError(
            f"unknown fanout mode {mode!r} (choose from {', '.join(sorted(FANOUT_MODES))})"
        )
    if not 0 <= group <= 0xFFFF:
        raise LiveCaptureError(f"fanout group {group} is outside 0-65535")
    try:
        arg = struct.pack("I", group | FANOUT_MODES[mode] << 16)  # above INT_MAX with DEFRAG
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
        if mode == "hostpair":
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT_DATA, _fprog(HOSTPAIR_PROGRAM))
    except OSError as err:
        raise LiveCaptureError(
            f"cannot join fanout group {group} ({mode}): {err.strerror or err} "
            "(a group in use with another mode or interface?)"
        ) from None


def read_stats_v3(sock: socket.socket) -> tuple[int, int, int]:
    """(packets, drops, freeze count) since the last call, from a TPACKET_V3 socket.

    The kernel resets its counters on every read; ``packets`` includes the dropped ones.
    """
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
    packets, drops, freezes = _STATS_V3.unpack(raw)
    return packets, drops, freezes


def read_stats(sock: socket.socket) -> tuple[int, int]:
    """(packets, drops) since the last call, from a socket without a ring."""
    raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
    packets, drops = _STATS.unpack(raw)
    return packets, drops
