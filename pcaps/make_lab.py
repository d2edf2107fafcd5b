#!/usr/bin/env python3
"""Make the lab captures: real Modbus/TCP, S7comm and OPC UA stacks on a namespaced plant.

    sudo python pcaps/make_lab.py [--out pcaps/] [--only NAME ...] [--list] [--quick]
    python pcaps/make_lab.py --check [--out pcaps/]     # verify existing captures only
    python pcaps/make_lab.py --steps [--out pcaps/]     # write the attack captures' steps files

Each scenario builds a private plant network of Linux network namespaces around a bridge,
captures on the bridge with tcpdump (the SPAN port), runs real servers and clients
(pymodbus, python-snap7, asyncua) in the hosts' namespaces, verifies the capture with
tshark and writes <out>/<scenario>.pcap, and for an attack scenario <out>/<scenario>.steps.json
(where each attack step lies in the capture). See pcaps/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from lab.plant import LabError
from lab.runner import run_scenario
from lab.scenarios import SCENARIOS, Scenario
from lab.steps import check_steps, write_steps
from lab.verify import Report, verify

HERE = Path(__file__).resolve().parent
NEEDED_TOOLS = ("ip", "ethtool", "tcpdump", "tshark")
NEEDED_STACKS = ("pymodbus", "snap7", "asyncua")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (pcaps/)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="scenarios to make")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--quick", action="store_true", help="short client sessions (a few seconds each)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only verify the captures already in --out"
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="only write the steps files of the attack captures already in --out",
    )
    parser.add_argument("--run-role", metavar="ROLE", help=argparse.SUPPRESS)
    parser.add_argument("--role-args", default="{}", help=argparse.SUPPRESS)
    return parser


def _preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("needs root (network namespaces, tcpdump): run with sudo")
    missing = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError("needs " + ", ".join(missing) + " on PATH")
    stacks = [name for name in NEEDED_STACKS if importlib.util.find_spec(name) is None]
    if stacks:
        raise LabError(f"needs {', '.join(stacks)} for {sys.executable} (pip install -e .[dev])")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _describe(scenario: Scenario, report: Report, seconds: float | None) -> str:
    took = f" (made in {seconds:.1f} s)" if seconds is not None else ""
    lines = [
        f"{report.path}: {report.packets} packets, {report.size} bytes, "
        f"{report.duration:.1f} s, largest frame {report.max_frame} bytes{took}",
        f"  {scenario.protocol}: {report.protocol_frames} frames, {report.pdus} PDUs; "
        + ", ".join(f"{k} {v}" for k, v in report.directions.items())
        + (f"; {report.malformed} malformed on purpose" if report.malformed else ""),
        "  " + ", ".join(f"{k}: {v}" for k, v in report.required.items()),
        "  stations: " + ", ".join(f"{ip} {mac}" for mac, ip in report.stations),
    ]
    clients = [f"  {line}" for out in report.client_output for line in out.splitlines()]
    return "\n".join(lines + clients)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    if args.run_role:
        from lab.roles import run_role

        run_role(args.run_role, json.loads(args.role_args))
        return 0
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:18} {s.file:24} {s.duration:3.0f} s  {s.summary}")
        return 0
    names = args.only or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        if not (args.check or args.steps):
            _preflight()
        for name in names:
            scenario = SCENARIOS[name]
            pcap, steps_file = args.out / scenario.file, args.out / scenario.steps_file
            if args.steps:
                if scenario.steps:
                    write_steps(pcap, scenario, steps_file)
                    print(f"{steps_file}: {len(scenario.steps)} steps")
                continue
            if args.check:
                print(_describe(scenario, verify(pcap, scenario), None))
                if scenario.steps:
                    check_steps(pcap, scenario, steps_file)
                    print(f"  steps: {steps_file} matches")
                continue
            started = time.monotonic()
            report = run_scenario(scenario, args.out, quick=args.quick)
            if scenario.steps:
                write_steps(pcap, scenario, steps_file)
            print(_describe(scenario, report, time.monotonic() - started), flush=True)
    except LabError as exc:
        print(f"make_lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make_lab: interrupted; lab namespaces removed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
