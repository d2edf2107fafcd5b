"""``otsentry replay`` end to end, as a user runs it (a subprocess: real exit codes and streams)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from tests.conftest import SHARED_PCAPS
from tests.conftest import run_otsentry as otsentry


def conversation(n: int = 40, base: int = 1_700_000_000) -> list:  # type: ignore[type-arg]
    """A Modbus-like TCP conversation between an HMI and a PLC."""
    pkts = []
    c, s = "10.10.30.10", "10.10.30.5"
    pkts.append(
        Ether(src="00:1b:21:00:00:10", dst="00:1b:1b:00:00:05")
        / IP(src=c, dst=s)
        / TCP(sport=40000, dport=502, flags="S", seq=99)
    )
    pkts.append(
        Ether(src="00:1b:1b:00:00:05", dst="00:1b:21:00:00:10")
        / IP(src=s, dst=c)
        / TCP(sport=502, dport=40000, flags="SA", seq=499, ack=100)
    )
    for i in range(n):
        req = b"\x00" + bytes([i % 256]) + b"\x00\x00\x00\x06\x01\x03\x00\x00\x00\x01"
        pkts.append(
            Ether(src="00:1b:21:00:00:10", dst="00:1b:1b:00:00:05")
            / IP(src=c, dst=s)
            / TCP(sport=40000, dport=502, flags="PA", seq=100 + 12 * i)
            / req
        )
    for i, p in enumerate(pkts):
        p.time = base + i * 0.1
    return pkts


@pytest.fixture()
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "plant.pcap"
    wrpcap(str(path), conversation())
    return path


def read_ndjson(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_writes_outputs_and_stats(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = otsentry("replay", capture, "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # UI goes to stderr
    for name in ("events.ndjson", "alerts.ndjson", "assets.ndjson", "stats.json"):
        assert (out / name).is_file()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["packets"] == 42
    assert stats["flows"] == 1
    assert stats["bytes"] == capture.stat().st_size - 24 - 16 * 42
    assert stats["alerts"] == {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert set(stats) >= {"pdus", "parse_errors", "seconds", "packets_per_second"}
    assets = {a["otsentry"]["asset"]["ip"]: a for a in read_ndjson(out / "assets.ndjson")}
    plc = assets["10.10.30.5"]["otsentry"]["asset"]
    assert plc["mac"] == "00-1B-1B-00-00-05"
    assert plc["services"] == [{"transport": "tcp", "port": 502, "protocol": "modbus"}]
    # 40 Modbus requests the server never answered: one event each, flushed at the end
    assert stats["pdus"]["modbus"] == 40
    events = read_ndjson(out / "events.ndjson")
    assert len(events) == 40
    assert {e["otsentry"]["modbus"]["direction"] for e in events} == {"request"}
    assert {e["event"]["outcome"] for e in events} == {"unknown"}
    assert [e["otsentry"]["modbus"]["request_frame"] for e in events] == list(range(3, 43))
    assert plc["segment"] == "10.10.30.0/24"
    assert assets["10.10.30.5"]["@timestamp"].startswith("2023-11-14T22:13:")


def test_json_stats_on_stdout(capture: Path, tmp_path: Path) -> None:
    res = otsentry("replay", capture, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0
    assert json.loads(res.stdout)["packets"] == 42


def test_format_from_magic_not_name(capture: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "capture.pcapng"  # really classic pcap, and gzip-compressed
    disguised.write_bytes(gzip.compress(capture.read_bytes()))
    res = otsentry("replay", disguised, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["packets"] == 42


def test_truncated_capture_stops_with_offset_and_keeps_output(
    capture: Path, tmp_path: Path
) -> None:
    data = capture.read_bytes()
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(data[: len(data) - 30])  # cut inside the last record
    out = tmp_path / "o"
    res = otsentry("replay", broken, "--out", out, "--quiet")
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert str(broken) in errors[0] and "offset" in errors[0]
    assert "Traceback" not in res.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["packets"] == 41  # everything before the damage
    assert len(stats["capture"]["errors"]) == 1
    assert (out / "assets.ndjson").read_text().count("\n") == 2


def test_keep_going_moves_on_to_the_next_file(capture: Path, tmp_path: Path) -> None:
    broken = tmp_path / "a-broken.pcap"
    broken.write_bytes(capture.read_bytes()[:200])
    other = tmp_path / "b-good.pcap"
    wrpcap(str(other), conversation(10, base=1_700_000_100))
    out = tmp_path / "o"
    stop = otsentry("replay", broken, other, "--out", out, "--quiet", "--json")
    assert stop.returncode == 1
    go = otsentry("replay", broken, other, "--out", out, "--quiet", "--json", "--keep-going")
    assert go.returncode == 1  # a file could not be read; the others were replayed
    assert (
        json.loads(go.stdout)["packets"]
        > json.loads((out / "stats.json").read_text())["packets"] - 1
    )
    assert json.loads(go.stdout)["packets"] >= 12


def test_directory_replays_in_timestamp_order(capture: Path, tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    wrpcap(str(folder / "z-early.pcap"), conversation(5, base=1_600_000_000))
    wrpcap(str(folder / "a-late.pcap"), conversation(5, base=1_700_000_000))
    (folder / "notes.txt").write_text("not a capture")
    res = otsentry("replay", folder, "--out", tmp_path / "o", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["packets"] == 14
    assert stats["first_packet"].startswith("2020-09-13")
    assert len(stats["capture"]["files"]) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--decode-as", "5020=nonsense"], "nonsense"),
        (["--decode-as", "garbage"], "garbage"),
    ],
)
def test_usage_errors_exit_2(capture: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    res = otsentry("replay", capture, "--out", tmp_path / "o", *args)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_config_names_key_and_line(capture: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text("limits:\n  max_flows: 10\n  max_flws: 3\n")
    res = otsentry("replay", capture, "--config", cfg, "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "otsentry.yaml:3" in res.stderr and "max_flws" in res.stderr


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    res = otsentry("replay", tmp_path / "nope.pcap", "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "nope.pcap" in res.stderr


def test_config_segments_and_outputs(capture: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text(
        "sensor: {name: plant1-cell3}\n"
        "segments:\n  cell-3: {cidrs: [10.10.30.0/24]}\n"
        f"outputs: {{dir: {tmp_path / 'cfg-out'}}}\n"
    )
    res = otsentry("replay", capture, "--config", cfg, "--quiet")
    assert res.returncode == 0, res.stderr
    asset = read_ndjson(tmp_path / "cfg-out" / "assets.ndjson")[0]
    assert asset["labels"]["segment"] == "cell-3"
    assert asset["observer"]["name"] == "plant1-cell3"


def test_version() -> None:
    res = otsentry("version")
    assert res.returncode == 0
    assert res.stdout.startswith("otsentry ")


def test_every_public_capture_replays_without_a_traceback(tmp_path: Path) -> None:
    if not SHARED_PCAPS.is_dir():
        pytest.skip("../shared/pcaps is absent")
    res = otsentry(
        "replay", SHARED_PCAPS, "--out", tmp_path / "o", "--quiet", "--json", "--keep-going"
    )
    assert "Traceback" not in res.stderr
    stats = json.loads(res.stdout)
    assert res.returncode == (1 if stats["capture"]["errors"] else 0)
    manifest = (SHARED_PCAPS / "MANIFEST.tsv").read_text().splitlines()[1:]
    expected = sum(int(line.split("\t")[6]) for line in manifest)
    assert stats["packets"] == expected


# -- rules, alerts and evidence ----------------------------------------------------------------

LAB = Path(__file__).resolve().parents[1] / "pcaps"
ALERT_RULES = Path(__file__).parent / "detect" / "alert_rules"


def replay_rules(name: str, out: Path, *args: str | Path) -> tuple[dict, list[dict]]:  # type: ignore[type-arg]
    res = otsentry(
        "replay",
        LAB / name,
        "--out",
        out,
        "--quiet",
        "--json",
        "--no-builtin-rules",
        "--rules",
        ALERT_RULES,
        *args,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), read_ndjson(out / "alerts.ndjson")


def by_rule_and_source(alerts: list[dict]) -> dict[tuple[str, str], list[int]]:  # type: ignore[type-arg]
    found: dict[tuple[str, str], list[int]] = {}
    for doc in alerts:
        key = (doc["rule"]["id"], doc["source"]["ip"])
        found.setdefault(key, []).append(doc["otsentry"]["alert"]["count"])
    return found


def test_rule_alerts_aggregate_per_rule_and_host_pair(tmp_path: Path) -> None:
    stats, alerts = replay_rules("modbus_attacks.pcap", tmp_path)
    assert by_rule_and_source(alerts) == {
        ("OTS-TEST-MODBUS-DIAGNOSTICS", "10.10.30.66"): [4],
        ("OTS-TEST-MODBUS-WRITE", "10.10.30.66"): [9],
        ("OTS-TEST-MODBUS-WRITE", "10.10.30.10"): [6],
        # a correlation: 6 matches of 5 exception-02 answers each
        ("OTS-TEST-MODBUS-ILLEGAL-ADDRESS", "10.10.30.66"): [30],
    }
    burst = next(a for a in alerts if a["rule"]["id"] == "OTS-TEST-MODBUS-ILLEGAL-ADDRESS")
    assert burst["otsentry"]["alert"]["group"] == {
        "source.ip": "10.10.30.66",
        "destination.ip": "10.10.30.5",
    }
    diag = next(a for a in alerts if a["rule"]["id"] == "OTS-TEST-MODBUS-DIAGNOSTICS")
    assert diag["message"] == "Modbus diagnostics sub-function 0 from 10.10.30.66 to 10.10.30.5"
    assert diag["event"]["reason"] == "FC 8 sub-function 0 (return_query_data)"
    assert diag["@timestamp"] == diag["event"]["start"] == "2026-11-22T00:43:11.855454Z"
    assert diag["event"]["end"] == "2026-11-22T00:43:19.016085Z"
    assert diag["rule"]["version"] == "2" and diag["rule"]["ruleset"] == "otsentry-ics"
    assert diag["rule"]["reference"] == "https://attack.mitre.org/techniques/T0814/"
    assert diag["threat"]["framework"] == "MITRE ATT&CK for ICS"
    assert diag["threat"]["technique"]["id"] == ["T0814", "T0816"]
    assert diag["otsentry"]["alert"]["attack_version"]
    assert diag["tags"] == ["ics", "modbus", "otsentry", "attack.t0814", "attack.t0816"]
    assert diag["otsentry"]["modbus"]["sub_function"] == 0
    detection = stats["detection"]
    assert detection["rules_loaded"] == 5
    assert detection["matches"] == {
        "OTS-TEST-MODBUS-DIAGNOSTICS": 4,
        "OTS-TEST-MODBUS-ILLEGAL-ADDRESS": 6,
        "OTS-TEST-MODBUS-WRITE": 15,
    }
    assert (detection["emitted"], detection["aggregated"], detection["windows_evicted"]) == (
        4,
        21,
        0,
    )
    assert detection["engine"]["rules"] == 5
    assert stats["alerts"] == {"low": 1, "medium": 2, "high": 1, "critical": 0}
    assert stats["alerts_total"] == 4
    assert stats["evidence"]["files_written"] == 4
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == sorted(
        Path(a["otsentry"]["evidence"]["pcap"]).name for a in alerts
    )


def test_aggregation_window_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text("alerts: {aggregation_window: 0.6}\n")
    _, alerts = replay_rules("modbus_attacks.pcap", tmp_path / "o", "--config", cfg)
    assert by_rule_and_source(alerts)[("OTS-TEST-MODBUS-DIAGNOSTICS", "10.10.30.66")] == [1, 2, 1]


def test_s7_and_opcua_rule_alerts(tmp_path: Path) -> None:
    stats, alerts = replay_rules("s7comm_engineering.pcap", tmp_path / "s7")
    assert by_rule_and_source(alerts) == {("OTS-TEST-S7-STOP", "10.10.30.20"): [2]}
    assert alerts[0]["event"]["severity"] == 99 and alerts[0]["event"]["risk_score"] == 99.0
    assert alerts[0]["event"]["action"] == "s7comm-plc-stop"
    assert stats["alerts"]["critical"] == 1
    _, alerts = replay_rules("opcua_attacks.pcap", tmp_path / "ua")
    assert by_rule_and_source(alerts) == {
        ("OTS-TEST-OPCUA-WRITE", "10.10.30.10"): [5],
        ("OTS-TEST-OPCUA-WRITE", "10.10.30.66"): [4],
    }
    # a rule without a message template: "<title> from <source.ip> to <destination.ip>"
    assert {a["message"] for a in alerts} == {
        "Test - OPC UA write from 10.10.30.10 to 10.10.30.7",
        "Test - OPC UA write from 10.10.30.66 to 10.10.30.7",
    }


def test_same_replay_same_alerts_and_evidence(tmp_path: Path) -> None:
    _, first = replay_rules("modbus_attacks.pcap", tmp_path / "a")
    _, second = replay_rules("modbus_attacks.pcap", tmp_path / "b")

    def stable(doc: dict) -> dict:  # type: ignore[type-arg]
        return {**doc, "event": {k: v for k, v in doc["event"].items() if k != "created"}}

    assert [stable(d) for d in first] == [stable(d) for d in second]
    for doc in first:
        name = doc["otsentry"]["evidence"]["pcap"]
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_config_rules_and_disabled_rules(tmp_path: Path) -> None:
    cfg = tmp_path / "otsentry.yaml"
    cfg.write_text(
        f"detection:\n  rules: [{ALERT_RULES}]\n  builtin_rules: false\n"
        "  disabled_rules: [OTS-TEST-MODBUS-WRITE]\n"
    )
    res = otsentry(
        "replay",
        LAB / "modbus_attacks.pcap",
        "--config",
        cfg,
        "--out",
        tmp_path / "o",
        "-q",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["detection"]["rules_loaded"] == 4
    rules = {a["rule"]["id"] for a in read_ndjson(tmp_path / "o" / "alerts.ndjson")}
    assert rules == {"OTS-TEST-MODBUS-DIAGNOSTICS", "OTS-TEST-MODBUS-ILLEGAL-ADDRESS"}


def test_builtin_pack_loads_by_default_and_can_be_left_out(tmp_path: Path) -> None:
    res = otsentry(
        "replay", LAB / "s7comm_engineering.pcap", "--out", tmp_path / "a", "-q", "--json"
    )
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["detection"]["rules_loaded"] > 0 and stats["alerts_total"] > 0
    assert all(
        a["rule"]["id"].startswith("OTS-S7-") for a in read_ndjson(tmp_path / "a" / "alerts.ndjson")
    )
    res = otsentry(
        "replay",
        LAB / "s7comm_engineering.pcap",
        "--out",
        tmp_path / "b",
        "-q",
        "--json",
        "--no-builtin-rules",
    )
    stats = json.loads(res.stdout)
    assert stats["detection"]["rules_loaded"] == 0 and stats["alerts_total"] == 0
    assert stats["detection"]["engine"] == {}


STOP_RULE = (ALERT_RULES / "s7_plc_stop.yml").read_text()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (STOP_RULE.replace("level: critical", "level: severe"), "bad.yml:11: level:"),
        (STOP_RULE.replace("rev: 1", "rev: zero"), "bad.yml:2: rev:"),
        ("id: [unclosed\n", "bad.yml:2"),
    ],
)
def test_broken_rule_file_exits_2(tmp_path: Path, text: str, where: str) -> None:
    assert text != STOP_RULE
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    res = otsentry("replay", LAB / "modbus_attacks.pcap", "--out", tmp_path / "o", "--rules", bad)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert where in res.stderr.replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "o" / "stats.json").exists()


def test_missing_rules_path_exits_2(tmp_path: Path) -> None:
    res = otsentry(
        "replay", LAB / "modbus_attacks.pcap", "--out", tmp_path / "o", "--rules", tmp_path / "nope"
    )
    assert res.returncode == 2
    assert "nope" in res.stderr and "Traceback" not in res.stderr
