"""Several workers, each with a share of the flows (as PACKET_FANOUT's symmetric flow hash deals
them), merged by the supervisor: the same hosts, events and counts as one process seeing it all."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.decode import K_DPORT, K_DST, K_SPORT, K_SRC
from otsentry.pipeline import Pipeline, ndjson_streams
from otsentry.sinks.interface import Stream
from otsentry.sinks.ndjson import NdjsonSink
from otsentry.stages import decoder_for
from otsentry.workers import PipeSink, Supervisor, merge_asset, merge_stats
from tests.conftest import LAB_PCAPS

CAPTURES = [LAB_PCAPS / "modbus_attacks.pcap", LAB_PCAPS / "s7comm_attacks.pcap"]


def frames() -> list[Any]:
    found: list[Any] = []
    for path in CAPTURES:
        with open_capture(path) as reader:
            found.extend(reader)
    return sorted(found, key=lambda f: f[0])


def shard(all_frames: list[Any], workers: int) -> list[list[Any]]:
    """Deal frames to workers by a symmetric hash of the flow (both directions together)."""
    decoder = decoder_for(Config())
    shares: list[list[Any]] = [[] for _ in range(workers)]
    for frame in all_frames:
        pkt = decoder.decode(frame[1], frame[2], frame[0])
        if pkt is None:
            shares[0].append(frame)
            continue
        key = pkt[0]  # the flow key (P_KEY)
        ends = sorted([(key[K_SRC], key[K_SPORT]), (key[K_DST], key[K_DPORT])])
        shares[hash(repr(ends)) % workers].append(frame)
    return shares


def run(out: Path, share: list[Any]) -> dict[str, Any]:
    pipeline = Pipeline(Config(), out)
    pipeline.run(share)
    return pipeline.finish()


def docs(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def whole_and_parts(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[Path], dict[str, Any], list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("workers")
    all_frames = frames()
    whole = run(base / "whole", all_frames)
    shares = shard(all_frames, 2)
    assert all(shares)  # both workers got traffic
    parts = [run(base / f"w{i}", share) for i, share in enumerate(shares)]
    return base / "whole", [base / "w0", base / "w1"], whole, parts


def test_merged_assets_equal_one_process(whole_and_parts: Any) -> None:
    whole_dir, part_dirs, _, _ = whole_and_parts
    merged: dict[str, dict[str, Any]] = {}
    for d in part_dirs:
        for doc in docs(d / "assets.ndjson"):
            merge_asset(merged, doc)
    whole = {d["otsentry"]["asset"]["ip"]: d for d in docs(whole_dir / "assets.ndjson")}
    reference = {ip: d["otsentry"]["asset"] for ip, d in whole.items()}
    assert set(merged) == set(reference)
    for ip, doc in whole.items():  # the whole asset section and the device, as one process
        assert merged[ip]["otsentry"]["asset"] == doc["otsentry"]["asset"], ip
        assert merged[ip].get("device") == doc.get("device"), ip
    for ip, want in reference.items():
        got = merged[ip]["otsentry"]["asset"]
        for field in ("packets", "bytes", "first_seen", "last_seen", "mac"):
            assert got[field] == want[field], (ip, field)
        for field in ("roles", "protocols", "client_protocols"):
            assert sorted(got[field]) == sorted(want[field]), (ip, field)
        assert sorted(got["peers"]["ip"]) == sorted(want["peers"]["ip"])
        assert {tuple(sorted(s.items())) for s in got["services"]} == {
            tuple(sorted(s.items())) for s in want["services"]
        }


def test_events_of_the_shares_add_up_to_the_whole(whole_and_parts: Any) -> None:
    whole_dir, part_dirs, _, _ = whole_and_parts

    def key(doc: dict[str, Any]) -> tuple[Any, ...]:
        return (
            doc["event"]["action"],
            doc["source"]["ip"],
            doc["destination"]["ip"],
            doc["@timestamp"],
        )

    parts = Counter(key(d) for p in part_dirs for d in docs(p / "events.ndjson"))
    assert parts == Counter(key(d) for d in docs(whole_dir / "events.ndjson"))


def test_merged_stats_add_counts_and_keep_times(whole_and_parts: Any) -> None:
    _, _, whole, parts = whole_and_parts
    merged = merge_stats(parts)
    assert merged["packets"] == whole["packets"]
    assert merged["bytes"] == whole["bytes"]
    assert merged["pdus"] == whole["pdus"]
    assert merged["events"] == whole["events"]
    assert merged["first_packet"] == whole["first_packet"]
    assert merged["last_packet"] == whole["last_packet"]
    assert merged["seconds"] == max(p["seconds"] for p in parts)
    assert merged["tcp"]["gaps"] == sum(p["tcp"]["gaps"] for p in parts)
    # what every worker has the same of is not multiplied
    assert merged["detection"]["rules_loaded"] == whole["detection"]["rules_loaded"]
    assert merged["detection"]["engine"]["rules"] == whole["detection"]["engine"]["rules"]


def supervise(
    tmp_path: Path,
    read_fd: int,
    worker: Callable[[], None],
    number: int,
    on_error: Callable[[str], None] | None = None,
) -> Supervisor:
    """Run ``worker`` in a thread writing to a pipe while a supervisor (NDJSON files only in
    ``tmp_path``) reads the pipe as worker ``number``'s; every byte must be taken."""
    writer = threading.Thread(target=worker)
    writer.start()
    supervisor = Supervisor(Config(), tmp_path, None)
    if on_error is not None:
        supervisor.on_error = on_error
    supervisor.ndjson = NdjsonSink(tmp_path, ndjson_streams(Config()))
    supervisor.clusters = []
    supervisor.sinks = [supervisor.ndjson]
    buffer = bytearray()
    while chunk := os.read(read_fd, 1 << 16):
        buffer += chunk
        supervisor._dispatch(number, buffer)
    os.close(read_fd)
    writer.join()
    supervisor.ndjson.close()
    assert not buffer
    return supervisor


