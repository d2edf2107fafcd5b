"""pcapng files: sections in either byte order, interfaces with their own link type and clock.

Packets come from Enhanced, Simple and (obsolete) Packet Blocks; every other block type is
skipped. A new Section Header Block starts a new section: its own byte order and no interfaces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from struct import Struct

from otsentry.capture.base import CaptureError, FileReader, FileSource, Frame, SourceError

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
BT_SHB = 0x0A0D0D0A
BT_IDB = 1
BT_OPB = 2  # obsolete Packet Block
BT_SPB = 3
BT_EPB = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
#: largest block accepted (Wireshark's limit too)
MAX_BLOCK_LEN = 16 * 1024 * 1024
#: bytes asked of the file per read
CHUNK_SIZE = 1 << 20

OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
DEFAULT_TSRESOL = 6  # microseconds

_LE_BOM = Struct("<I")


class _Section:
    """Precompiled structs for one byte order."""

    __slots__ = ("epb", "hdr", "i64", "idb", "opb", "opt", "u32", "version")

    def __init__(self, order: str) -> None:
        self.epb = Struct(order + "6I4x")  # type, length, interface, ts high, ts low, caplen
        self.hdr = Struct(order + "II")
        self.u32 = Struct(order + "I")
        self.version = Struct(order + "HH")
        self.idb = Struct(order + "HHI")  # link type, reserved, snaplen
        self.opt = Struct(order + "HH")
        self.i64 = Struct(order + "q")
        self.opb = Struct(order + "HHIIII")  # interface, drops, ts high, ts low, caplen, wirelen


_SECTIONS = {"<": _Section("<"), ">": _Section(">")}


def _byte_order(bom: int) -> str | None:
    """The struct byte order of a section whose byte-order magic reads ``bom`` little-endian."""
    if bom == BYTE_ORDER_MAGIC:
        return "<"
    if bom == 0x4D3C2B1A:
        return ">"
    return None


def ts_scale(tsresol: int) -> tuple[int, int]:
    """(mul, div) turning a timestamp in ``if_tsresol`` units into nanoseconds: ts * mul // div."""
    units = 1 << (tsresol & 0x7F) if tsresol & 0x80 else 10**tsresol
    if 1_000_000_000 % units == 0:
        return 1_000_000_000 // units, 1
    return 1_000_000_000, units


