"""Acceptance, as a user runs it: the lab attack captures replayed with ``--opensearch URL`` make
every line of alerts.ndjson searchable exactly once — with the cluster up, with the cluster down
(the replay still finishes, the alerts wait in the spool and ``otsentry spool drain`` delivers
them, however often it runs), and with the server dying in the middle of a bulk request."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from tests.conftest import LAB_PCAPS
from tests.conftest import run_otsentry as otsentry
from tests.sinks.faultproxy import FaultProxy, osmem_count, osmem_ids

ATTACKS = [
    LAB_PCAPS / name
    for name in (
        "modbus_attacks.pcap",
        "modbus_abuse.pcap",
        "network_attacks_modbus.pcap",
        "s7comm_attacks.pcap",
        "s7comm_engineering.pcap",
        "opcua_attacks.pcap",
        "opcua_auth.pcap",
    )
]


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def ids_of(path: Path) -> list[str]:
    return sorted(str(doc["event"]["id"]) for doc in lines(path))  # type: ignore[index]


def setup(url: str) -> None:
    done = otsentry("es", "setup", "--opensearch", url, "--no-data-streams")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def events_off(tmp_path: Path) -> Path:
    """A config that sends alerts, assets and stats but not protocol events (a faster replay)."""
    path = tmp_path / "otsentry.yaml"
    path.write_text("outputs:\n  opensearch:\n    events: false\n    retry_interval: 0.5\n")
    return path


def test_every_alert_and_event_searchable_exactly_once(osmem_url: str, tmp_path: Path) -> None:
    setup(osmem_url)
    out = tmp_path / "out"
    done = otsentry(
        "replay", *ATTACKS, "--out", out, "--opensearch", osmem_url, "--quiet", "--json"
    )
    assert done.returncode == 0, done.stderr
    alerts = ids_of(out / "alerts.ndjson")
    assert len(alerts) >= 30
    assert osmem_ids(osmem_url, "logs-otsentry.alert-*") == alerts
    events = lines(out / "events.ndjson")
    for protocol in ("modbus", "s7comm", "opcua"):
        wanted = sorted(
            str(e["event"]["id"])  # type: ignore[index]
            for e in events
            if e["network"]["protocol"] == protocol  # type: ignore[index]
        )
        assert osmem_ids(osmem_url, f"logs-otsentry.{protocol}-*") == wanted, protocol
    assert osmem_ids(osmem_url, "logs-otsentry.asset-*") == ids_of(out / "assets.ndjson")
    assert osmem_count(osmem_url, "metrics-otsentry.stats-*") == 1
    stats = json.loads(done.stdout)["outputs"]["opensearch"]
    assert stats["rejected"] == 0
    assert stats["spool"]["documents"] == 0
    assert stats["sent"] == len(alerts) + len(events) + len(ids_of(out / "assets.ndjson")) + 1

    # the same replay again: every document is already there, nothing is doubled
    again = otsentry("replay", *ATTACKS, "--out", out, "--opensearch", osmem_url, "--quiet")
    assert again.returncode == 0, again.stderr
    assert osmem_ids(osmem_url, "logs-otsentry.alert-*") == alerts


def test_cluster_down_replay_finishes_and_drain_delivers_once(
    osmem_url: str, fault_proxy: FaultProxy, tmp_path: Path, events_off: Path
) -> None:
    setup(osmem_url)
    fault_proxy.refuse()
    out = tmp_path / "out"
    done = otsentry(
        "replay",
        *ATTACKS,
        "--out",
        out,
        "--opensearch",
        fault_proxy.url,
        "-c",
        events_off,
        "--json",
        "-q",
    )
    assert done.returncode == 0, done.stderr
    assert "connection refused" in done.stderr
    alerts = ids_of(out / "alerts.ndjson")
    stats = json.loads(done.stdout)["outputs"]["opensearch"]
    assets = len(lines(out / "assets.ndjson"))
    assert stats["spool"]["documents"] == len(alerts) + assets + 1  # alerts, assets, stats
    assert osmem_count(osmem_url, "logs-otsentry.*") == 0

    shown = otsentry("spool", "show", "--out", out, "--json")
    assert json.loads(shown.stdout)["opensearch"]["streams"]["logs-otsentry.alert-default"] == len(
        alerts
    )

    still_down = otsentry("spool", "drain", "--out", out, "--opensearch", fault_proxy.url, "--json")
    assert still_down.returncode == 1
    assert json.loads(still_down.stdout)["spool"]["documents"] == stats["spool"]["documents"]

    fault_proxy.accept()
    for _ in range(3):  # however often it runs
        drained = otsentry(
            "spool", "drain", "--out", out, "--opensearch", fault_proxy.url, "--json"
        )
        assert drained.returncode == 0, drained.stderr
        assert osmem_ids(osmem_url, "logs-otsentry.alert-*") == alerts
    first = json.loads(drained.stdout)
    assert first["spool"]["documents"] == 0
    assert osmem_count(osmem_url, "logs-otsentry.asset-*") == assets


def test_server_dying_mid_bulk_during_replay(
    osmem_url: str, fault_proxy: FaultProxy, tmp_path: Path, events_off: Path
) -> None:
    setup(osmem_url)
    fault_proxy.die_mid_bulk(1, forward=True)
    out = tmp_path / "out"
    done = otsentry(
        "replay", *ATTACKS, "--out", out, "--opensearch", fault_proxy.url, "-c", events_off, "-q"
    )
    assert done.returncode == 0, done.stderr
    left = otsentry("spool", "drain", "--out", out, "--opensearch", fault_proxy.url)
    assert left.returncode == 0, left.stderr
    assert osmem_ids(osmem_url, "logs-otsentry.alert-*") == ids_of(out / "alerts.ndjson")


def test_cluster_options_are_checked_before_the_replay(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = otsentry(
        "replay", ATTACKS[0], "--out", out, "--es", "http://elastic:secret@127.0.0.1:9200"
    )
    assert done.returncode == 2
    assert "credentials in the URL are not accepted" in done.stderr
    assert "secret" not in done.stderr
    assert not (out / "alerts.ndjson").exists()
    busy = out / "spool" / "opensearch"
    busy.mkdir(parents=True)
    drain = otsentry("spool", "drain", "--out", out, "--es", "http://127.0.0.1:9")
    assert drain.returncode == 2
    assert "no spool for elasticsearch" in drain.stderr
