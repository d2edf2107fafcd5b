"""Live capture from network interfaces: AF_PACKET sockets with a TPACKET_V3 ring each.

Receive-only by construction: the sockets are bound with ETH_P_ALL and only read through their
memory-mapped rings; nothing in this module sends, writes to or injects on a packet socket.
Outgoing packets of the host on a captured interface are kept (a mirror port has none; on a
host interface they are part of what is on the wire), except on loopback, where every packet
would otherwise be seen twice. See docs/live-capture.md.
"""

from __future__ import annotations

import errno
import mmap
import os
import pwd
import select
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from otsentry.capture import afpacket
from otsentry.capture.afpacket import LiveCaptureError
from otsentry.capture.base import LINKTYPE_ETHERNET, Frame
from otsentry.capture.bpf import compile_bpf

__all__ = ["LiveCapture", "LiveCaptureError", "LiveOptions", "compile_bpf", "drop_privileges"]

# <linux/if_packet.h>: block and packet status bits
_TP_STATUS_USER = 1
_TP_STATUS_VLAN_VALID = 0x10
_TP_STATUS_VLAN_TPID_VALID = 0x40
_ETH_P_8021Q = 0x8100
_FRAME_SIZE = 2048  # TPACKET_V3 frames are variable; the kernel only checks this nominal size

_REQ3 = struct.Struct("IIIIIII")  # struct tpacket_req3
_BLOCK_STATUS = struct.Struct("I")  # tpacket_block_desc.hdr.bh1.block_status, offset 8
_BLOCK_PACKETS = struct.Struct("II")  # num_pkts, offset_to_first_pkt, offset 12
# struct tpacket3_hdr up to hv1: next_offset, sec, nsec, snaplen, len, status, mac, net,
# rxhash, vlan_tci, vlan_tpid
_PACKET = struct.Struct("IIIIIIHHIIH")
_VLAN_TAG = struct.Struct("!HH")
_RELEASE = bytes(4)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """What to capture and how the kernel buffers it."""

    interfaces: tuple[str, ...]
    #: tcpdump-syntax filter applied in the kernel; None takes everything
    bpf: str | None = None
    snaplen: int = 65535
    promiscuous: bool = True
    #: PACKET_FANOUT group shared by the workers; None = no fanout. With several interfaces the
    #: k-th interface joins group ``fanout_group + k`` (a group spans one interface only).
    fanout_group: int | None = None
    #: "hash" (symmetric flow hash, fragments reassembled first), "lb", "cpu" or "qm"
    fanout_mode: str = "hash"
    #: bytes per ring block (a multiple of the page size); a longer frame is cut to fit
    block_size: int = 1 << 20
    #: blocks per interface: the ring holds block_size * block_count bytes
    block_count: int = 64
    #: a partly filled block is handed over after this long (latency on a quiet network)
    block_timeout_ms: int = 100