class PcapngReader(FileReader):
    """Frames of a pcapng file, in file order, each with its interface's link type.

    Timestamps honour ``if_tsresol`` (powers of 10 or 2) and ``if_tsoffset``. Simple Packet
    Blocks carry no timestamp: their frames take the timestamp of the packet before them (0 at
    the start of the file). A broken block raises ``CaptureError`` at its offset after every
    frame before it has been yielded.
    """

    def __init__(
        self, source: FileSource | str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE
    ) -> None:
        src = source if isinstance(source, FileSource) else FileSource(source)
        self._src = src
        self._chunk_size = max(chunk_size, 1)
        self._started = False
        self.path = src.path
        self.size = src.size
        self._empty = False
        try:
            self._check_start()
        except BaseException:
            src.close()
            raise

    def _check_start(self) -> None:
        try:
            head = self._src.peek(12)
        except SourceError as err:
            raise CaptureError(self.path, 0, err.reason) from None
        if not head:
            self._empty = True
            return
        if head[:4] != PCAPNG_MAGIC:
            raise CaptureError(self.path, 0, f"not a pcapng file (magic 0x{head[:4].hex()})")
        if len(head) < 12:
            raise CaptureError(self.path, 0, f"truncated block header: {len(head)} of 12 bytes")
        bom = _LE_BOM.unpack_from(head, 8)[0]
        if _byte_order(bom) is None:
            raise CaptureError(self.path, 0, f"bad byte-order magic 0x{head[8:12].hex()}")

    @property
    def position(self) -> int:
        """Bytes of the file on disk consumed so far (0..size)."""
        return self._src.position

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError(f"{self.path}: a capture reader can be iterated only once")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        src = self._src
        if self._empty:
            src.close()
            return
        path = self.path
        read = src.read
        chunk = self._chunk_size
        max_block = MAX_BLOCK_LEN
        sect = _SECTIONS["<"]
        epb_unpack = sect.epb.unpack_from
        u32_unpack = sect.u32.unpack_from
        # per interface of the current section: (link type, mul, div, offset ns), snaplen
        ifaces: list[tuple[int, int, int, int]] = []
        snaplens: list[int] = []
        nif = 0
        last_ts = 0
        buf = b""
        base = 0  # stream offset of buf[0]
        pos = end = 0
        try:
            while True:
                # Fast path: a complete, well-formed Enhanced Packet Block.
                if pos <= end - 28:
                    btype, blen, iface, hi, lo, caplen = epb_unpack(buf, pos)
                    if btype == 6:
                        nxt = pos + blen
                        if (
                            nxt <= end
                            and caplen + 32 <= blen <= max_block
                            and not blen & 3
                            and iface < nif
                            and u32_unpack(buf, nxt - 4)[0] == blen
                        ):
                            lt, mul, div, off = ifaces[iface]
                            if div == 1:
                                last_ts = ((hi << 32) | lo) * mul + off
                            else:
                                last_ts = ((hi << 32) | lo) * mul // div + off
                            start = pos + 28
                            yield (last_ts, lt, buf[start : start + caplen])
                            pos = nxt
                            continue

                # Slow path: any block, or the reason an EPB was refused, or more data.
                have = end - pos
                need = 8
                whole = False  # need counts the whole block, not just its header
                if have >= 8:
                    btype, blen = sect.hdr.unpack_from(buf, pos)
                    if btype == BT_SHB:
                        need = 12
                        if have >= 12:
                            order = _byte_order(_LE_BOM.unpack_from(buf, pos + 8)[0])
                            if order is None:
                                bom = buf[pos + 8 : pos + 12].hex()
                                raise CaptureError(
                                    path, base + pos, f"bad byte-order magic 0x{bom}"
                                )
                            sect = _SECTIONS[order]
                            epb_unpack = sect.epb.unpack_from
                            u32_unpack = sect.u32.unpack_from
                            blen = sect.hdr.unpack_from(buf, pos)[1]
                    if need == 8 or have >= 12:
                        if blen & 3:
                            raise CaptureError(
                                path,
                                base + pos,
                                f"block total length {blen} is not a multiple of 4",
                            )
                        if blen < 12:
                            raise CaptureError(
                                path, base + pos, f"block total length {blen} is below 12 bytes"
                            )
                        if blen > max_block:
                            raise CaptureError(
                                path,
                                base + pos,
                                f"block length {blen} exceeds {max_block}-byte limit",
                            )
                        need = blen
                        whole = True
                if have >= need:
                    # A whole block is in the window.
                    nxt = pos + blen
                    trailer = u32_unpack(buf, nxt - 4)[0]
                    if trailer != blen:
                        raise CaptureError(
                            path,
                            base + pos,
                            f"block total length mismatch: {blen} at start, {trailer} at end",
                        )
                    if btype in (BT_EPB, BT_OPB):
                        name = "EPB" if btype == BT_EPB else "OPB"
                        if blen < 32:
                            raise CaptureError(path, base + pos, f"{name} too short: {blen} bytes")
                        if btype == BT_EPB:
                            iface, hi, lo, caplen = epb_unpack(buf, pos)[2:6]
                        else:
                            iface, _drops, hi, lo, caplen, _wirelen = sect.opb.unpack_from(
                                buf, pos + 8
                            )
                        if iface >= nif:
                            raise CaptureError(
                                path,
                                base + pos,
                                f"{name} references interface {iface} but only {nif} defined",
                            )
                        if caplen + 32 > blen:
                            raise CaptureError(
                                path,
                                base + pos,
                                f"{name} captured length {caplen} exceeds its {blen}-byte block",
                            )
                        lt, mul, div, off = ifaces[iface]
                        start = pos + 28
                        last_ts = ((hi << 32) | lo) * mul // div + off
                        yield (last_ts, lt, buf[start : start + caplen])
                    elif btype == BT_SPB:
                        if not nif:
                            raise CaptureError(path, base + pos, "SPB with no interface defined")
                        if blen < 16:
                            raise CaptureError(path, base + pos, f"SPB too short: {blen} bytes")
                        caplen = u32_unpack(buf, pos + 8)[0]
                        snaplen = snaplens[0]
                        if snaplen and caplen > snaplen:
                            caplen = snaplen
                        if caplen + 16 > blen:
                            raise CaptureError(
                                path,
                                base + pos,
                                f"SPB packet length {caplen} exceeds its {blen}-byte block",
                            )
                        start = pos + 12
                        yield (last_ts, ifaces[0][0], buf[start : start + caplen])
                    elif btype == BT_IDB:
                        if blen < 20:
                            raise CaptureError(path, base + pos, f"IDB too short: {blen} bytes")
                        linktype, _reserved, snaplen = sect.idb.unpack_from(buf, pos + 8)
                        mul, div, off = self._idb_options(sect, buf, pos + 16, nxt - 4, base)
                        ifaces.append((linktype, mul, div, off))
                        snaplens.append(snaplen)
                        nif += 1
                    elif btype == BT_SHB:
                        if blen < 28:
                            raise CaptureError(path, base + pos, f"SHB too short: {blen} bytes")
                        major, minor = sect.version.unpack_from(buf, pos + 12)
                        if major != 1:
                            raise CaptureError(
                                path, base + pos, f"unsupported pcapng version {major}.{minor}"
                            )
                        ifaces = []
                        snaplens = []
                        nif = 0
                    pos = nxt
                    continue

                # Refill the window with at least the rest of the current block.
                try:
                    data = read(max(chunk, need - have))
                except SourceError as err:
                    raise CaptureError(path, base + pos, err.reason) from None
                if not data:
                    if not have:
                        return
                    what = "block" if whole else "block header"
                    raise CaptureError(
                        path, base + pos, f"truncated {what}: {have} of {need} bytes"
                    )
                buf = buf[pos:] + data if have else data
                base += pos
                pos = 0
                end = len(buf)
        finally:
            src.close()

    def _idb_options(
        self, sect: _Section, buf: bytes, start: int, stop: int, base: int
    ) -> tuple[int, int, int]:
        """(mul, div, offset ns) of an interface from its IDB options in ``buf[start:stop]``."""
        tsresol = DEFAULT_TSRESOL
        offset = 0
        p = start
        while p + 4 <= stop:
            code, olen = sect.opt.unpack_from(buf, p)
            if code == OPT_ENDOFOPT:
                break
            value = p + 4
            if value + olen > stop:
                raise CaptureError(
                    self.path, base + start - 16, f"IDB option {code} overruns its block"
                )
            if code == OPT_IF_TSRESOL and olen >= 1:
                tsresol = buf[value]
            elif code == OPT_IF_TSOFFSET and olen == 8:
                offset = sect.i64.unpack_from(buf, value)[0]
            p = value + olen + (-olen & 3)
        mul, div = ts_scale(tsresol)
        return mul, div, offset * 1_000_000_000
