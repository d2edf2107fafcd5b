"""Peak RSS of otsentry against capture length: the full replay, or the no-dissector path.

    python benchmarks/rss_flatness.py [--packets 1000000 10000000] [--networks 256]
                                      [--variants fixed distinct] [--source FILE ...]
                                      [--mode replay|flows] [--rebuild] [--json OUT]

For each length, builds captures with ``make_capture.py`` (kept in ``benchmarks/data/`` between
runs unless ``--rebuild``) and runs, pinned to core 0, either ``otsentry replay`` as users run it
(``--mode replay``, the default: three dissectors, the rule pack, evidence, every event written)
or the null-dissector worker of ``workers.py`` (``--mode flows``). Two variants:

* ``fixed``: the copies cycle through ``--networks`` address blocks, so every length holds the
  same hosts and only the number of flows grows; a flat peak RSS here means memory does not grow
  with the capture;
* ``distinct``: one address block per copy (``bench_replay.py``'s capture), so the hosts grow
  with the length too, and so does the asset inventory, up to its cap.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import make_capture
from bench_replay import bench_replay
from runner import RunError, worker

from otsentry.capture import CaptureError

VARIANTS = ("fixed", "distinct")


def _table(results: list[dict[str, Any]]) -> str:
    header = (
        "variant",
        "packets",
        "seconds",
        "loop pkt/s",
        "flows",
        "peak flows",
        "assets",
        "peak RSS MB",
    )
    rows = [
        (
            r["variant"],
            f"{r['packets']:,}",
            f"{r['seconds']:,.1f}",
            f"{r['loop_pps']:,.0f}",
            f"{r['flows']:,}",
            f"{r['flows_peak']:,}",
            f"{r['assets']:,}",
            f"{r['peak_rss_mb']:,.1f}",
        )
        for r in results
    ]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*cells) for cells in rows]
    for variant in VARIANTS:
        runs = [r for r in results if r["variant"] == variant]
        if len(runs) > 1:
            first, last = runs[0], runs[-1]
            lines.append(
                f"{variant}: {last['packets'] / first['packets']:.0f}x the packets, "
                f"peak RSS {last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x"
            )
    return "\n".join(lines)


def _measure(mode: str, variant: str, path: Path, *, pin: bool) -> dict[str, Any]:
    if mode == "replay":
        row = bench_replay(path, pin)
        return {
            "variant": variant,
            "file": str(path),
            "packets": row.packets,
            "seconds": row.seconds,
            "loop_pps": row.loop_pps or 0.0,
            "peak_rss_mb": row.peak_rss_mb,
            "flows": row.extra["flows"],
            "flows_peak": row.extra["flows_peak"],
            "assets": row.extra["assets"],
        }
    run, report = worker("flows", path, pin=pin)
    return {
        "variant": variant,
        "file": str(path),
        "packets": report["packets"],
        "seconds": run.seconds,
        "loop_pps": report["packets"] / report["seconds"],
        "peak_rss_mb": run.peak_rss_mb,
        "flows": report["flows"],
        "flows_peak": report["flows_peak"],
        "assets": report["assets"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--packets", type=int, nargs="+", default=[1_000_000, 10_000_000], metavar="N"
    )
    parser.add_argument(
        "--networks", type=int, default=256, metavar="K", help="address blocks of 'fixed' [256]"
    )
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--source", type=Path, nargs="+", metavar="FILE", help="source captures [pcaps/*.pcap]"
    )
    parser.add_argument("--mode", choices=("replay", "flows"), default="replay")
    parser.add_argument("--rebuild", action="store_true", help="rebuild existing captures")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to core 0")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also save the results here")
    args = parser.parse_args(argv)
    sources = args.source or make_capture.default_sources()
    if args.networks < 1:
        parser.error("--networks must be positive")

    results: list[dict[str, Any]] = []
    for variant in args.variants:
        networks = args.networks if variant == "fixed" else 0
        for packets in args.packets:
            path = make_capture.default_out(packets, networks)
            if args.rebuild or not path.exists():
                if not sources:
                    parser.error("no pcaps/*.pcap yet: name source captures with --source")
                try:
                    summary = make_capture.build(sources, packets, path, networks=networks)
                except (CaptureError, ValueError, OSError) as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    return 1
                print(f"built {path} in {summary.seconds:.1f} s", file=sys.stderr)
            print(f"running {path} ...", file=sys.stderr, flush=True)
            try:
                results.append(_measure(args.mode, variant, path, pin=not args.no_pin))
            except RunError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1

    print(_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
