"""Packets per second of three live-capture loops on a veth pair, senders blasting at full speed.

Root only. Builds two network namespaces (``ots-lc-<pid>-*``, deleted at the end) joined by a
veth pair, blasts pre-built Ethernet frames from the peer side (Python AF_PACKET senders, or
``tcpreplay --topspeed`` with ``--sender tcpreplay``) and reads them on the sensor side with:

- ``recvmsg``: a plain AF_PACKET socket, one ``recvmsg_into`` per packet, PACKET_AUXDATA for the
  VLAN tag and SO_TIMESTAMPNS for the time (socket buffer as large as the ring);
- ``ring``: ``otsentry.capture.live.LiveCapture`` (TPACKET_V3 ring, read block by block);
- ``scapy``: scapy's ``L2ListenSocket.recv_raw`` (raw bytes, no dissection).

Each loop only turns packets into ``(ts_ns, linktype, data)`` frames and counts them. Reported
per loop: frames read, frames per second while reading, kernel drops, frames offered, and the
reader's CPU time per frame (which does not depend on how much CPU the senders leave it).

Usage: ``sudo python benchmarks/bench_live.py [--seconds 3] [--senders 1] [--size 64]
[--sender python|tcpreplay] [--loops ring recvmsg scapy] [--repeat 1] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otsentry.capture import afpacket
from otsentry.capture.live import LiveCapture, LiveOptions
from tests.capture.live_helpers import Netns, inside

PEER_IF, SENSOR_IF = "lcbp", "lcbs"
RING_BYTES = 64 << 20  # the ring's default: 64 blocks of 1 MiB
Frames = list[tuple[int, int, bytes]]


def make_frames(size: int, count: int = 256) -> list[bytes]:
    """Ethernet/IPv4/UDP frames of ``size`` bytes (at least 60), ``count`` different flows."""
    frames = []
    for i in range(count):
        payload = bytes(max(0, size - 42))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), i, 0, 64, 17, 0,
                         bytes([10, 9, 0, 1]), bytes([10, 9, 1, i]))  # fmt: skip
        udp = struct.pack("!HHHH", 40000 + i, 502, 8 + len(payload), 0)
        eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
        frames.append(eth + ip + udp + payload)
    return frames


# --- senders ------------------------------------------------------------------------------------


def python_sender(ns: str, frames: list[bytes], seconds: float, out: Connection) -> None:
    """Send ``frames`` round and round for ``seconds`` from an AF_PACKET socket in ``ns``."""
    with inside(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((PEER_IF, 0))
    send = sock.send
    sent = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        for frame in frames:
            try:
                send(frame)
            except BlockingIOError:
                continue
        sent += len(frames)
    out.send(sent)


def tcpreplay_sender(ns: str, frames: list[bytes], seconds: float, out: Connection) -> None:
    """``tcpreplay --topspeed`` of a pcap of ``frames`` for ``seconds``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.pcap"
        with path.open("wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for frame in frames * 64:
                f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
        argv = ["ip", "netns", "exec", ns, "tcpreplay", "--topspeed", "-q", "--loop", "0"]
        argv += ["--duration", str(round(seconds)), "-i", PEER_IF, str(path)]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
        )
    sent = 0
    for line in done.stdout.splitlines():
        if line.strip().startswith("Actual:"):
            sent = int(line.split()[1])
    out.send(sent)


# --- capture loops ------------------------------------------------------------------------------


Loop = tuple[Callable[[], Frames], Callable[[], int]]  # read frames, kernel drops since last call


def loop_ring() -> Loop:
    """LiveCapture, the ring reader otsentry ships."""
    cap = LiveCapture(LiveOptions((SENSOR_IF,), promiscuous=False))
    seen = [0]

    def drops() -> int:
        total = cap.stats()[SENSOR_IF]["dropped"]
        new, seen[0] = total - seen[0], total
        return new

    return lambda: cap.read(4096, 0.2), drops


def loop_recvmsg() -> Loop:
    """One recvmsg_into per packet, timestamps and VLAN tags from ancillary data."""
    sock = afpacket.open_socket(SENSOR_IF)
    sock.setsockopt(socket.SOL_SOCKET, 33, RING_BYTES)  # SO_RCVBUFFORCE
    sock.setsockopt(afpacket.SOL_PACKET, afpacket.PACKET_AUXDATA, 1)
    sock.setsockopt(socket.SOL_SOCKET, afpacket.SO_TIMESTAMPNS, 1)
    afpacket.bind_all(sock, SENSOR_IF)
    sock.setblocking(False)
    buf = bytearray(65536)
    view = memoryview(buf)
    anc = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(20)
    aux = struct.Struct("IIIHHHH")
    tsns = struct.Struct("qq")
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)

    def read() -> Frames:
        out: Frames = []
        if not poll.poll(200):
            return out
        recv = sock.recvmsg_into
        for _ in range(4096):
            try:
                n, ancdata, _flags, _addr = recv([buf], anc)
            except BlockingIOError:
                break
            ts = 0
            data = bytes(view[:n])
            for level, _kind, value in ancdata:
                if level == socket.SOL_SOCKET:
                    sec, nsec = tsns.unpack(value)
                    ts = sec * 1_000_000_000 + nsec
                elif level == afpacket.SOL_PACKET:
                    status, _len, _snap, _mac, _net, tci, tpid = aux.unpack(value)
                    if status & 0x10:
                        tag = struct.pack("!HH", tpid if status & 0x40 else 0x8100, tci)
                        data = data[:12] + tag + data[12:]
            out.append((ts, 1, data))
        return out

    return read, lambda: afpacket.read_stats(sock)[1]


