"""``otsentry replay --workers N``: the lab captures replayed by N processes split by host pair
give the documents of one process (as multisets: the order differs), save what the command's
help says differs; the frame split is symmetric and keeps IP fragments together; bad input
stops as a single replay does, with the message printed once."""

from __future__ import annotations

import json
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    Frame,
    open_capture,
)
from otsentry.capture.split import host_pair_hash, keep_share, numbered_share, share_of
from otsentry.config import Config
from otsentry.stages import decoder_for
from tests.conftest import LAB_PCAPS, ROOT, lab_pcaps
from tests.conftest import run_otsentry as otsentry

CAPTURES = lab_pcaps()
NETWORK_ATTACKS = LAB_PCAPS / "network_attacks_modbus.pcap"
#: correlation rules counting over several host pairs: each worker counts its share only
CROSS_PAIR_RULES = frozenset({"OTS-NET-ICS-HOST-SWEEP"})
#: ARP alerts come from worker 0, which sees every ARP frame but only its own host pairs' flows:
#: what they say of the services behind the claimed address may be less than one process says
ARP_ACTIONS = frozenset({"network-ip-mac-change", "network-arp-conflict"})


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def normalised(doc: dict[str, Any]) -> bytes:
    """A document without what differs between any two runs: ids, creation time, evidence."""
    doc = orjson.loads(orjson.dumps(doc))
    doc["event"].pop("id", None)
    doc["event"].pop("created", None)
    evidence = doc.get("otsentry", {}).get("evidence")
    if isinstance(evidence, dict):
        evidence.pop("pcap", None)
    if doc["event"].get("action") in ARP_ACTIONS:
        doc["event"].pop("reason", None)
        doc["otsentry"].get("network", {}).pop("ics_protocols", None)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def replay(out: Path, *args: str | Path) -> dict[str, Any]:
    done = otsentry("replay", *CAPTURES, "--out", out, "--quiet", "--json", *args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    stats: dict[str, Any] = json.loads(done.stdout)
    return stats


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, dict[str, Any]]]:
    """The lab captures replayed by one process, two workers and three."""
    base = tmp_path_factory.mktemp("replay")
    return {n: (base / f"w{n}", replay(base / f"w{n}", "--workers", str(n))) for n in (1, 2, 3)}


@pytest.mark.parametrize("workers", [2, 3])
def test_protocol_events_are_those_of_one_process(runs: Any, workers: int) -> None:
    one, _ = runs[1]
    many, _ = runs[workers]
    want = Counter(normalised(d) for d in lines(one / "events.ndjson"))
    assert len(want) > 3000
    # frame numbers included: the workers number frames as the capture does
    assert Counter(normalised(d) for d in lines(many / "events.ndjson")) == want


@pytest.mark.parametrize("workers", [2, 3])
def test_per_flow_alerts_are_those_of_one_process(runs: Any, workers: int) -> None:
    one, _ = runs[1]
    many, _ = runs[workers]
    alerts = lines(many / "alerts.ndjson")

    def per_flow(docs: list[dict[str, Any]]) -> Counter[bytes]:
        return Counter(normalised(d) for d in docs if d["rule"]["id"] not in CROSS_PAIR_RULES)

    want = per_flow(lines(one / "alerts.ndjson"))
    assert sum(want.values()) >= 40
    assert per_flow(alerts) == want
    for doc in alerts:  # evidence pcaps stay with their worker, and the alerts say where
        pcap = doc.get("otsentry", {}).get("evidence", {}).get("pcap")
        if pcap:
            assert pcap.startswith("workers/") and (many / pcap).is_file(), pcap


