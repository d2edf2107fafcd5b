"""Check a capture with tshark: protocol PDUs, both directions, wire-sized frames, plant hosts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.plant import HOSTS, LabError
from lab.scenarios import Scenario

MAX_FRAME = 1514
#: classic pcap, microsecond timestamps, in either byte order
PCAP_MAGIC: dict[bytes, Literal["little", "big"]] = {
    b"\xd4\xc3\xb2\xa1": "little",
    b"\xa1\xb2\xc3\xd4": "big",
}
LINKTYPE_ETHERNET = 1


def tshark(path: Path, *args: str) -> str:
    """Run tshark on a capture and return its stdout."""
    if shutil.which("tshark") is None:
        raise LabError("needs tshark (apt-get install tshark)")
    proc = subprocess.run(
        ["tshark", "-n", "-r", str(path), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise LabError(f"tshark -r {path} {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def count_frames(path: Path, filters: list[str], options: tuple[str, ...] = ()) -> list[int]:
    """Frames matching each display filter, in one tshark pass (io,stat over the capture)."""
    for f in filters:
        if "," in f:
            raise LabError(f"display filter {f!r}: commas cannot pass through -z io,stat")
    out = tshark(path, *options, "-q", "-z", "io,stat,0," + ",".join(filters))
    totals = [0] * len(filters)
    for line in out.splitlines():
        if "<>" not in line:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
        for i in range(len(filters)):
            totals[i] += int(cells[2 * i])
    return totals


@dataclass
class Report:
    """What a verified capture holds."""

    path: Path
    packets: int
    size: int
    duration: float
    max_frame: int
    protocol_frames: int
    pdus: int
    #: "client -> server" label -> protocol frames in that direction
    directions: dict[str, int]
    #: requirement description -> matching frames
    required: dict[str, int]
    #: (MAC, IPv4) pairs seen as frame sources
    stations: list[tuple[str, str]]
    client_output: list[str] = field(default_factory=list)
    #: frames tshark finds malformed (only where the scenario allows it)
    malformed: int = 0


def _frame_table(path: Path, options: tuple[str, ...] = ()) -> list[list[str]]:
    fields = ["frame.len", "frame.time_relative", "eth.src", "ip.src", "arp.src.proto_ipv4"]
    fields += ["frame.protocols"]
    argv = [*options, "-T", "fields", "-E", "separator=\t"]
    for f in fields:
        argv += ["-e", f]
    return [line.split("\t") for line in tshark(path, *argv).splitlines()]


def verify(path: Path, scenario: Scenario) -> Report:
    """Verify a scenario's capture; raise LabError listing every failed check."""
    if not path.is_file():
        raise LabError(f"{path}: no such capture")
    if path.stat().st_size <= 24:
        raise LabError(f"{path}: capture holds no frames")
    problems = []
    head = path.read_bytes()[:24]
    order = PCAP_MAGIC.get(head[:4])
    if order is None:
        problems.append("not a classic microsecond pcap file")
    elif int.from_bytes(head[20:24], order) != LINKTYPE_ETHERNET:
        problems.append("link type is not Ethernet")
    options = scenario.tshark_args
    rows = _frame_table(path, options)
    known = {h.mac: h.ip for h in HOSTS.values()}
    impersonator = HOSTS[scenario.impersonator].mac if scenario.impersonator else ""
    stations = set()
    for _, _, mac, ip, arp_ip, protocols in rows:
        source_ip = ip or arp_ip
        if mac == impersonator and source_ip != known[mac]:
            source_ip = known[mac]  # a spoofed or forwarded frame: the sender is the station
        stations.add((mac, source_ip))
        if mac not in known or (source_ip and known[mac] != source_ip):
            problems.append(f"frame from {mac} {source_ip} is not a plant station")
        if not protocols.startswith(scenario.stacks):
            problems.append(f"unexpected {protocols} frame")
    max_frame = max((int(r[0]) for r in rows), default=0)
    if max_frame > MAX_FRAME:
        problems.append(f"largest frame is {max_frame} bytes (> {MAX_FRAME}): offloads leaked")

    proto = scenario.protocol
    # malformed frames outside the ones the scenario sends on purpose
    stray = f"_ws.malformed && !({scenario.malformed_ok})" if scenario.malformed_ok else ""
    labels, filters = [], [proto, "_ws.malformed", stray or "_ws.malformed"]
    for client, server in scenario.pairs():
        c, s = HOSTS[client].ip, HOSTS[server].ip
        for src, dst, label in ((c, s, f"{client} -> {server}"), (s, c, f"{server} -> {client}")):
            labels.append(label)
            filters.append(f"{proto} && ip.src == {src} && ip.dst == {dst}")
    filters += list(scenario.require.values())
    counts = count_frames(path, filters, options)
    protocol_frames, malformed, stray_malformed = counts[:3]
    directions = dict(zip(labels, counts[3 : 3 + len(labels)], strict=True))
    required = dict(zip(scenario.require, counts[3 + len(labels) :], strict=True))
    if protocol_frames == 0:
        problems.append(f"tshark finds no {proto} frames")
    if stray_malformed:
        where = " outside the deliberately malformed ones" if stray else ""
        problems.append(f"tshark finds {stray_malformed} malformed frames{where}")
    problems += [f"no {proto} frames {label}" for label, n in directions.items() if n == 0]
    problems += [
        f"missing: {what} ({scenario.require[what]})" for what, n in required.items() if not n
    ]
    pdu_lines = tshark(path, *options, "-Y", proto, "-T", "fields", "-e", scenario.pdu_field)
    pdus = sum(len([v for v in line.split(",") if v]) for line in pdu_lines.splitlines())
    if problems:
        raise LabError(f"{path}: " + "; ".join(dict.fromkeys(problems)))
    times = [float(r[1]) for r in rows] or [0.0]
    return Report(
        path=path,
        packets=len(rows),
        size=path.stat().st_size,
        duration=max(times) - min(times),
        max_frame=max_frame,
        protocol_frames=protocol_frames,
        pdus=pdus,
        directions=directions,
        required=required,
        stations=sorted(stations),
        malformed=malformed,
    )