class _Ring:
    """One interface's socket and TPACKET_V3 ring, read block by block."""

    def __init__(self, interface: str, options: LiveOptions, fanout_group: int | None) -> None:
        self.interface = interface
        self.sock = afpacket.open_socket(interface)
        self.mm: mmap.mmap | None = None
        try:
            self._setup(options, fanout_group)
        except BaseException:
            self.close()
            raise
        self.snaplen = options.snaplen
        self.block_size = options.block_size
        self.block_count = options.block_count
        self.block = 0  # block being read or waited for
        self.left = 0  # packets of that block not yet read
        self.offset = 0  # offset of the next packet in the mapping
        self.totals = [0, 0, 0]  # packets, drops, freezes since opening

    def _setup(self, options: LiveOptions, fanout_group: int | None) -> None:
        sock, name = self.sock, self.interface
        index, hwtype = afpacket.interface_info(sock, name)
        self.index = index
        if hwtype == afpacket.ARPHRD_LOOPBACK:  # else each packet comes twice, out and back in
            afpacket.ignore_outgoing(sock)
        if options.bpf is not None or options.snaplen < 65535:
            expression = options.bpf or ""
            on = name if expression.strip() else None
            afpacket.attach_filter(sock, compile_bpf(expression, options.snaplen, interface=on))
        sock.setsockopt(afpacket.SOL_PACKET, afpacket.PACKET_VERSION, afpacket.TPACKET_V3)
        frames = options.block_size // _FRAME_SIZE * options.block_count
        req = _REQ3.pack(
            options.block_size,
            options.block_count,
            _FRAME_SIZE,
            frames,
            options.block_timeout_ms,
            0,
            0,
        )
        length = options.block_size * options.block_count
        try:
            sock.setsockopt(afpacket.SOL_PACKET, afpacket.PACKET_RX_RING, req)
            self.mm = mmap.mmap(sock.fileno(), length, mmap.MAP_SHARED)
        except OSError as err:
            raise LiveCaptureError(
                f"cannot set up a {length} byte ring on {name}: {err.strerror or err}"
            ) from None
        if options.promiscuous:
            afpacket.set_promiscuous(sock, index)
        afpacket.bind_all(sock, name)
        if fanout_group is not None:
            afpacket.join_fanout(sock, fanout_group, options.fanout_mode)

    def drain(self, out: list[Frame], limit: int) -> int:
        """Append up to ``limit`` frames of the current block to ``out`` (none if it is not
        ready); the block goes back to the kernel once read to its end. Returns the count."""
        mm = self.mm
        if mm is None or limit <= 0:
            return 0
        base = self.block * self.block_size
        if not self.left:
            if not _BLOCK_STATUS.unpack_from(mm, base + 8)[0] & _TP_STATUS_USER:
                return 0
            self.left, first = _BLOCK_PACKETS.unpack_from(mm, base + 12)
            self.offset = base + first
        unpack = _PACKET.unpack_from
        off = self.offset
        count = min(self.left, limit)
        for _ in range(count):
            step, sec, nsec, snap, _wire, status, mac, _net, _hash, tci, tpid = unpack(mm, off)
            start = off + mac
            if status & _TP_STATUS_VLAN_VALID:
                if not status & _TP_STATUS_VLAN_TPID_VALID:
                    tpid = _ETH_P_8021Q
                data = mm[start : start + 12] + _VLAN_TAG.pack(tpid, tci)
                data += mm[start + 12 : start + min(snap, self.snaplen - 4)]
            else:
                data = mm[start : start + snap]
            out.append((sec * 1_000_000_000 + nsec, LINKTYPE_ETHERNET, data))
            off += step
        self.left -= count
        self.offset = off
        if not self.left:  # hand the block back to the kernel
            mm[base + 8 : base + 12] = _RELEASE
            self.block = (self.block + 1) % self.block_count
        return count

    def check_error(self) -> None:
        """Clear the socket's pending error (poll would report it forever otherwise).

        The kernel reports ENETDOWN when the interface goes down, and resumes by itself when it
        comes back up; an interface that was removed leaves the socket unbound for good, which
        raises ``LiveCaptureError``.
        """
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code != errno.ENETDOWN:
            return
        try:
            index = afpacket.interface_info(self.sock, self.interface)[0]
        except LiveCaptureError:
            index = -1
        if index != self.index:
            raise LiveCaptureError(f"interface {self.interface} was removed while capturing")

    def stats(self) -> dict[str, int]:
        """Cumulative kernel counters (the kernel resets its own on every read)."""
        if self.sock.fileno() >= 0:
            for i, value in enumerate(afpacket.read_stats_v3(self.sock)):
                self.totals[i] += value
        packets, drops, freezes = self.totals
        return {"received": packets, "dropped": drops, "freeze_queue": freezes}

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        self.sock.close()