def test_assets_and_stats_are_those_of_one_process(runs: Any) -> None:
    one, whole = runs[1]
    for workers in (2, 3):
        many, stats = runs[workers]
        for field in ("packets", "bytes", "flows", "events", "pdus", "alerts_total"):
            if field != "alerts_total":
                assert stats[field] == whole[field], (workers, field)
        # each worker counts only the frames it kept: together, every frame once
        assert stats["workers"]["count"] == workers
        assert sum(stats["workers"]["packets"]) == whole["packets"]
        assert all(stats["workers"]["packets"])
        assert stats["capture"]["files"] == whole["capture"]["files"]
        assert json.loads((many / "stats.json").read_text())["packets"] == whole["packets"]

        def assets(out: Path) -> dict[str, Any]:
            return {d["otsentry"]["asset"]["ip"]: d for d in lines(out / "assets.ndjson")}

        got, want = assets(many), assets(one)
        assert set(got) == set(want)
        for ip, doc in want.items():
            assert identity_sets(got[ip]) == identity_sets(doc), (workers, ip)
            assert got[ip]["otsentry"]["asset"] == doc["otsentry"]["asset"], (workers, ip)


def identity_sets(doc: dict[str, Any]) -> dict[str, Any]:
    """An asset's identity facts with accumulated values as sets; the lists made sorted in
    ``doc`` (several workers add to them in worker order, one process in time order)."""
    facts = doc["otsentry"]["asset"].get("identity", {})
    found = {}
    for protocol, values in facts.items():
        for name, value in values.items():
            if isinstance(value, list):
                values[name] = sorted(value, key=str)
                found[f"{protocol}.{name}"] = set(map(str, value))
    return found


def test_cross_pair_rule_counts_within_one_share(tmp_path: Path) -> None:
    """The host sweep rule (5 hosts refused within 60 s, per client) fires on the whole
    capture; split in two, each worker sees fewer than 5 of the swept hosts, so it does not."""
    rule = yaml.safe_load((ROOT / "rules/network/ics_host_sweep.yml").read_text())
    threshold = rule["correlation"]["condition"]["gte"]
    scanner = "10.10.30.66"
    with open_capture(NETWORK_ATTACKS) as reader:
        frames = list(reader)
    decoder = decoder_for(Config())
    swept: dict[int, set[bytes]] = {0: set(), 1: set()}
    for frame in frames:
        pkt = decoder.decode(frame[1], frame[2], frame[0])
        if pkt is not None and pkt[0][0] == bytes(map(int, scanner.split("."))):
            share = share_of(host_pair_hash(frame[1], frame[2]), 2)
            swept[share].add(pkt[0][2])  # the destination address
    assert len(swept[0] | swept[1]) >= threshold
    assert all(len(hosts) < threshold for hosts in swept.values())

    def sweeps(*args: str) -> list[dict[str, Any]]:
        out = tmp_path / f"o{len(args)}"
        done = otsentry("replay", NETWORK_ATTACKS, "--out", out, "--quiet", *args)
        assert done.returncode == 0, done.stderr
        return [
            d for d in lines(out / "alerts.ndjson") if d["rule"]["id"] == "OTS-NET-ICS-HOST-SWEEP"
        ]

    (alert,) = sweeps()
    assert alert["source"]["ip"] == scanner
    assert sweeps("--workers", "2") == []


def test_cross_pair_rules_listed_are_every_such_rule() -> None:
    """Every built-in correlation rule not grouped by both ends of a host pair is listed as
    one whose alerts may differ between one process and several."""
    found = set()
    for path in (ROOT / "rules").rglob("*.yml"):
        rule = yaml.safe_load(path.read_text())
        group = set(rule.get("correlation", {}).get("group-by", ["source.ip", "destination.ip"]))
        if not {"source.ip", "destination.ip"} <= group:
            found.add(rule["id"])
    assert found == CROSS_PAIR_RULES


def test_arp_alerts_know_only_worker_zeros_services(runs: Any) -> None:
    """ARP alerts are raised once (worker 0 sees every ARP frame); the services they name for
    the claimed address are among those one process names."""
    one, _ = runs[1]

    def arp(out: Path) -> dict[tuple[str, str], list[str]]:
        return {
            (d["event"]["action"], d["@timestamp"]): d["otsentry"]["network"]["ics_protocols"]
            for d in lines(out / "alerts.ndjson")
            if d["event"]["action"] in ARP_ACTIONS
        }

    want = arp(one)
    assert want
    for workers in (2, 3):
        got = arp(runs[workers][0])
        assert set(got) == set(want)
        for key, protocols in got.items():
            assert set(protocols) <= set(want[key]), key


