"""Where each attack step of a scenario lies in its capture: the steps file beside the pcap.

A scenario's steps (``Scenario.steps``) are the actor's actions in order, each found by the
display filter of its first frame. This module finds them in a capture with tshark and writes
``<capture>.steps.json``: per step its first and last frame of the actor, their times (epoch
and offset from the capture's first frame) and how many of the actor's frames it holds. A
benchmark counts a step as detected when an alert's triggering frame or time falls inside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lab.plant import HOSTS, LabError
from lab.scenarios import Scenario
from lab.verify import tshark

#: format of the steps file
STEPS_FORMAT = 1


def _rows(path: Path, scenario: Scenario, display_filter: str, *names: str) -> list[list[str]]:
    args = [*scenario.tshark_args, "-Y", display_filter, "-T", "fields", "-E", "separator=\t"]
    for name in names:
        args += ["-e", name]
    return [line.split("\t") for line in tshark(path, *args).splitlines() if line]


def actor_filter(scenario: Scenario) -> str:
    """Display filter of every frame from or to the scenario's actor."""
    host = HOSTS[scenario.actor]
    return f"(eth.addr == {host.mac} || ip.addr == {host.ip})"


def find_steps(path: Path, scenario: Scenario) -> dict[str, Any]:
    """The steps file's content for the capture at path (fails when a step is not found)."""
    if not scenario.steps or not scenario.actor:
        raise LabError(f"{scenario.name} defines no attack steps")
    actor = actor_filter(scenario)
    first = _rows(path, scenario, "frame.number == 1", "frame.time_epoch")
    if not first:
        raise LabError(f"{path}: no frames")
    t0 = float(first[0][0])
    frames: list[tuple[int, float, str]] = [
        (int(n), float(t), stream)
        for n, t, stream in _rows(
            path, scenario, actor, "frame.number", "frame.time_epoch", "tcp.stream"
        )
    ]
    if not frames:
        raise LabError(f"{path}: no frames of {scenario.actor}")
    stream_start: dict[str, int] = {}
    for n, _, stream in frames:
        if stream:
            stream_start.setdefault(stream, n)
    by_number = {n: (t, stream) for n, t, stream in frames}
    starts: list[int] = []
    previous = 0
    for step in scenario.steps:
        where = f"{actor} && ({step.start})" if step.start else actor
        candidates = [int(r[0]) for r in _rows(path, scenario, where, "frame.number")]
        after = [n for n in candidates if n > previous]
        if not after:
            raise LabError(f"{path}: step {step.name!r} not found ({where})")
        marker = after[0]
        # a step that opens a TCP connection starts with the connection's SYN
        opened = stream_start.get(by_number[marker][1], marker)
        start = opened if previous < opened < marker else marker
        starts.append(start)
        # a step found by a frame of no connection (ARP) owns the connection it opens next
        previous = marker
        if not by_number[marker][1]:
            previous = next((n for n, _, st in frames if n > marker and st), marker)
    out = []
    for i, step in enumerate(scenario.steps):
        end = starts[i + 1] if i + 1 < len(starts) else frames[-1][0] + 1
        own = [(n, t) for n, t, _ in frames if starts[i] <= n < end]
        (n1, t1), (n2, t2) = own[0], own[-1]
        out.append(
            {
                "step": i + 1,
                "name": step.name,
                "summary": step.summary,
                "first_frame": n1,
                "last_frame": n2,
                "frames": len(own),
                "start": round(t1, 6),
                "end": round(t2, 6),
                "start_offset": round(t1 - t0, 6),
                "end_offset": round(t2 - t0, 6),
            }
        )
    host = HOSTS[scenario.actor]
    return {
        "format": STEPS_FORMAT,
        "capture": Path(scenario.file).name,
        "scenario": scenario.name,
        "actor": {"host": scenario.actor, "ip": host.ip, "mac": host.mac},
        "steps": out,
    }


def render(steps: dict[str, Any]) -> str:
    """The steps file's text (stable: same capture, same bytes)."""
    return json.dumps(steps, indent=2) + "\n"


def write_steps(path: Path, scenario: Scenario, out: Path) -> dict[str, Any]:
    """Find the steps in the capture at path and write them to out."""
    steps = find_steps(path, scenario)
    out.write_text(render(steps))
    return steps


def check_steps(path: Path, scenario: Scenario, steps_file: Path) -> None:
    """Fail unless steps_file holds what the capture at path gives."""
    if not steps_file.is_file():
        raise LabError(f"{steps_file} is missing: run make_lab.py --steps")
    if steps_file.read_text() != render(find_steps(path, scenario)):
        raise LabError(f"{steps_file} does not match {path}: run make_lab.py --steps")