class LiveCapture:
    """Frames from one or more interfaces, as ``(ts_ns, linktype, data)`` like the file readers.

    Opening needs root or CAP_NET_RAW (``drop_privileges`` may follow). Receive-only: the
    sockets are never written to. 802.1Q tags that the kernel took out of a frame are put back.
    """

    def __init__(self, options: LiveOptions) -> None:
        _check(options)
        self.options = options
        self._rings: list[_Ring] = []
        try:
            for k, name in enumerate(options.interfaces):
                group = None if options.fanout_group is None else options.fanout_group + k
                self._rings.append(_Ring(name, options, group))
        except BaseException:
            self.close()
            raise
        self._poll = select.poll()
        self._by_fd = {ring.sock.fileno(): ring for ring in self._rings}
        for fd in self._by_fd:
            self._poll.register(fd, select.POLLIN)
        self._next = 0  # ring read first next time, so that a busy interface cannot starve one

    def read(self, max_frames: int = 4096, timeout: float = 0.2) -> list[Frame]:
        """Up to ``max_frames`` frames; waits at most ``timeout`` seconds if none are ready.

        Returns ``[]`` when the wait ends with nothing, or once the capture is closed. An
        interface that goes down and up again is read on; one that is removed raises
        ``LiveCaptureError``.
        """
        out: list[Frame] = []
        if not self._rings:
            return out
        self._drain(out, max_frames)
        if out:
            return out
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            for fd, events in self._poll.poll(max(1, int(remaining * 1000))):
                if events & select.POLLERR:
                    self._by_fd[fd].check_error()
            self._drain(out, max_frames)
            if out:
                return out

    def _drain(self, out: list[Frame], limit: int) -> None:
        """Read ready blocks, one block of each interface in turn, until ``limit`` frames."""
        rings = self._rings
        n = len(rings)
        busy = True
        while busy and len(out) < limit:
            busy = False
            for i in range(n):
                if rings[(self._next + i) % n].drain(out, limit - len(out)):
                    busy = True
            self._next = (self._next + 1) % n

    def stats(self) -> dict[str, dict[str, int]]:
        """Per interface: cumulative ``received`` (packets that passed the filter, dropped ones
        included, as libpcap counts), ``dropped`` (no room in the ring) and ``freeze_queue``
        (times the ring was full)."""
        return {ring.interface: ring.stats() for ring in self._rings}

    def fileno(self) -> list[int]:
        """The sockets' descriptors, readable when a block is ready (for select/poll)."""
        return [ring.sock.fileno() for ring in self._rings]

    def close(self) -> None:
        """Close the sockets and unmap the rings; promiscuous mode ends with them."""
        for ring in self._rings:
            ring.close()
        self._rings = []
        self._by_fd = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _check(options: LiveOptions) -> None:
    """LiveCaptureError for options the kernel would refuse with a bare EINVAL."""
    if not options.interfaces:
        raise LiveCaptureError("no interface to capture on")
    if len(set(options.interfaces)) != len(options.interfaces):
        raise LiveCaptureError("an interface is named twice")
    if not 1 <= options.snaplen <= 262144:
        raise LiveCaptureError(f"snaplen {options.snaplen} is outside 1-262144")
    page = mmap.PAGESIZE
    if options.block_size < page or options.block_size % page:
        raise LiveCaptureError(f"block size {options.block_size} is not a multiple of {page}")
    if options.block_count < 1 or not 0 <= options.block_timeout_ms <= 60_000:
        raise LiveCaptureError("block count must be at least 1, block timeout 0-60000 ms")
    if options.fanout_group is not None and options.fanout_mode not in afpacket.FANOUT_MODES:
        raise LiveCaptureError(f"unknown fanout mode {options.fanout_mode!r}")


def drop_privileges(user: str) -> None:
    """Become ``user`` (its groups, group and user id) and give up every capability.

    Call it once the capture is open: the sockets keep working, nothing new can be opened.
    Also sets no_new_privs so that no executed program can gain privileges back.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LiveCaptureError(f"user {user!r} does not exist") from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    try:
        if sorted(os.getgroups()) != sorted(set(groups)):
            os.setgroups(groups)
        os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
        os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    except PermissionError as err:
        raise LiveCaptureError(f"cannot switch to user {user}: {err.strerror}") from None
    _clear_capabilities()


def _clear_capabilities() -> None:
    """Empty the effective, permitted, inheritable (hence ambient) capability sets."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two struct __user_cap_data_struct, all zero
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise LiveCaptureError(f"cannot drop capabilities: {os.strerror(err)}")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        err = ctypes.get_errno()
        raise LiveCaptureError(f"cannot set no_new_privs: {os.strerror(err)}")