def test_pipe_frames_reach_the_supervisor_and_evidence_paths_name_the_worker(
    tmp_path: Path,
) -> None:
    read_fd, write_fd = os.pipe()
    sink = PipeSink(write_fd, {Stream.EVENTS, Stream.ALERTS, Stream.ASSETS})
    alert = {
        "event": {"id": "a1", "dataset": "otsentry.alert"},
        "otsentry": {"evidence": {"pcap": "evidence/x.pcap"}},
    }
    event = {"event": {"id": "e1", "dataset": "otsentry.modbus"}}

    def worker() -> None:
        for i in range(3000):  # more than one pipe buffer's worth
            sink.write(Stream.EVENTS, {**event, "n": i})
        sink.write(Stream.ALERTS, alert)
        sink.close()

    supervisor = supervise(tmp_path, read_fd, worker, 3)
    events = docs(tmp_path / "events.ndjson")
    assert [d["n"] for d in events] == list(range(3000))
    (got,) = docs(tmp_path / "alerts.ndjson")
    assert got["otsentry"]["evidence"]["pcap"] == "workers/3/evidence/x.pcap"
    assert supervisor.ndjson.counts[Stream.EVENTS] == 3000


def test_ready_lines_and_errors_reach_the_supervisor(tmp_path: Path) -> None:
    """``write_lines`` sends NDJSON lines as they are; an error message is reported once
    however many workers send it."""
    read_fd, write_fd = os.pipe()
    sink = PipeSink(write_fd, {Stream.EVENTS, Stream.ALERTS, Stream.ASSETS})
    lines = b"".join(b'{"event":{"id":"e%d"},"n":%d}\n' % (i, i) for i in range(2000))

    def worker() -> None:
        sink.write_lines(Stream.EVENTS, lines[: len(lines) // 3 + 7])  # not on a line boundary…
        sink.write_lines(Stream.EVENTS, lines[len(lines) // 3 + 7 :])  # …as a whole they are
        sink.error("a.pcap: offset 40: truncated record")
        sink.write_lines(Stream.STATS, b"")  # nothing: nothing sent
        sink.error("a.pcap: offset 40: truncated record")
        sink.close()

    reported: list[str] = []
    supervisor = supervise(tmp_path, read_fd, worker, 0, reported.append)
    assert (tmp_path / "events.ndjson").read_bytes() == lines
    assert supervisor.ndjson.counts[Stream.EVENTS] == 2000
    assert reported == ["a.pcap: offset 40: truncated record"]


def test_merged_identity_lists_and_peers_as_the_inventory_keeps_them() -> None:
    def asset(last: str, peers: list[str], modes: list[str], uri: str) -> dict[str, Any]:
        return {
            "@timestamp": last,
            "otsentry": {
                "asset": {
                    "ip": "10.0.0.7",
                    "packets": 1,
                    "bytes": 10,
                    "first_seen": "2026-01-01T00:00:00Z",
                    "last_seen": last,
                    "roles": [],
                    "protocols": [],
                    "client_protocols": [],
                    "role_evidence": [],
                    "services": [],
                    "peers": {"count": len(peers), "ip": peers},
                    "identity": {"opcua": {"security_used": modes, "application_uri": uri}},
                }
            },
        }

    assets: dict[str, dict[str, Any]] = {}
    merge_asset(assets, asset("2026-01-01T00:00:09Z", ["10.0.0.66"], ["None", "Sign"], "new"))
    merge_asset(assets, asset("2026-01-01T00:00:05Z", ["10.0.0.9"], ["Sign", "Basic"], "old"))
    got = assets["10.0.0.7"]["otsentry"]["asset"]
    assert got["identity"]["opcua"] == {
        "security_used": ["None", "Sign", "Basic"],  # every value either side saw
        "application_uri": "new",  # the host's more recent traffic has the last word
    }
    assert got["peers"] == {"count": 2, "ip": ["10.0.0.9", "10.0.0.66"]}  # numerically
