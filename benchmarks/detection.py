"""Anomaly detection on the lab captures: learn a baseline, then count false and missed alerts.

    python benchmarks/detection.py [--learn PCAP ...] [--baseline DIR] [--benign PCAP ...]
                                   [--attack PCAP ...] [--work DIR] [--json]

1. Learns a baseline with ``otsentry baseline learn`` from benign captures (default: the
   learning runs ``pcaps/learning/*_learn.pcap`` and ``pcaps/{modbus,s7comm,opcua}_normal.pcap``),
   unless ``--baseline`` names one.
2. Replays benign captures made the same way at another time (default
   ``pcaps/learning/*_learn_run2.pcap`` and ``pcaps/*_normal_run2.pcap``) with
   ``otsentry replay --baseline``: every anomaly alert there is a false alert. Per capture:
   anomaly alerts (as aggregated for an operator), per hour of traffic, and the share of the
   capture's protocol events (transactions) that raised an anomaly; target under 0.18 %.
3. Replays each attack capture that has a steps file (``pcaps/<name>.steps.json``, written by
   ``pcaps/make_lab.py``) with alert aggregation off, and tells per attack step whether an
   anomaly alert (or a rule alert) was raised for it: an alert concerning the step's actor
   (its IP or MAC as source, destination or related address) whose time falls in the step —
   from its first frame up to the next step's first frame, the last step up to its last frame.

Prints one table for the benign runs and one per attack capture; ``--json`` prints the same as
JSON instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
ANOMALY_RULESET = "otsentry-anomaly"
#: share of benign events that may raise an anomaly (Kleinmann & Wool 2014, S7)
FLAGGED_TARGET = 0.0018


#: the short normal captures, learned from with the long runs (one more start of each session)
NORMAL = ("modbus_normal.pcap", "s7comm_normal.pcap", "opcua_normal.pcap")


def default_learn() -> list[Path]:
    """The benign captures a baseline learns from: the long learning runs and the normal ones."""
    return sorted((PCAPS / "learning").glob("*_learn.pcap")) + [PCAPS / n for n in NORMAL]


def default_benign() -> list[Path]:
    """Benign runs made like the learning ones, at another time."""
    return sorted((PCAPS / "learning").glob("*_learn_run2.pcap")) + sorted(
        PCAPS.glob("*_normal_run2.pcap")
    )


def default_attacks() -> list[Path]:
    """The attack captures that have a steps file."""
    return sorted(
        p.with_name(p.name.removesuffix(".steps.json") + ".pcap")
        for p in PCAPS.glob("*.steps.json")
    )


class BenchError(RuntimeError):
    """An otsentry command failed."""


def otsentry(*args: str) -> None:
    """Run ``python -m otsentry ARGS``; raise BenchError on failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "otsentry", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"otsentry {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}")


