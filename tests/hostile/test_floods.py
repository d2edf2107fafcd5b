"""Floods: a SYN flood from 100k sources and 100k unanswered Modbus requests (CI sizes; the
benchmark runs 300k sources and a million requests). Each replay runs in a child process whose
own peak RSS is read with ``wait4``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.hostile.captures import limits_config, open_transactions, replay, syn_flood

SOURCES = 100_000
MAX_FLOWS = 10_000
REQUESTS = 100_000
FLOWS = 50
MAX_OPEN = 500
#: peak RSS caps (MB) for these sizes; see docs/hardening.md for what holds the memory
SYN_FLOOD_RSS_MB = 320
TRANSACTIONS_RSS_MB = 150


def test_syn_flood_keeps_the_flow_table_at_its_cap(tmp_path: Path) -> None:
    capture = tmp_path / "syn.pcap"
    assert syn_flood(capture, SOURCES) == SOURCES
    cfg = limits_config(tmp_path, max_flows=MAX_FLOWS)
    run = replay(capture, tmp_path / "o", config=cfg)
    assert run.rc == 0, run.stderr
    stats = run.stats
    assert stats["flows"] == SOURCES
    assert stats["flows_peak"] == MAX_FLOWS
    ended = stats["flows_ended"]
    assert ended["evicted"] == SOURCES - MAX_FLOWS  # each eviction counted
    assert ended["end_of_capture"] == MAX_FLOWS
    assert stats["network"]["flow_ends"] == {"unanswered": SOURCES}
    assert run.peak_rss_mb < SYN_FLOOD_RSS_MB


def test_unanswered_modbus_requests_are_capped_per_flow(tmp_path: Path) -> None:
    capture = tmp_path / "tx.pcap"
    open_transactions(capture, REQUESTS, FLOWS)
    cfg = limits_config(tmp_path, max_open_transactions_per_flow=MAX_OPEN)
    run = replay(capture, tmp_path / "o", config=cfg)
    assert run.rc == 0, run.stderr
    flooded = reported = 0
    for event in run.events():
        record = event["otsentry"]["modbus"]
        assert "response_frame" not in record  # none was answered
        reported += 1
        flooded += "modbus.flooded" in record.get("anomalies", ())
    assert reported == REQUESTS  # every request reported once, alone
    # all but the last MAX_OPEN of each flow were pushed out by a newer one
    assert flooded == REQUESTS - FLOWS * MAX_OPEN
    assert run.stats["parse_errors"]["by_protocol"]["modbus"] == flooded
    assert run.peak_rss_mb < TRANSACTIONS_RSS_MB


def test_unanswered_requests_time_out_instead_of_piling_up(tmp_path: Path) -> None:
    """Requests 1 s apart on one flow with a 5 s timeout: never more than 6 open, so none is
    pushed out by the cap; each is still reported."""
    capture = tmp_path / "slow.pcap"
    open_transactions(capture, 2_000, 1, step_ns=1_000_000_000)
    cfg = limits_config(tmp_path, max_open_transactions_per_flow=10, transaction_timeout=5.0)
    run = replay(capture, tmp_path / "o", config=cfg)
    assert run.rc == 0, run.stderr
    records = [e["otsentry"]["modbus"] for e in run.events()]
    assert len(records) == 2_000
    assert not any("modbus.flooded" in r.get("anomalies", ()) for r in records)
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["parse_errors"]["by_protocol"]["modbus"] == 0
