"""The highest packet rate ``otsentry sensor`` sustains on a mirror port with zero kernel drops,
with 1 and 2 workers.

Root only. Builds the live test plant (tests/live/plant.py) with a sender namespace: tcpreplay
sends a Modbus/TCP capture into ``send0``, whose peer is redirected with tc to the mirror, so the
frames reach ``span0`` in the sensor namespace as mirrored traffic does. For each worker count
the sensor (``otsentry sensor -i span0 --workers W``) is started afresh for every rate step;
the steps rise (5k, 10k, 20k, ... pps) until one fails, then the rate is bisected between the
last step that passed and the first that failed.

A step passes when every frame sent reached the sensor's sockets (``received`` equals ``sent``),
the kernel dropped none (``dropped`` 0) and the sensor had processed them all within
``--catch-up`` seconds of the sender stopping. The last condition matters: the sensor's ring
(64 MB by default) holds a few hundred thousand small frames, so a short step above the
sustainable rate shows no drops, only a backlog.

The capture is ``benchmarks/make_capture.py --source pcaps/modbus_normal.pcap`` made long enough
for the fastest step (each copy of the source moved to its own addresses, so flows keep coming);
it is kept in benchmarks/data/. tcpreplay sleeps between packets (``-T nano``) instead of
spinning, so that it leaves the sensor as much CPU as it can; on a small machine they still
share the cores, and the output says so.

Usage: ``sudo python benchmarks/live_rate.py [--workers 1 2] [--rates 5000 10000 ...]
[--seconds 5] [--bisect 3] [--catch-up 1.0] [--capture FILE] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.live.plant import (  # noqa: E402
    SEND_IF,
    Plant,
    PlantError,
    Sensor,
    netns,
    run,
    sensor_available,
    unavailable,
)

DATA_DIR = REPO / "benchmarks" / "data"
SOURCE = REPO / "pcaps" / "modbus_normal.pcap"
RATES = (5_000, 10_000, 20_000, 40_000, 80_000, 160_000)
#: a step whose sender reached less than this share of the asked rate says nothing about the sensor
SENDER_SHARE = 0.95
STATS_INTERVAL = 0.25
#: how long to wait for a sensor that stopped making progress before stopping it
STALL_SECONDS = 3.0


@dataclass
class Step:
    """One rate step: what was sent and what the sensor made of it."""

    workers: int
    pps: int
    sent: int = 0
    sent_pps: float = 0.0
    received: int = 0
    dropped: int = 0
    processed: int = 0
    #: frames that span0 did not deliver (its rx counter behind the sender)
    lost_in_plant: int = 0
    #: seconds from the sender's end until the sensor had processed every frame (None: never)
    catch_up: float | None = None
    #: why the step failed ("" when it passed)
    failure: str = ""

    @property
    def passed(self) -> bool:
        """Every frame received and processed in time, none dropped."""
        return not self.failure


@dataclass
class WorkerResult:
    """The steps of one worker count and the highest rate that passed."""

    workers: int
    available: bool = True
    reason: str = ""
    steps: list[Step] = field(default_factory=list)

    @property
    def zero_drop_pps(self) -> int | None:
        """The highest asked rate that passed."""
        passed = [s.pps for s in self.steps if s.passed]
        return max(passed) if passed else None

    def to_json(self) -> dict[str, Any]:
        """For --json."""
        return {
            "workers": self.workers,
            "available": self.available,
            "reason": self.reason,
            "zero_drop_pps": self.zero_drop_pps,
            "steps": [asdict(s) | {"passed": s.passed} for s in self.steps],
        }


def ensure_capture(packets: int, path: Path | None) -> Path:
    """The capture to replay: ``path``, or a Modbus/TCP capture of at least ``packets`` frames
    made (once) in benchmarks/data/."""
    if path is not None:
        return path
    out = DATA_DIR / f"live-modbus-{packets}.pcap"
    if not out.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, str(REPO / "benchmarks" / "make_capture.py"), "--source"]
        argv += [str(SOURCE), "--packets", str(packets), "--out", str(out)]
        subprocess.run(argv, check=True, capture_output=True)
    return out


def _stats(out: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((out / "stats.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _capture_counts(stats: dict[str, Any]) -> tuple[int, int]:
    """(received, dropped) summed over the interfaces of a stats snapshot."""
    interfaces = (stats.get("capture") or {}).get("interfaces") or {}
    received = sum(int(c.get("received") or 0) for c in interfaces.values())
    dropped = sum(int(c.get("dropped") or 0) for c in interfaces.values())
    return received, dropped


def _replay(plant: Plant, capture: Path, pps: int, packets: int) -> tuple[int, float, int]:
    """tcpreplay PACKETS frames at PPS into send0; (sent, achieved pps, failed)."""
    argv = ["tcpreplay", "-i", SEND_IF, "-K", "-T", "nano", f"--pps={pps}"]
    argv += [f"--limit={packets}", str(capture)]
    out = run(netns(plant.send, argv), timeout=packets / pps + 120).stdout
    sent = re.search(r"Actual: (\d+) packets", out)
    rate = re.search(r"Rated: .*?([\d.]+) pps", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    if sent is None or rate is None or failed is None:
        raise PlantError(f"cannot read tcpreplay's report:\n{out}")
    return int(sent.group(1)), float(rate.group(1)), int(failed.group(1))


def _wait_caught_up(out: Path, sent: int, sensor: Sensor) -> float | None:
    """Seconds until the sensor had processed or dropped every frame sent (None if it stalled)."""
    start = time.monotonic()
    last, progress = -1, start
    while sensor.running():
        stats = _stats(out)
        if stats is not None:
            processed = int(stats.get("packets") or 0)
            if processed + _capture_counts(stats)[1] >= sent:
                return time.monotonic() - start
            if processed != last:
                last, progress = processed, time.monotonic()
        if time.monotonic() - progress > STALL_SECONDS:
            return None
        time.sleep(STATS_INTERVAL / 2)
    return None


def run_step(
    plant: Plant, capture: Path, workers: int, pps: int, seconds: float, catch_up: float
) -> Step:
    """Start the sensor, replay ``pps * seconds`` frames at ``pps``, wait for the sensor to
    catch up, stop it with SIGINT and read its final stats."""
    step = Step(workers, pps)
    packets = int(pps * seconds)
    with tempfile.TemporaryDirectory(prefix="ots-live-rate-") as tmp:
        out = Path(tmp) / "out"
        cap = str(seconds + 120)
        args = ["--workers", str(workers), "--quiet", "--duration", cap]
        sensor = Sensor(plant, out, *args, "--stats-interval", str(STATS_INTERVAL))
        sensor.start(sockets=workers)
        try:
            before = plant.span_counters()["rx_packets"]
            step.sent, step.sent_pps, failed = _replay(plant, capture, pps, packets)
            step.catch_up = _wait_caught_up(out, step.sent, sensor)
            step.lost_in_plant = step.sent - (plant.span_counters()["rx_packets"] - before)
            sensor.signal(signal.SIGINT)
            rc = sensor.wait(timeout=60)
        finally:
            sensor.kill()
        if rc != 0:
            raise PlantError(f"otsentry sensor exited {rc}:\n{sensor.output()}")
        stats = _stats(out) or {}
    step.received, step.dropped = _capture_counts(stats)
    step.processed = int(stats.get("packets") or 0)
    step.failure = _judge(step, failed, catch_up)
    return step


def _judge(step: Step, failed: int, catch_up: float) -> str:
    if failed or step.sent_pps < SENDER_SHARE * step.pps:
        return f"sender reached {step.sent_pps:,.0f} pps ({failed} send failures)"
    if step.lost_in_plant:
        return f"{step.lost_in_plant:,} frames lost before span0"
    if step.dropped:
        return f"{step.dropped:,} kernel drops"
    if step.received < step.sent:
        return f"{step.sent - step.received:,} frames never reached the sensor"
    if step.catch_up is None or step.catch_up > catch_up:
        return "fell behind (backlog in the ring)"
    return ""


def measure(
    plant: Plant,
    capture: Path,
    workers: int,
    rates: list[int],
    seconds: float,
    bisect: int,
    catch_up: float,
) -> WorkerResult:
    """Rising steps until one fails, then ``bisect`` steps between the last pass and that."""
    result = WorkerResult(workers)

    def step(pps: int) -> Step:
        done = run_step(plant, capture, workers, pps, seconds, catch_up)
        result.steps.append(done)
        print(_row(done), flush=True)
        return done

    good, bad = 0, 0
    try:
        for pps in rates:
            if step(pps).passed:
                good = pps
            else:
                bad = pps
                break
        for _ in range(bisect if bad else 0):
            mid = round((good + bad) / 2 / 500) * 500
            if mid in (good, bad):
                break
            if step(mid).passed:
                good = mid
            else:
                bad = mid
    except PlantError as exc:
        lines = [line.strip(" │╭╮╰╯─:") for line in str(exc).splitlines()]
        lines = [line for line in lines if any(c.isalnum() for c in line)]
        reason = lines[0] + (f": {lines[-1]}" if len(lines) > 1 else "")
        result.available = bool(result.steps)
        result.reason = reason if not result.steps else f"stopped after a step failed: {reason}"
    return result


HEADER = (
    f"{'workers':>7} {'pps asked':>10} {'pps sent':>10} {'sent':>9} {'received':>9} "
    f"{'dropped':>8} {'processed':>9} {'caught up':>9}  result"
)


def _row(s: Step) -> str:
    caught = "-" if s.catch_up is None else f"{s.catch_up:.1f} s"
    return (
        f"{s.workers:>7} {s.pps:>10,} {s.sent_pps:>10,.0f} {s.sent:>9,} {s.received:>9,} "
        f"{s.dropped:>8,} {s.processed:>9,} {caught:>9}  {'ok' if s.passed else s.failure}"
    )


def summary(results: list[WorkerResult]) -> list[str]:
    """One line per worker count: the highest rate that passed, or why there is none."""
    lines = []
    for r in results:
        if not r.available:
            lines.append(f"workers={r.workers}: not available ({r.reason})")
            continue
        if r.reason:
            lines.append(f"workers={r.workers}: {r.reason}")
        best, failed = r.zero_drop_pps, [s for s in r.steps if not s.passed]
        above = min(failed, key=lambda s: s.pps) if failed else None
        text = f"{best:,} pps" if best else "none of the steps passed"
        if above is not None:
            text += f" (at {above.pps:,} pps: {above.failure})"
        else:
            text += " (the fastest step passed: raise --rates)"
        lines.append(f"workers={r.workers}: highest rate with zero drops {text}")
    return lines


def _preflight() -> str | None:
    reason = unavailable()
    if reason is None and shutil.which("tcpreplay") is None:
        reason = "needs tcpreplay (apt-get install tcpreplay)"
    return reason or sensor_available()


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the summary, write --json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="[1 2]")
    parser.add_argument("--rates", type=int, nargs="+", default=list(RATES), help="pps steps")
    parser.add_argument("--seconds", type=float, default=5.0, help="sending time per step [5]")
    parser.add_argument("--bisect", type=int, default=3, help="bisection steps [3]")
    parser.add_argument(
        "--catch-up",
        type=float,
        default=1.0,
        help="seconds the sensor may take after the sender stops to process the rest [1]",
    )
    parser.add_argument("--capture", type=Path, help="capture to replay (default: made once)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    args = parser.parse_args(argv)
    reason = _preflight()
    if reason is not None:
        print(f"live_rate: {reason}", file=sys.stderr)
        return 2
    rates = sorted(set(args.rates))
    capture = ensure_capture(max(int(max(rates) * args.seconds), 100_000), args.capture)
    cpus = os.cpu_count() or 1
    steps = ", ".join(f"{r:,}" for r in rates)
    print(f"otsentry sensor on span0, {capture.name} replayed into the plant by tcpreplay")
    print(f"{args.seconds:g} s per step at {steps} pps until a step fails, then bisected")
    print(
        f"{cpus} CPU core(s): tcpreplay, the kernel's veth and mirror path and the sensor share "
        "them, so the figures are lower than on a sensor with cores of its own"
    )
    print(HEADER, flush=True)
    results = []
    started = time.monotonic()
    with Plant(sender=True) as plant:
        for workers in args.workers:
            results.append(
                measure(plant, capture, workers, rates, args.seconds, args.bisect, args.catch_up)
            )
    for line in summary(results):
        print(line)
    print(f"({time.monotonic() - started:.0f} s)")
    if args.json is not None:
        doc = {
            "cpus": cpus,
            "capture": str(capture),
            "seconds_per_step": args.seconds,
            "catch_up_seconds": args.catch_up,
            "rates": rates,
            "tc_classifier": plant.classifier,
            "results": [r.to_json() for r in results],
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
