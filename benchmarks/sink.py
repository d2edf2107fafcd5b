"""What the cluster outputs cost: a replay with and without a cluster, spooling, draining.

    python benchmarks/sink.py [--packets N] [--file FILE] [--osmem]

Rows, each a child process on the same capture (built by ``make_capture.py`` from the lab
captures unless ``--file`` names one):

- ``ndjson only``: ``otsentry replay`` writing the local files (the reference);
- ``cluster (instant)``: ``--opensearch`` pointing at a bulk endpoint that accepts every document
  at once (a small server in this script, another process) — the sink's own cost: batching,
  serialisation, the client library, HTTP;
- ``cluster down (spool)``: ``--opensearch`` at a closed port — everything goes to the spool;
- ``spool drain (instant)``: ``otsentry spool drain`` of that spool into the instant endpoint;
- with ``--osmem``, ``cluster (osmem)``: the in-memory test server, templates installed by
  ``otsentry es setup``, which indexes for real (and is itself the bottleneck; for comparison).

Documents per second count every document sent (events, alerts, assets, stats).
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import make_capture
import orjson
from runner import Measurement, measure

HERE = Path(__file__).resolve().parent


class _Bulk(http.server.BaseHTTPRequestHandler):
    """Answers ``_bulk`` with 201 for every item; anything else with an empty 200."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        items = []
        for line in body.splitlines():
            if line.startswith(b'{"create"'):
                meta = orjson.loads(line)["create"]
                items.append(
                    {"create": {"_index": meta["_index"], "_id": meta["_id"], "status": 201}}
                )
        self._answer({"took": 0, "errors": False, "items": items})

    def do_GET(self) -> None:
        self._answer({"version": {"number": "2.19.0", "distribution": "opensearch"}})

    def _answer(self, doc: dict[str, Any]) -> None:
        data = orjson.dumps(doc)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serve(port: int) -> None:
    """Run the instant bulk endpoint until killed."""
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _Bulk).serve_forever()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay(capture: Path, out: Path, *extra: str) -> tuple[Measurement, dict[str, Any]]:
    run = measure(
        [
            sys.executable,
            "-m",
            "otsentry",
            "replay",
            str(capture),
            "--out",
            str(out),
            "-q",
            "--json",
            *extra,
        ]
    )
    return run, json.loads(run.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--file", type=Path)
    parser.add_argument("--osmem", action="store_true", help="also index into osmem-server")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0

    capture = args.file or make_capture.default_out(args.packets)
    if not capture.exists():
        make_capture.build(make_capture.default_sources(), args.packets, capture)
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", str(port)])
    rows: list[tuple[str, Measurement, int]] = []
    try:
        _wait_for(port)
        with tempfile.TemporaryDirectory(prefix="otsentry-sink-") as tmp:
            base = Path(tmp)
            run, stats = _replay(capture, base / "ndjson")
            docs = sum(stats["events"].values()) + stats["alerts_total"] + stats["assets"] + 1
            rows.append(("ndjson only", run, docs))
            run, stats = _replay(
                capture, base / "instant", "--opensearch", f"http://127.0.0.1:{port}"
            )
            out = stats["outputs"]["opensearch"]
            assert out["sent"] == docs and out["spool"]["documents"] == 0, out
            rows.append(("cluster (instant)", run, out["sent"]))
            dead = _free_port()
            run, stats = _replay(capture, base / "down", "--opensearch", f"http://127.0.0.1:{dead}")
            spooled = stats["outputs"]["opensearch"]["spool"]["documents"]
            rows.append(("cluster down (spool)", run, spooled))
            drain = measure(
                [
                    sys.executable,
                    "-m",
                    "otsentry",
                    "spool",
                    "drain",
                    "--out",
                    str(base / "down"),
                    "--opensearch",
                    f"http://127.0.0.1:{port}",
                    "--json",
                ]
            )
            rows.append(("spool drain (instant)", drain, json.loads(drain.stdout)["sent"]))
            if args.osmem:
                from osmem_server import OsmemServer

                with OsmemServer.start(freeze=False, japanese=False) as osmem:
                    setup = [sys.executable, "-m", "otsentry", "es", "setup", "--opensearch"]
                    subprocess.run([*setup, osmem.url, "--no-data-streams"], check=True)
                    run, stats = _replay(capture, base / "osmem", "--opensearch", osmem.url)
                    rows.append(("cluster (osmem)", run, stats["outputs"]["opensearch"]["sent"]))
    finally:
        server.kill()
        server.wait()

    packets = make_capture.count_packets(capture)
    print(f"capture: {capture} ({packets:,} packets)")
    print(f"{'run':<24}{'seconds':>9}{'packets/s':>12}{'documents':>11}{'docs/s':>10}{'RSS MB':>8}")
    for name, m, n in rows:
        pps = f"{packets / m.seconds:,.0f}" if "drain" not in name else "-"
        print(
            f"{name:<24}{m.seconds:>9.2f}{pps:>12}{n:>11,}{n / m.seconds:>10,.0f}{m.peak_rss_mb:>8.1f}"
        )
    return 0


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            threading.Event().wait(0.05)
    raise RuntimeError("the bulk endpoint did not start")


if __name__ == "__main__":
    sys.exit(main())