# -- the frame split ---------------------------------------------------------------------------

ADDRESSES_V4 = st.binary(min_size=4, max_size=4)
ADDRESSES_V6 = st.binary(min_size=16, max_size=16)


def ipv4(src: bytes, dst: bytes, payload: bytes, ident: int = 1, frag: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, 64, 17, 0, src, dst
    )
    return header + payload


def ipv6(src: bytes, dst: bytes, payload: bytes, fragment: tuple[int, int] | None = None) -> bytes:
    if fragment is not None:
        offset, more = fragment
        payload = struct.pack("!BBHI", 17, 0, offset << 3 | more, 7) + payload
    nxt = 44 if fragment else 17
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, src, dst) + payload


def link(kind: str, packet: bytes, vlans: int) -> tuple[int, bytes]:
    """``packet`` (IPv4 or IPv6) framed as one link type."""
    v6 = packet[0] >> 4 == 6
    etype = 0x86DD if v6 else 0x0800
    if kind == "ethernet":
        tags = b"".join(struct.pack("!HH", 0x8100, 100 + i) for i in range(vlans))
        return LINKTYPE_ETHERNET, b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", etype) + (
            packet
        )
    if kind == "sll":
        return LINKTYPE_LINUX_SLL, struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, etype) + packet
    if kind == "sll2":
        return LINKTYPE_LINUX_SLL2, struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, b"") + packet
    if kind == "null":
        return LINKTYPE_NULL, struct.pack("<I", 30 if v6 else 2) + packet
    if kind == "loop":
        return LINKTYPE_LOOP, struct.pack(">I", 24 if v6 else 2) + packet
    return LINKTYPE_RAW if v6 else LINKTYPE_IPV4, packet


LINKS = st.sampled_from(["ethernet", "sll", "sll2", "null", "loop", "raw"])


@settings(max_examples=300, deadline=None)
@given(
    src=ADDRESSES_V4 | ADDRESSES_V6,
    dst=ADDRESSES_V4 | ADDRESSES_V6,
    kind=LINKS,
    vlans=st.integers(0, 2),
    payload=st.binary(max_size=64),
    workers=st.integers(2, 8),
)
def test_both_directions_and_every_link_type_fall_to_one_worker(
    src: bytes, dst: bytes, kind: str, vlans: int, payload: bytes, workers: int
) -> None:
    if len(src) != len(dst):
        dst = (dst * 4)[: len(src)]
    build = ipv4 if len(src) == 4 else ipv6
    there = link(kind, build(src, dst, payload), vlans)
    back = link(kind, build(dst, src, payload), vlans)
    plain = link("raw", build(src, dst, b""), 0)
    pair = host_pair_hash(*there)
    assert pair is not None
    assert host_pair_hash(*back) == pair == host_pair_hash(*plain)
    assert share_of(pair, workers) == share_of(host_pair_hash(*back), workers)


@settings(max_examples=200, deadline=None)
@given(
    src=ADDRESSES_V4,
    dst=ADDRESSES_V4,
    src6=ADDRESSES_V6,
    dst6=ADDRESSES_V6,
    pieces=st.lists(st.tuples(st.integers(0, 8191), st.booleans()), min_size=1, max_size=6),
    vlans=st.integers(0, 2),
    workers=st.integers(2, 8),
)
def test_every_fragment_of_a_datagram_falls_to_its_worker(
    src: bytes,
    dst: bytes,
    src6: bytes,
    dst6: bytes,
    pieces: list[tuple[int, bool]],
    vlans: int,
    workers: int,
) -> None:
    whole4 = host_pair_hash(*link("ethernet", ipv4(src, dst, b"x" * 8), vlans))
    whole6 = host_pair_hash(*link("ethernet", ipv6(src6, dst6, b"x" * 8), vlans))
    for offset, more in pieces:
        # later fragments carry no transport header: only the addresses decide
        frag4 = link("ethernet", ipv4(src, dst, b"\xff" * 8, 9, offset | more << 13), vlans)
        frag6 = link("ethernet", ipv6(src6, dst6, b"\xff" * 8, (offset, int(more))), vlans)
        assert share_of(host_pair_hash(*frag4), workers) == share_of(whole4, workers)
        assert share_of(host_pair_hash(*frag6), workers) == share_of(whole6, workers)


