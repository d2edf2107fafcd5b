"""``otsentry baseline learn|show|diff|accept`` and the accept round trip: an accepted alert does
not come back on the next replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from otsentry.baseline import store
from otsentry.cli.app import app
from tests.baseline.conftest import NORMAL, SEGMENT, by_rule, replay
from tests.conftest import LAB_PCAPS

runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_learn_writes_one_file_per_segment_and_says_when_data_is_short(
    tmp_path: Path, baseline_dir: Path
) -> None:
    code, _, err = run("baseline", "learn", *NORMAL, "--out", tmp_path / "b")
    assert code == 0, err
    written = tmp_path / "b" / store.file_name(SEGMENT)
    assert f"{written}: segment {SEGMENT}" in err and "TOO LITTLE DATA" in err
    # the same bytes as the library's learning (and as any second run)
    assert written.read_bytes() == (baseline_dir / store.file_name(SEGMENT)).read_bytes()
    code, _, err = run("baseline", "learn", *NORMAL, "--out", tmp_path / "c", "--min-seconds", "30")
    assert code == 0 and "enough data" in err
    assert "sufficient: true" in (tmp_path / "c" / store.file_name(SEGMENT)).read_text()


def test_learn_usage_errors(tmp_path: Path) -> None:
    code, _, err = run("baseline", "learn", tmp_path / "none.pcap", "--out", tmp_path)
    assert code == 2 and "error:" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("segments: 3\n")
    code, _, err = run("baseline", "learn", *NORMAL, "--config", bad)
    assert code == 2 and str(bad) in err


def test_show_summarises_each_segment(baseline_dir: Path) -> None:
    code, out, _ = run("baseline", "show", baseline_dir)
    assert code == 0
    assert f"segment {SEGMENT}" in out and "too little data" in out
    assert "modbus_normal.pcap" in out
    assert "10.10.30.10" in out and "modbus-client, s7comm-client" in out
    assert "tcp/4840" in out and "functions 3" in out


def test_show_of_a_broken_baseline_names_the_line(tmp_path: Path, baseline_dir: Path) -> None:
    text = (baseline_dir / store.file_name(SEGMENT)).read_text()
    (tmp_path / "x.yaml").write_text(text.replace("count: ", "count: -", 1))
    code, _, err = run("baseline", "show", tmp_path)
    assert code == 2 and "x.yaml:" in err and "count" in err and "non-negative" in err


def test_diff_reads_like_a_change_log(tmp_path: Path, baseline_dir: Path) -> None:
    code, out, _ = run("baseline", "diff", baseline_dir, baseline_dir)
    assert (code, out) == (0, "")
    more = tmp_path / "more"
    code, _, _ = run(
        "baseline", "learn", *NORMAL, LAB_PCAPS / "s7comm_engineering.pcap", "--out", more
    )
    assert code == 0
    code, out, _ = run("baseline", "diff", baseline_dir, more)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"segment {SEGMENT}"
    assert (
        '  + links.links: client=10.10.30.20 server=10.10.30.6 transport=tcp server_port=102 (protocols=["s7comm"])'
        in lines
    )
    assert any(
        line.startswith("  + security.s7_engineering_stations: plc=10.10.30.6 station=10.10.30.20")
        for line in lines
    )
    assert any(line.startswith("  ~ assets.hosts: ip=10.10.30.20: roles") for line in lines)
    removed = ("  - assets", "  - links", "  - functions", "  - addresses", "  - security")
    assert not any(line.startswith(removed) for line in lines)
    code, back, _ = run("baseline", "diff", more, baseline_dir)
    assert code == 1 and any(
        line.startswith("  - links.links: client=10.10.30.20") for line in back.splitlines()
    )


def test_accept_folds_alerts_back_and_they_do_not_return(
    tmp_path: Path, baseline_dir: Path
) -> None:
    directory = tmp_path / "b"
    shutil.copytree(baseline_dir, directory)
    before, _ = replay("opcua_attacks.pcap", directory, tmp_path / "r1")
    method = by_rule(before, "OTS-ANOM-NEW-METHOD")[0]
    alerts = tmp_path / "r1" / "alerts.ndjson"

    # one alert, by id: only its items become normal
    code, _, err = run(
        "baseline", "accept", directory, "--alerts", alerts, "--id", method["event"]["id"]
    )
    assert code == 0, err
    assert "accepted 1 items from 1 alerts into 1 baselines" in err
    text = (directory / store.file_name(SEGMENT)).read_text()
    assert "method: ns=2;i=5" in text and "accepted: 1\n" in text
    after, _ = replay("opcua_attacks.pcap", directory, tmp_path / "r2")
    assert by_rule(after, "OTS-ANOM-NEW-METHOD") == []
    assert len(after) == len(before) - 1

    # all of them: an alert lists at most 50 items, so the browse of 480 nodes takes rounds
    code, _, err = run(
        "baseline", "accept", directory, "--alerts", tmp_path / "r2" / "alerts.ndjson"
    )
    assert code == 0, err
    assert "more items were not listed in the alerts" in err
    rounds = 0
    while True:
        again, _ = replay("opcua_attacks.pcap", directory, tmp_path / f"round{rounds}")
        if not again:
            break
        assert [d["rule"]["id"] for d in again] == ["OTS-ANOM-NEW-ADDRESS-RANGE"]
        code, _, _ = run(
            "baseline",
            "accept",
            directory,
            "--alerts",
            tmp_path / f"round{rounds}" / "alerts.ndjson",
        )
        rounds += 1
        assert rounds < 12
    # the accepted baseline still reads, and says what was accepted
    baseline = store.load_dir(directory)[SEGMENT]
    assert baseline.info.accepted > len(before)


def test_accept_errors(tmp_path: Path, baseline_dir: Path) -> None:
    directory = tmp_path / "b"
    shutil.copytree(baseline_dir, directory)
    alerts = tmp_path / "alerts.ndjson"
    alerts.write_text(json.dumps({"rule": {"ruleset": "otsentry-ics"}}) + "\n")
    code, _, err = run("baseline", "accept", directory, "--alerts", alerts, "--id", "nope")
    assert code == 2 and "no anomaly alert with id nope" in err
    alerts.write_text("{not json\n")
    code, _, err = run("baseline", "accept", directory, "--alerts", alerts)
    assert code == 2 and "line 1: not JSON" in err
    before = (directory / store.file_name(SEGMENT)).read_bytes()
    alerts.write_text("")
    code, _, err = run("baseline", "accept", directory, "--alerts", alerts)
    assert code == 0 and "accepted 0 items" in err
    assert (directory / store.file_name(SEGMENT)).read_bytes() == before


def test_replay_with_a_baseline(tmp_path: Path, baseline_dir: Path) -> None:
    out = tmp_path / "out"
    code, _, err = run(
        "replay", LAB_PCAPS / "s7comm_attacks.pcap", "--baseline", baseline_dir, "--out", out
    )
    assert code == 0, err
    assert f"warning: baseline of {SEGMENT} was learned from too little data" in err
    docs = [json.loads(line) for line in (out / "alerts.ndjson").open()]
    anomalies = [d for d in docs if d["rule"]["ruleset"] == "otsentry-anomaly"]
    rules = [d for d in docs if d["rule"]["ruleset"] == "otsentry-ics"]
    assert rules  # the rule pack still runs beside the baseline
    assert {d["rule"]["id"] for d in anomalies} >= {
        "OTS-ANOM-NEW-ASSET",
        "OTS-ANOM-NEW-LINK",
        "OTS-ANOM-NEW-FUNCTION",
        "OTS-ANOM-NEW-IDENTITY",
    }
    # evidence taken when the first deviation was seen
    assert all((out / d["otsentry"]["evidence"]["pcap"]).exists() for d in anomalies)
    stats = json.loads((out / "stats.json").read_text())
    baseline = stats["detection"]["baseline"]
    assert baseline["alerts"] == len(anomalies) and baseline["events_checked"] > 100
    assert sum(stats["alerts"].values()) == len(docs)


def test_replay_with_a_broken_baseline_exits_2(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.yaml").write_text("format_version: 0\n")
    code, _, err = run("replay", NORMAL[0], "--baseline", tmp_path / "b", "--out", tmp_path / "o")
    assert code == 2 and "x.yaml:1: format_version:" in err
