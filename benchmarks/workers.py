"""One measured task per process, for ``bench_replay.py`` and ``rss_flatness.py``.

    python benchmarks/workers.py MODE FILE [--limit N] [--profile OUT.prof]

Modes:

* ``read``    — otsentry's capture reader alone;
* ``decode``  — reader + ``Decoder.decode``;
* ``flows``   — reader + decode + flow table + TCP reassembly through ``Pipeline.run``, with a
  null dissector on ports 502, 102 and 4840 that consumes every byte it is given;
* ``scapy``   — ``scapy.utils.PcapReader`` (each record dissected from ``Ether``);
* ``dpkt``    — ``dpkt.pcap.Reader`` + ``dpkt.ethernet.Ethernet``;
* ``pyshark`` — ``pyshark.FileCapture`` (tshark's PDML), one attribute read per packet.

Prints one JSON line: the packets handled, the seconds spent in the packet loop and, for
``flows``, the flow counters of the run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from otsentry.capture import CaptureError, Frame, merge_frames, open_capture
from otsentry.config import Config
from otsentry.decode import Decoder
from otsentry.dissect.base import Buffer, Dissector, DissectorSpec, FlowContext
from otsentry.dissect.registry import DissectorRegistry
from otsentry.pipeline import Pipeline

NULL_PORTS = (502, 102, 4840)


class NullDissector:
    """Consumes whatever it is given, so reassembly runs for every payload on its ports."""

    __slots__ = ()

    def parse(self, data: Buffer, start: int, from_client: bool, ts: int) -> int:
        return len(data) - start

    def gap(self, from_client: bool, ts: int) -> None:
        return None

    def close(self, ts: int) -> None:
        return None


_NULL = NullDissector()


def _null_factory(ctx: FlowContext) -> Dissector:
    return _NULL


NULL_SPEC = DissectorSpec(name="null", ports=NULL_PORTS, factory=_null_factory)


def _frames(path: Path, limit: int | None) -> Iterator[Frame]:
    def on_error(err: CaptureError) -> None:
        print(f"error: {err}", file=sys.stderr)

    frames = merge_frames([open_capture(path)], False, on_error)
    return frames if limit is None else islice(frames, limit)


def run_read(path: Path, limit: int | None) -> dict[str, Any]:
    n = 0
    began = time.perf_counter()
    for _ in _frames(path, limit):
        n += 1
    return {"packets": n, "seconds": time.perf_counter() - began}


def run_decode(path: Path, limit: int | None) -> dict[str, Any]:
    decode = Decoder().decode
    n = 0
    began = time.perf_counter()
    for ts, linktype, data in _frames(path, limit):
        n += 1
        decode(linktype, data, ts)
    return {"packets": n, "seconds": time.perf_counter() - began}


def run_flows(path: Path, limit: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="otsentry-bench-") as out:
        pipeline = Pipeline(Config(), Path(out), registry=DissectorRegistry([NULL_SPEC]))
        began = time.perf_counter()
        pipeline.run(_frames(path, limit))
        loop = time.perf_counter() - began
        stats = pipeline.finish()
    return {
        "packets": stats["packets"],
        "seconds": loop,
        "finish_seconds": time.perf_counter() - began - loop,
        "flows": stats["flows"],
        "flows_peak": stats["flows_peak"],
        "flows_by_protocol": stats["flows_by_protocol"],
        "assets": stats["assets"],
        "tcp": stats["tcp"],
    }


def run_scapy(path: Path, limit: int | None) -> dict[str, Any]:
    # loading the layers maps link type 1 to Ether and binds IP, TCP and UDP below it
    import scapy.layers.inet
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import PcapReader

    n = 0
    began = time.perf_counter()
    with PcapReader(str(path)) as reader:
        for _pkt in islice(reader, limit):  # each record is dissected as Ether(raw)
            n += 1
    return {"packets": n, "seconds": time.perf_counter() - began}


def run_dpkt(path: Path, limit: int | None) -> dict[str, Any]:
    import dpkt

    ethernet = dpkt.ethernet.Ethernet
    n = 0
    began = time.perf_counter()
    with open(path, "rb") as fh:
        for _ts, buf in islice(dpkt.pcap.Reader(fh), limit):
            ethernet(buf)
            n += 1
    return {"packets": n, "seconds": time.perf_counter() - began}


def run_pyshark(path: Path, limit: int | None) -> dict[str, Any]:
    import pyshark

    n = 0
    began = time.perf_counter()
    capture = pyshark.FileCapture(str(path), keep_packets=False)
    try:
        packets: Iterable[Any] = islice(capture, limit)
        for pkt in packets:
            _ = pkt.highest_layer
            n += 1
    finally:
        capture.close()
    return {"packets": n, "seconds": time.perf_counter() - began}


MODES: dict[str, Callable[[Path, int | None], dict[str, Any]]] = {
    "read": run_read,
    "decode": run_decode,
    "flows": run_flows,
    "scapy": run_scapy,
    "dpkt": run_dpkt,
    "pyshark": run_pyshark,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("file", type=Path)
    parser.add_argument("--limit", type=int, help="stop after this many packets")
    parser.add_argument("--profile", type=Path, metavar="OUT", help="write cProfile stats here")
    args = parser.parse_args(argv)
    task = MODES[args.mode]
    if args.profile is not None:
        profiler = cProfile.Profile()
        result = profiler.runcall(task, args.file, args.limit)
        profiler.dump_stats(args.profile)
    else:
        result = task(args.file, args.limit)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