@pytest.mark.parametrize(
    "frame",
    [
        (LINKTYPE_ETHERNET, b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28),  # ARP
        (LINKTYPE_ETHERNET, b"\xff" * 12 + b"\x81\x00\x00\x64\x08\x06" + b"\x00" * 28),
        (LINKTYPE_ETHERNET, b"\xff" * 12 + b"\x88\xcc" + b"\x00" * 40),  # LLDP
        (LINKTYPE_ETHERNET, b"\xff" * 12 + b"\x08\x00" + b"\x45" * 10),  # truncated IPv4
        (LINKTYPE_ETHERNET, b"\xff" * 10),
        (LINKTYPE_RAW, b""),
        (LINKTYPE_NULL, struct.pack("<I", 7) + b"\x00" * 40),
        (147, b"\x00" * 60),  # a link type without IP
    ],
)
def test_frames_without_ip_go_to_worker_zero_once(frame: tuple[int, bytes]) -> None:
    assert host_pair_hash(*frame) is None
    frames = [(1, *frame)]
    kept = [list(keep_share(frames, n, 3)) for n in range(3)]
    assert kept == [frames, [], []]


def lab_frames() -> Iterator[Any]:
    for path in CAPTURES:
        with open_capture(path) as reader:
            yield from reader


def test_split_agrees_with_the_decoder_and_numbers_the_capture_frames() -> None:
    frames = list(lab_frames())
    decoder = decoder_for(Config())
    for frame in frames:
        pkt = decoder.decode(frame[1], frame[2], frame[0])
        if pkt is not None and len(pkt[0][0]) == 4:
            src, _, dst, *_ = pkt[0]  # the flow key
            want = int.from_bytes(src) + int.from_bytes(dst)
            assert host_pair_hash(frame[1], frame[2]) == want
    shares: list[list[Frame]] = []
    numbers: list[list[int]] = []
    for n in range(3):
        kept, nums = numbered_share(frames, n, 3)
        pairs = list(zip(kept, nums, strict=False))  # a number taken after each frame
        shares.append([frame for frame, _ in pairs])
        numbers.append([number for _, number in pairs])
    assert sorted(x for share in numbers for x in share) == list(range(1, len(frames) + 1))
    for n, (share, nums) in enumerate(zip(shares, numbers, strict=True)):
        assert len(share) > len(frames) // 20  # every worker has work on the lab captures
        assert share == [frames[i - 1] for i in nums]
        assert share == list(keep_share(frames, n, 3))


# -- bad input ---------------------------------------------------------------------------------