def loop_scapy() -> Loop:
    """scapy's L2ListenSocket, raw bytes only (no dissection)."""
    import logging

    from scapy.arch.linux import L2ListenSocket

    logging.getLogger("scapy").setLevel(logging.ERROR)  # "unable to guess type" per socket

    sock = L2ListenSocket(iface=SENSOR_IF, promisc=False)
    sock.ins.setsockopt(socket.SOL_SOCKET, 33, RING_BYTES)
    fd = sock.ins.fileno()

    def read() -> Frames:
        out: Frames = []
        if select.select([fd], [], [], 0.2)[0]:
            for _ in range(4096):
                _cls, data, ts = sock.recv_raw()
                if data is not None:
                    out.append((int((ts or 0.0) * 1e9), 1, data))
                if not select.select([fd], [], [], 0)[0]:
                    break
        return out

    return read, lambda: afpacket.read_stats(sock.ins)[1]


def _run(read: Callable[[], Frames], stop: float, drops: Callable[[], int]) -> dict[str, Any]:
    """Read until ``stop`` (monotonic) and then until quiet; frames, time, CPU time, drops."""
    count = 0
    first = last = 0.0
    drops()  # the kernel's counter from zero
    dropped = 0
    cpu = time.process_time()
    while True:
        frames = read()
        now = time.monotonic()
        if frames:
            if not count:
                first = now
            count += len(frames)
            last = now
        elif now > stop:
            break
        dropped += drops()
    cpu = time.process_time() - cpu
    return {"read": count, "seconds": last - first, "cpu": cpu, "dropped": dropped}


LOOPS: dict[str, Callable[[], Loop]] = {
    "ring": loop_ring,
    "recvmsg": loop_recvmsg,
    "scapy": loop_scapy,
}


def reader(ns: str, name: str, ready: Connection, go: Connection, out: Connection) -> None:
    """Child process: open loop ``name`` in ``ns``, say ready, read until the stop time."""
    with inside(ns):
        read, drops = LOOPS[name]()
    ready.send(True)
    stop = go.recv()
    out.send(_run(read, stop, drops))


def measure(net: Netns, name: str, frames: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """One run of loop ``name`` against ``args.senders`` senders for ``args.seconds``."""
    ctx = mp.get_context("fork")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    go_r, go_w = ctx.Pipe(duplex=False)
    res_r, res_w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=reader, args=(net.sensor, name, ready_w, go_r, res_w))
    child.start()
    ready_r.recv()
    go_w.send(time.monotonic() + args.seconds + 0.3)
    sender = tcpreplay_sender if args.sender == "tcpreplay" else python_sender
    pipes, procs = [], []
    for _ in range(args.senders):
        r, w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=sender, args=(net.peer, frames, args.seconds, w))
        proc.start()
        pipes.append(r)
        procs.append(proc)
    offered = sum(r.recv() for r in pipes)
    for proc in procs:
        proc.join()
    got = res_r.recv()
    child.join()
    count, seconds = got["read"], got["seconds"]
    return {
        "loop": name,
        "offered": offered,
        "read": count,
        "dropped": got["dropped"],
        "seconds": round(seconds, 3),
        "read_per_s": round(count / seconds) if seconds else 0,
        "offered_per_s": round(offered / args.seconds),
        "cpu_us_per_frame": round(got["cpu"] / count * 1e6, 3) if count else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="frame size in bytes")
    parser.add_argument("--sender", choices=("python", "tcpreplay"), default="python")
    parser.add_argument("--loops", nargs="+", choices=tuple(LOOPS), default=list(LOOPS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_live.py needs root (network namespaces, AF_PACKET)")
    if args.sender == "tcpreplay" and not shutil.which("tcpreplay"):
        sys.exit("tcpreplay is not installed (apt-get install tcpreplay)")
    frames = make_frames(args.size)
    net = Netns()
    rows = []
    try:
        net.link(PEER_IF, SENSOR_IF)
        for _ in range(args.repeat):
            for name in args.loops:
                row = measure(net, name, frames, args)
                rows.append(row)
                print(
                    f"{name:8} read {row['read']:>9} in {row['seconds']:6.2f} s "
                    f"= {row['read_per_s']:>8}/s  dropped {row['dropped']:>9}  "
                    f"offered {row['offered']:>9} ({row['offered_per_s']}/s)  "
                    f"CPU {row['cpu_us_per_frame']} us/frame",
                    flush=True,
                )
    finally:
        net.close()
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
