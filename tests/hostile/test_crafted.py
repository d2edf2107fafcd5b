"""Crafted sessions: conflicting TCP retransmissions, a 4 GB OPC UA size claim and OPC UA
values nested thousands deep."""

from __future__ import annotations

from pathlib import Path

from tests.hostile.captures import (
    conflicting_retransmissions,
    deep_opcua,
    huge_opcua_claim,
    limits_config,
    replay,
)

FILLER_MB = 20  # the benchmark sends 200
DEPTH = 5_000


def test_conflicting_retransmissions_keep_the_first_bytes(tmp_path: Path) -> None:
    capture = tmp_path / "retx.pcap"
    conflicting_retransmissions(capture, 30)
    run = replay(capture, tmp_path / "o")
    assert run.rc == 0, run.stderr
    records = [e["otsentry"]["modbus"] for e in run.events()]
    assert [r["transaction_id"] for r in records] == list(range(1, 31))
    assert all(r["address"] == 0 and "response_frame" in r for r in records)
    assert not any(r.get("anomalies") for r in records)
    tcp = run.stats["tcp"]
    assert tcp["conflicts"] == 10  # the held tails of the out-of-order requests
    # the whole copies (dropped) and the conflicting held copies (the first one kept)
    assert tcp["retransmissions"] == 20
    assert tcp["overlaps"] == 10  # the 3-byte overlaps, trimmed
    assert tcp["gaps"] == 0 and tcp["bytes_buffered"] == 0


def test_a_4gb_opcua_size_claim_is_rejected_not_buffered(tmp_path: Path) -> None:
    capture = tmp_path / "huge.pcap"
    huge_opcua_claim(capture, FILLER_MB)
    run = replay(capture, tmp_path / "o")
    assert run.rc == 0, run.stderr
    actions = {e["event"]["action"]: e["otsentry"]["opcua"] for e in run.events()}
    assert "opcua-hello" in actions
    junk = actions["opcua-non-opcua-payload"]
    assert "opcua.invalid_chunk_size" in junk["anomalies"]
    stats = run.stats
    assert stats["tcp"]["bytes_buffered"] == 0 and stats["tcp"]["overflows"] == 0
    assert stats["parse_errors"]["by_protocol"]["opcua"] == 1
    assert run.peak_rss_mb < 120  # 20 MB of filler never held


def test_deep_opcua_nesting_is_cut_at_the_decode_depth(tmp_path: Path) -> None:
    capture = tmp_path / "deep.pcap"
    deep_opcua(capture, DEPTH)
    run = replay(capture, tmp_path / "o")
    assert run.rc == 0, run.stderr
    assert "Traceback" not in run.stderr and "RecursionError" not in run.stderr
    reads = [e["otsentry"]["opcua"] for e in run.events() if e["event"]["action"] == "opcua-read"]
    responses = [r for r in reads if "decode_error" in r or "results" in r]
    nested_variant, extension_object, diagnostics = responses
    assert nested_variant["anomalies"] == ["opcua.decode_error"]
    assert nested_variant["decode_error"].startswith("nesting deeper than 16")
    assert diagnostics["anomalies"] == ["opcua.decode_error"]
    assert diagnostics["decode_error"].startswith("nesting deeper than 16")
    # an ExtensionObject of an unknown type is listed with its length, its body not followed
    assert extension_object["results"][0]["value"]["type_id"] == "i=321"
    assert run.stats["parse_errors"]["dissector_exceptions"] == 0


def test_nesting_within_the_depth_decodes(tmp_path: Path) -> None:
    capture = tmp_path / "shallow.pcap"
    deep_opcua(capture, 10)
    run = replay(capture, tmp_path / "o")
    reads = [e["otsentry"]["opcua"] for e in run.events() if e["event"]["action"] == "opcua-read"]
    value = next(r for r in reads if r.get("results"))["results"][0]
    depth = 0
    while value.get("type") == "Array of Variant":
        value = value["value"][0]
        depth += 1
    assert depth == 10 and value["value"] == 7
    assert not any(r.get("anomalies") for r in reads)


def test_a_message_over_the_buffer_cap_is_dropped_and_counted(tmp_path: Path) -> None:
    """With a 16 kB reassembly buffer the 25 kB and 50 kB nested responses cannot be held: each
    is dropped as an overflow and its request reported alone."""
    capture = tmp_path / "deep.pcap"
    deep_opcua(capture, DEPTH)
    config = limits_config(tmp_path, max_tcp_buffer_per_direction=16_384)
    run = replay(capture, tmp_path / "o", config=config)
    assert run.rc == 0, run.stderr
    assert run.stats["tcp"]["overflows"] == 2
    assert run.stats["tcp"]["bytes_buffered"] == 0
    reads = [e["otsentry"]["opcua"] for e in run.events() if e["event"]["action"] == "opcua-read"]
    assert sorted(r["direction"] for r in reads) == ["request", "request", "transaction"]