def baseline_cli_available() -> bool:
    """Whether this otsentry has ``otsentry baseline learn`` and ``replay --baseline``."""
    learn = subprocess.run(
        [sys.executable, "-m", "otsentry", "baseline", "learn", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    replay = subprocess.run(
        [sys.executable, "-m", "otsentry", "replay", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return learn.returncode == 0 and "--baseline" in replay.stdout


def learn(pcaps: list[Path], out: Path) -> None:
    """Learn a baseline from pcaps into out."""
    otsentry("baseline", "learn", *map(str, pcaps), "--out", str(out))


def replay(pcap: Path, baseline: Path, out: Path, *, aggregate: bool = True) -> Replayed:
    """Replay pcap against baseline into out (alert aggregation off unless aggregate)."""
    args = ["replay", "-q", "--baseline", str(baseline), "--out", str(out)]
    if not aggregate:
        out.parent.mkdir(parents=True, exist_ok=True)
        config = out.parent / f"{out.name}.otsentry.yaml"
        config.write_text(json.dumps({"alerts": {"aggregation_window": 0}}))  # JSON is YAML
        args += ["--config", str(config)]
    otsentry(*args, str(pcap))
    return Replayed.read(out)


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ECS time string."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class Replayed:
    """What one replay wrote: its alerts and its stats."""

    alerts: list[dict[str, Any]]
    stats: dict[str, Any]

    @classmethod
    def read(cls, out: Path) -> Replayed:
        """Read alerts.ndjson and stats.json of a replay's output directory."""
        text = (out / "alerts.ndjson").read_text()
        alerts = [json.loads(line) for line in text.splitlines() if line]
        return cls(alerts, json.loads((out / "stats.json").read_text()))

    @property
    def anomalies(self) -> list[dict[str, Any]]:
        """The anomaly alerts."""
        return [a for a in self.alerts if is_anomaly(a)]

    @property
    def events(self) -> int:
        """Protocol events (transactions) of the capture."""
        return sum(self.stats.get("events", {}).values())

    @property
    def pdus(self) -> int:
        """Protocol PDUs of the capture."""
        return sum(self.stats.get("pdus", {}).values())

    @property
    def hours(self) -> float:
        """Packet time the capture spans, in hours."""
        first, last = self.stats.get("first_packet"), self.stats.get("last_packet")
        if not first or not last:
            return 0.0
        return (epoch(last) - epoch(first)) / 3600


def is_anomaly(alert: dict[str, Any]) -> bool:
    """An anomaly (baseline) alert rather than a rule alert."""
    return bool(alert.get("rule", {}).get("ruleset") == ANOMALY_RULESET)


def kind(alert: dict[str, Any]) -> str:
    """The anomaly kind of an alert, or its rule id for a rule alert."""
    found = alert.get("otsentry", {}).get("anomaly", {}).get("kind")
    return str(found) if found else str(alert.get("rule", {}).get("id", "?"))


def techniques(alert: dict[str, Any]) -> list[str]:
    """The alert's ATT&CK technique ids."""
    return list(alert.get("threat", {}).get("technique", {}).get("id", []))


def count(alert: dict[str, Any]) -> int:
    """How many matches an alert stands for."""
    return int(alert.get("otsentry", {}).get("alert", {}).get("count", 1) or 1)


def concerns(alert: dict[str, Any], ip: str, mac: str) -> bool:
    """Whether the alert names the host with ip or mac as source, destination or related."""
    ips = {alert.get(side, {}).get("ip") for side in ("source", "destination")}
    ips |= set(alert.get("related", {}).get("ip", []))
    macs = {
        str(alert.get(side, {}).get("mac", "")).lower().replace("-", ":")
        for side in ("source", "destination")
    }
    return ip in ips or mac.lower() in macs


# -- benign runs ------------------------------------------------------------------------------
@dataclass(slots=True)
class BenignRow:
    """False alerts on one benign capture."""

    capture: str
    seconds: float
    events: int
    pdus: int
    anomaly_alerts: int
    flagged_events: int
    rule_alerts: int
    kinds: dict[str, int]

    @property
    def per_hour(self) -> float:
        """Anomaly alerts per hour of traffic."""
        return self.anomaly_alerts / (self.seconds / 3600) if self.seconds else 0.0

    @property
    def flagged(self) -> float:
        """Share of the protocol events that raised an anomaly."""
        return self.flagged_events / self.events if self.events else 0.0

    def as_dict(self) -> dict[str, Any]:
        """For --json."""
        return asdict(self) | {"per_hour": self.per_hour, "flagged": self.flagged}


def benign_row(pcap: Path, replayed: Replayed) -> BenignRow:
    """Summarise a benign replay (alerts aggregated as an operator sees them)."""
    anomalies = replayed.anomalies
    return BenignRow(
        capture=pcap.name,
        seconds=round(replayed.hours * 3600, 3),
        events=replayed.events,
        pdus=replayed.pdus,
        anomaly_alerts=len(anomalies),
        flagged_events=sum(count(a) for a in anomalies),
        rule_alerts=len(replayed.alerts) - len(anomalies),
        kinds=dict(sorted(Counter(kind(a) for a in anomalies).items())),
    )


# -- attack runs ------------------------------------------------------------------------------
@dataclass(slots=True)
class StepRow:
    """One attack step and the alerts raised for it."""

    step: int
    name: str
    first_frame: int
    last_frame: int
    anomalies: int = 0
    kinds: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def alerted(self) -> bool:
        """An anomaly alert was raised for the step."""
        return self.anomalies > 0


@dataclass(slots=True)
class AttackResult:
    """The steps of one attack capture, and the anomaly alerts no step explains."""

    capture: str
    actor: str
    steps: list[StepRow]
    outside: dict[str, int]
    #: per kind and host pair ("kind client -> server"), the anomaly alerts outside the steps
    outside_pairs: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """For --json."""
        return {
            "capture": self.capture,
            "actor": self.actor,
            "steps": [asdict(s) | {"alerted": s.alerted} for s in self.steps],
            "outside": self.outside,
            "outside_pairs": self.outside_pairs,
        }


def attribute(steps_doc: dict[str, Any], alerts: list[dict[str, Any]]) -> AttackResult:
    """Assign the alerts of an attack replay (not aggregated) to the steps they fall in."""
    actor = steps_doc["actor"]
    steps = steps_doc["steps"]
    rows = [StepRow(s["step"], s["name"], s["first_frame"], s["last_frame"]) for s in steps]
    bounds = [
        (s["start"], steps[i + 1]["start"] if i + 1 < len(steps) else s["end"])
        for i, s in enumerate(steps)
    ]
    outside: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for alert in alerts:
        t = epoch(alert["@timestamp"])
        hit = None
        if concerns(alert, actor["ip"], actor["mac"]):
            last = len(bounds) - 1
            for i, (start, end) in enumerate(bounds):
                if start <= t < end or (i == last and start <= t <= end):
                    hit = rows[i]
                    break
        if hit is None:
            if is_anomaly(alert):
                outside[kind(alert)] += 1
                src = alert.get("source", {}).get("ip", "?")
                dst = alert.get("destination", {}).get("ip", "?")
                pairs[f"{kind(alert)} {src} -> {dst}"] += 1
            continue
        if is_anomaly(alert):
            hit.anomalies += 1
            if kind(alert) not in hit.kinds:
                hit.kinds.append(kind(alert))
            hit.techniques = sorted(set(hit.techniques) | set(techniques(alert)))
        elif alert["rule"]["id"] not in hit.rules:
            hit.rules.append(alert["rule"]["id"])
    for row in rows:
        row.kinds.sort()
        row.rules.sort()
    return AttackResult(
        steps_doc["capture"],
        actor["host"],
        rows,
        dict(sorted(outside.items())),
        dict(sorted(pairs.items())),
    )


# -- the run ----------------------------------------------------------------------------------
def run(
    learn_pcaps: list[Path],
    benign: list[Path],
    attacks: list[Path],
    work: Path,
    baseline: Path | None = None,
) -> dict[str, Any]:
    """Learn (unless baseline is given), replay, and return the results as plain data."""
    if baseline is None:
        baseline = work / "baseline"
        learn(learn_pcaps, baseline)
    benign_rows = [benign_row(p, replay(p, baseline, work / "benign" / p.stem)) for p in benign]
    results = []
    for pcap in attacks:
        steps_doc = json.loads(pcap.with_name(pcap.stem + ".steps.json").read_text())
        replayed = replay(pcap, baseline, work / "attacks" / pcap.stem, aggregate=False)
        results.append(attribute(steps_doc, replayed.alerts))
    seconds = sum(r.seconds for r in benign_rows)
    false_alerts = sum(r.anomaly_alerts for r in benign_rows)
    steps = [s for r in results for s in r.steps]
    return {
        "baseline": str(baseline),
        "learned_from": [str(p) for p in learn_pcaps],
        "benign": [r.as_dict() for r in benign_rows],
        "attacks": [r.as_dict() for r in results],
        "summary": {
            "benign_seconds": seconds,
            "false_anomaly_alerts": false_alerts,
            "false_alerts_per_hour": false_alerts / (seconds / 3600) if seconds else 0.0,
            "max_flagged": max((r.flagged for r in benign_rows), default=0.0),
            "flagged_target": FLAGGED_TARGET,
            "steps": len(steps),
            "steps_alerted": sum(s.alerted for s in steps),
            "steps_rule_alerted": sum(bool(s.rules) for s in steps),
        },
    }


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def render(result: dict[str, Any]) -> str:
    """The results as text tables."""
    out = [f"baseline: {result['baseline']}", "", "Benign runs (every anomaly alert is false):"]
    out.append(
        _table(
            ["capture", "seconds", "events", "anomaly alerts", "per hour", "flagged", "kinds"],
            [
                [
                    r["capture"],
                    f"{r['seconds']:.0f}",
                    str(r["events"]),
                    str(r["anomaly_alerts"]),
                    f"{r['per_hour']:.1f}",
                    f"{100 * r['flagged']:.3f} %",
                    ", ".join(f"{k} {n}" for k, n in r["kinds"].items()) or "-",
                ]
                for r in result["benign"]
            ],
        )
    )
    for attack in result["attacks"]:
        out += ["", f"{attack['capture']} (actor: {attack['actor']}):"]
        rows = [
            [
                str(s["step"]),
                s["name"],
                f"{s['first_frame']}-{s['last_frame']}",
                "yes" if s["alerted"] else "NO",
                ", ".join(s["kinds"]) or "-",
                ", ".join(s["techniques"]) or "-",
                ", ".join(s["rules"]) or "-",
            ]
            for s in attack["steps"]
        ]
        out.append(
            _table(["#", "step", "frames", "anomaly", "kinds", "techniques", "rule alerts"], rows)
        )
        if attack["outside"]:
            out.append("anomaly alerts outside the steps:")
            out += [f"  {n} x {what}" for what, n in attack["outside_pairs"].items()]
    s = result["summary"]
    out += [
        "",
        f"steps alerted by an anomaly: {s['steps_alerted']} of {s['steps']}"
        f" (by a rule: {s['steps_rule_alerted']})",
        f"false anomaly alerts: {s['false_anomaly_alerts']} in {s['benign_seconds']:.0f} s of"
        f" benign traffic ({s['false_alerts_per_hour']:.1f} per hour); most events flagged on one"
        f" capture: {100 * s['max_flagged']:.3f} % (target < {100 * s['flagged_target']:.2f} %)",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learn", nargs="+", type=Path, help="benign captures to learn from")
    parser.add_argument("--baseline", type=Path, help="use this baseline instead of learning")
    parser.add_argument("--benign", nargs="*", type=Path, help="benign captures to replay")
    parser.add_argument("--attack", nargs="*", type=Path, help="attack captures (with steps)")
    parser.add_argument("--work", type=Path, help="keep the baseline and replays here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    learn_pcaps = args.learn or default_learn()
    benign = default_benign() if args.benign is None else args.benign
    attacks = default_attacks() if args.attack is None else args.attack
    if not baseline_cli_available():
        print(
            "detection: this otsentry has no `baseline learn` / `replay --baseline`",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="otsentry-detection-") as tmp:
        work = args.work or Path(tmp)
        try:
            result = run(learn_pcaps, benign, attacks, work, args.baseline)
        except BenchError as exc:
            print(f"detection: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
