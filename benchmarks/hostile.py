"""The hostile-capture scenarios of tests/hostile at full size: per scenario the packets, the
replay's seconds, its peak RSS and the stats that show what was evicted, dropped or flagged.

    python benchmarks/hostile.py [--scale 1.0] [--keep DIR]

Full size: a SYN flood from 300,000 sources (flow cap 100,000, the default), a million
unanswered Modbus requests over 200 connections, 200 MB behind a 4 GB OPC UA size claim, OPC UA
values nested 100,000 deep, byte-flipped copies of every lab capture. ``--scale`` shrinks the
counts (0.1 is about the CI sizes)."""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.captures import (
    Run,
    conflicting_retransmissions,
    deep_opcua,
    flip_bytes,
    huge_opcua_claim,
    limits_config,
    open_transactions,
    replay,
    syn_flood,
)

LAB = Path(__file__).resolve().parents[1] / "pcaps"


def _syn(stats: dict[str, Any], run: Run) -> str:
    return (
        f"flows {stats['flows']}, peak {stats['flows_peak']}, ended {stats['flows_ended']}; "
        f"assets {stats['assets']} (evicted {stats['assets_evicted']}); correlation groups "
        f"{stats['detection']['engine']['correlation_groups']} (evicted "
        f"{stats['detection']['engine']['correlation_groups_evicted']})"
    )


def _transactions(stats: dict[str, Any], run: Run) -> str:
    anomalies: Counter[str] = Counter()
    events = 0
    for event in run.events():
        events += 1
        anomalies.update(event["otsentry"]["modbus"].get("anomalies", ()))
    return f"events {events}, anomalies {dict(anomalies)}"


def _tcp(stats: dict[str, Any], run: Run) -> str:
    keys = ("conflicts", "retransmissions", "overlaps", "overflows", "bytes_buffered")
    return ", ".join(f"{k} {stats['tcp'][k]}" for k in keys)


def _opcua(stats: dict[str, Any], run: Run) -> str:
    found: Counter[str] = Counter()
    for event in run.events():
        record = event["otsentry"].get("opcua", {})
        found.update(record.get("anomalies", ()))
        if "decode_error" in record:
            found[record["decode_error"][:40]] += 1
    return f"{_tcp(stats, run)}; {dict(found)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="keep captures and outputs here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="otsentry-hostile-"))
    work.mkdir(parents=True, exist_ok=True)

    def n(full: int) -> int:
        return max(1, int(full * args.scale))

    scenarios: list[tuple[str, Callable[[Path], int], dict[str, float], Any]] = [
        ("syn flood", lambda p: syn_flood(p, n(300_000)), {"max_flows": 100_000}, _syn),
        (
            "open modbus transactions",
            lambda p: open_transactions(p, n(1_000_000), 200),
            {"max_open_transactions_per_flow": 500},
            _transactions,
        ),
        ("conflicting retransmissions", lambda p: conflicting_retransmissions(p, 3000), {}, _tcp),
        ("4 GB opc ua size claim", lambda p: huge_opcua_claim(p, n(200)), {}, _opcua),
        ("deep opc ua nesting", lambda p: deep_opcua(p, n(100_000)), {}, _opcua),
    ]
    print(f"{'scenario':30} {'packets':>9} {'seconds':>8} {'peak MB':>8}  stats")
    for i, (name, build, limits, describe) in enumerate(scenarios):
        capture = work / f"s{i}.pcap"
        packets = build(capture)
        config = limits_config(work, **limits) if limits else None
        run = replay(capture, work / f"out{i}", config=config)
        status = "" if run.rc == 0 else f" EXIT {run.rc}: {run.stderr.strip()[-200:]}"
        line = f"{name:30} {packets:>9} {run.seconds:>8.2f} {run.peak_rss_mb:>8.0f}"
        print(f"{line}  {describe(run.stats, run)}{status}", flush=True)
        capture.unlink()
    rng = random.Random(10)
    for path in sorted(LAB.glob("*.pcap")):
        data = path.read_bytes()
        flipped = work / f"flipped-{path.name}"
        flipped.write_bytes(flip_bytes(data, len(data) // 100, rng))
        run = replay(flipped, work / f"out-{path.stem}")
        stats = run.stats
        errors = stats["parse_errors"]
        line = f"{'flipped ' + path.stem:30} {stats['packets']:>9} {run.seconds:>8.2f}"
        print(
            f"{line} {run.peak_rss_mb:>8.0f}  exit {run.rc}, anomalies {errors['by_protocol']}, "
            f"dissector exceptions {errors['dissector_exceptions']}",
            flush=True,
        )
    if args.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
