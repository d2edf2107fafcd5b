"""tcpdump-syntax filter expressions compiled to classic BPF by libpcap (ctypes), else by tcpdump.

The result is the instruction array of a ``struct sock_fprog`` (8 bytes per instruction, host byte
order), ready for SO_ATTACH_FILTER. Compiled for a file (``pcap_open_dead``) by default, or, given
an interface, as libpcap compiles for a live capture on it: on Linux that is what makes ``vlan``
match, because the kernel has already moved the 802.1Q tag out of the frame into metadata.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import shutil
import struct
import subprocess

from otsentry.capture.afpacket import LiveCaptureError

_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
_INSN = struct.Struct("HBBI")  # struct sock_filter / struct bpf_insn
_LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")
_DLT_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6"}


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


@functools.cache
def _libpcap() -> ctypes.CDLL | None:
    """libpcap with the prototypes used here, or None when it is not installed."""
    names = [ctypes.util.find_library("pcap"), *_LIBPCAP_NAMES]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_create.restype = ctypes.c_void_p
        lib.pcap_create.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        for setter in ("pcap_set_snaplen", "pcap_set_buffer_size"):
            getattr(lib, setter).argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.pcap_activate.argtypes = [ctypes.c_void_p]
        lib.pcap_compile.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(_BpfProgram),
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_uint32,
        ]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_statustostr.restype = ctypes.c_char_p
        lib.pcap_statustostr.argtypes = [ctypes.c_int]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        return lib
    return None


def compile_bpf(
    expression: str, snaplen: int = 65535, linktype: int = 1, interface: str | None = None
) -> bytes:
    """Compile a tcpdump-syntax ``expression`` into sock_fprog instruction bytes.

    Accepted packets are cut to ``snaplen`` bytes by the program's return value. ``linktype``
    is the DLT of the frames (1, Ethernet). With ``interface`` the code is what a live capture
    on that interface gets (needs CAP_NET_RAW); ``linktype`` is then the interface's.
    Raises ``LiveCaptureError`` with libpcap's message for an expression it rejects.
    """
    lib = _libpcap()
    if lib is None:
        return _compile_with_tcpdump(expression, snaplen, linktype, interface)
    if interface is None:
        handle = lib.pcap_open_dead(linktype, snaplen)
        if not handle:
            raise LiveCaptureError(f"libpcap cannot compile for link type {linktype}")
    else:
        handle = _open_live(lib, interface, snaplen)
    try:
        return _compile(lib, handle, expression)
    finally:
        lib.pcap_close(handle)


def _open_live(lib: ctypes.CDLL, interface: str, snaplen: int) -> int:
    """An activated libpcap handle on ``interface`` (only compiled against, never read)."""
    errbuf = ctypes.create_string_buffer(512)
    handle: int | None = lib.pcap_create(interface.encode(), errbuf)
    if not handle:
        raise LiveCaptureError(f"libpcap: {interface}: {errbuf.value.decode(errors='replace')}")
    lib.pcap_set_snaplen(handle, snaplen)
    lib.pcap_set_buffer_size(handle, 1 << 16)
    status = lib.pcap_activate(handle)
    if status < 0:
        reason = lib.pcap_geterr(handle) or lib.pcap_statustostr(status)
        lib.pcap_close(handle)
        raise LiveCaptureError(f"libpcap: {interface}: {reason.decode(errors='replace')}")
    return handle


def _compile(lib: ctypes.CDLL, handle: int, expression: str) -> bytes:
    program = _BpfProgram()
    status = lib.pcap_compile(
        handle, ctypes.byref(program), expression.encode(), 1, _PCAP_NETMASK_UNKNOWN
    )
    if status != 0:
        reason = (lib.pcap_geterr(handle) or b"unknown error").decode(errors="replace")
        raise LiveCaptureError(f"bad BPF expression {expression!r}: {reason}")
    try:
        return ctypes.string_at(program.bf_insns, program.bf_len * _INSN.size)
    finally:
        lib.pcap_freecode(ctypes.byref(program))


def _compile_with_tcpdump(
    expression: str, snaplen: int, linktype: int, interface: str | None
) -> bytes:
    """The same program from ``tcpdump -ddd`` (decimal instructions), for hosts without libpcap's
    shared object where tcpdump is still present."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise LiveCaptureError("BPF filters need libpcap (libpcap0.8) or tcpdump; neither found")
    argv = [tcpdump, "-ddd", "-s", str(snaplen)]
    if interface is not None:
        argv += ["-i", interface]
    elif linktype in _DLT_NAMES:
        argv += ["-y", _DLT_NAMES[linktype]]
    else:
        raise LiveCaptureError(f"tcpdump cannot compile for link type {linktype}")
    done = subprocess.run([*argv, expression], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "Warning" not in line]
        reason = lines[-1].removeprefix("tcpdump: ") if lines else "tcpdump failed"
        raise LiveCaptureError(f"bad BPF expression {expression!r}: {reason}")
    rows = done.stdout.split("\n")
    count = int(rows[0])
    insns = [tuple(int(v) for v in row.split()) for row in rows[1 : count + 1]]
    return b"".join(_INSN.pack(*insn) for insn in insns)