def test_truncated_capture_exits_1_with_file_and_offset_once(tmp_path: Path) -> None:
    data = (LAB_PCAPS / "modbus_attacks.pcap").read_bytes()
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(data[: len(data) // 2])
    single = otsentry("replay", broken, "--out", tmp_path / "one", "--quiet")
    done = otsentry("replay", broken, "--out", tmp_path / "many", "--quiet", "--workers", "3")
    assert (single.returncode, done.returncode) == (1, 1)
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in single.stderr.splitlines() if line.startswith("error:")]
    (message,) = errors
    assert str(broken) in message and "offset" in message
    # the output so far is kept, as one process keeps it
    stats = json.loads((tmp_path / "many" / "stats.json").read_text())
    want = json.loads((tmp_path / "one" / "stats.json").read_text())
    assert stats["packets"] == want["packets"] > 0
    assert stats["capture"]["errors"] == want["capture"]["errors"]
    assert Counter(map(normalised, lines(tmp_path / "many" / "events.ndjson"))) == Counter(
        map(normalised, lines(tmp_path / "one" / "events.ndjson"))
    )


def test_keep_going_reports_once_and_replays_the_rest(tmp_path: Path) -> None:
    good = LAB_PCAPS / "s7comm_attacks.pcap"
    broken = tmp_path / "a.pcap"
    broken.write_bytes((LAB_PCAPS / "modbus_attacks.pcap").read_bytes()[:5000])
    out = tmp_path / "o"
    done = otsentry(
        "replay", broken, good, "--out", out, "--quiet", "--json", "--keep-going", "--workers", "2"
    )
    assert done.returncode == 1
    assert len([line for line in done.stderr.splitlines() if line.startswith("error:")]) == 1
    stats = json.loads(done.stdout)
    with open_capture(good) as reader:
        assert stats["packets"] > sum(1 for _ in reader)
    assert stats["events"]["s7comm"] > 0


def test_workers_append_whole_event_lines_to_one_file(runs: Any) -> None:
    """The workers append their events to events.ndjson themselves, in batches of whole lines:
    the file holds each event once, every line a document, and no worker has one of its own."""
    many, stats = runs[3]
    data = (many / "events.ndjson").read_bytes()
    assert len(data) > 2 << 20  # more than one 1 MiB batch per worker: batches interleave
    assert data.endswith(b"\n")
    docs = lines(many / "events.ndjson")
    assert len(docs) == sum(stats["events"].values())
    assert len({d["event"]["id"] for d in docs}) == len(docs)
    assert not list((many / "workers").glob("*/events.ndjson"))


def test_evidence_file_cap_is_shared_by_the_workers(tmp_path: Path) -> None:
    """``alerts.evidence.max_files`` caps the run: N workers write at most ceil(max/N) each."""
    config = tmp_path / "otsentry.yaml"
    config.write_text("alerts:\n  evidence:\n    max_files: 5\n")

    def evidence(out: Path, *args: str) -> tuple[int, dict[str, int]]:
        done = otsentry("replay", *CAPTURES, "--out", out, "--quiet", "--json", "-c", config, *args)
        assert done.returncode == 0, done.stderr
        files = len(list(out.glob("evidence/*.pcap"))) + len(
            list(out.glob("workers/*/evidence/*.pcap"))
        )
        stats: dict[str, int] = json.loads(done.stdout)["evidence"]
        return files, stats

    files, stats = evidence(tmp_path / "one")
    assert files == stats["files_written"] == 5
    assert stats["skipped_max_files"] > 0
    files, stats = evidence(tmp_path / "two", "--workers", "2")
    assert files == stats["files_written"] <= 6  # 3 each
    assert stats["skipped_max_files"] > 0
    files, stats = evidence(tmp_path / "five", "--workers", "5")
    assert files == stats["files_written"] <= 5  # 1 each


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_below_one_are_refused_before_anything(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "o"
    done = otsentry("replay", CAPTURES[0], "--out", out, "--workers", workers)
    assert done.returncode == 2
    assert "--workers" in done.stderr
    assert not out.exists()


def test_broken_rule_file_exits_2_before_the_fork(tmp_path: Path) -> None:
    rules = tmp_path / "bad.yml"
    rules.write_text("id: X\ndetection: [\n")
    out = tmp_path / "o"
    done = otsentry("replay", CAPTURES[0], "--out", out, "--workers", "2", "--rules", rules)
    assert done.returncode == 2
    assert str(rules) in done.stderr and "Traceback" not in done.stderr
    assert not (out / "workers").exists()


#: baseline checks whose state spans the segment (new assets: reported by each worker that
#: sees one; the outlier model's windows close on the segment's clock, which follows the share)
SEGMENT_WIDE_ANOMALIES = frozenset({"OTS-ANOM-NEW-ASSET", "OTS-ANOM-MODEL-OUTLIER"})


def test_baseline_per_link_anomalies_are_those_of_one_process(tmp_path: Path) -> None:
    captures = [LAB_PCAPS / "modbus_attacks.pcap", NETWORK_ATTACKS]

    def alerts(*args: str) -> list[dict[str, Any]]:
        out = tmp_path / f"o{len(args)}"
        done = otsentry(
            "replay", *captures, "--baseline", ROOT / "baselines", "--out", out, "-q", *args
        )
        assert done.returncode == 0, done.stderr
        return lines(out / "alerts.ndjson")

    one, many = alerts(), alerts("--workers", "2")

    def per_link(docs: list[dict[str, Any]]) -> Counter[bytes]:
        skip = CROSS_PAIR_RULES | SEGMENT_WIDE_ANOMALIES
        return Counter(normalised(d) for d in docs if d["rule"]["id"] not in skip)

    want = per_link(one)
    assert sum(1 for d in one if d["rule"]["id"].startswith("OTS-ANOM-")) >= 10
    assert per_link(many) == want

    def new_assets(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {
            (d["otsentry"]["anomaly"]["item"]["ip"], d["otsentry"]["anomaly"]["item"]["mac"])
            for d in docs
            if d["rule"]["id"] == "OTS-ANOM-NEW-ASSET"
        }

    assert new_assets(one)
    assert new_assets(many) == new_assets(one)  # the same hosts, told once per worker or more


def test_documents_reach_the_cluster_through_the_supervisor(osmem_url: str, tmp_path: Path) -> None:
    from tests.sinks.faultproxy import _call, osmem_count, osmem_ids

    done = otsentry("es", "setup", "--opensearch", osmem_url, "--no-data-streams")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    attacks = [LAB_PCAPS / "modbus_attacks.pcap", LAB_PCAPS / "s7comm_attacks.pcap"]
    done = otsentry(
        "replay", *attacks, "--out", out, "--opensearch", osmem_url, "-q", "--workers", "2"
    )
    assert done.returncode == 0, done.stderr
    alerts = sorted(str(d["event"]["id"]) for d in lines(out / "alerts.ndjson"))
    assert len(alerts) >= 10
    assert osmem_ids(osmem_url, "logs-otsentry.alert-*") == alerts
    events = lines(out / "events.ndjson")
    for protocol in ("modbus", "s7comm"):
        wanted = sorted(
            str(e["event"]["id"]) for e in events if e["network"]["protocol"] == protocol
        )
        assert osmem_ids(osmem_url, f"logs-otsentry.{protocol}-*") == wanted, protocol
    assert osmem_count(osmem_url, "metrics-otsentry.stats-*") == 1  # the run's stats, once
    stats = json.loads((out / "stats.json").read_text())
    found = _call(osmem_url, "POST", "/metrics-otsentry.stats-*/_search", {"size": 1})
    (hit,) = found["hits"]["hits"]
    assert hit["_source"]["@timestamp"] == stats["last_packet"]  # packet time, as one process
    sent = len(alerts) + len(events) + len(lines(out / "assets.ndjson")) + 1
    assert stats["outputs"]["opensearch"]["sent"] == sent
    assert stats["outputs"]["opensearch"]["spooled"] == 0


def test_interrupted_replay_exits_130_and_keeps_what_was_counted(tmp_path: Path) -> None:
    frames = list(lab_frames())
    big = tmp_path / "big.pcap"
    with big.open("wb") as f:  # the lab captures 40 times over, an hour apart: seconds of work
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        for copy in range(40):
            for ts, _, data in frames:
                ts += copy * 3_600_000_000_000
                f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)))
                f.write(data)
    out = tmp_path / "o"
    argv = [
        sys.executable,
        "-m",
        "otsentry",
        "replay",
        str(big),
        "--out",
        str(out),
        "-q",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = out / "events.ndjson"
    deadline = time.monotonic() + 60
    while not (events.is_file() and events.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    stats = json.loads((out / "stats.json").read_text())
    assert 0 < stats["packets"] < 40 * len(frames)
    assert stats["packets"] == sum(stats["workers"]["packets"])
