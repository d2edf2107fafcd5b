"""The S7 session on the lab's python-snap7 traffic and on hand-made malformed TPDUs, through the
real TCP reassembler."""

from __future__ import annotations

import struct
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.dissect.base import Tracer
from otsentry.dissectors.s7comm import SPEC, S7Session, probe
from otsentry.model import Alert, Direction, Event
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS, replay_events
from tests.dissectors.harness import FlowHarness
from tests.dissectors.s7comm.lab_streams import S7_NORMAL, Segments, flows_to_port

pytestmark = pytest.mark.skipif(not S7_NORMAL.exists(), reason="lab capture missing")


def harness(**kw: Any) -> FlowHarness:
    return FlowHarness(factory=S7Session, **kw)


def lab_flow() -> Segments:
    (flow,) = flows_to_port(S7_NORMAL)
    return flow


def replay(segments: Segments, h: FlowHarness | None = None) -> FlowHarness:
    h = h if h is not None else harness()
    for i, (from_client, payload) in enumerate(segments):
        h.send(from_client, payload, ts=i * 1_000_000)
    return h


def tpkt(cotp: bytes) -> bytes:
    return struct.pack(">BBH", 3, 0, 4 + len(cotp)) + cotp


def dt(user_data: bytes, eot: bool = True) -> bytes:
    return tpkt(bytes([2, 0xF0, 0x80 if eot else 0x00]) + user_data)


def s7(rosctr: int, ref: int, param: bytes, data: bytes = b"", error: bytes = b"") -> bytes:
    head = struct.pack(">BBHHHH", 0x32, rosctr, 0, ref, len(param), len(data))
    return head + (error if rosctr in (2, 3) else b"") + param + data


READ_DB1 = bytes.fromhex("0401120a10020004000184000000")  # read var: 1 item, DB1.DBB0, 4 bytes


def test_lab_session_pairs_every_job_and_knows_the_hmi() -> None:
    h = replay(lab_flow())
    h.close()
    s7_events = [e for e in h.events if not e.action.startswith("s7comm-cotp-")]
    assert all(e.envelope.direction is Direction.TRANSACTION for e in s7_events)
    actions = [e.action for e in s7_events]
    assert actions.count("s7comm-read-var") == 180
    assert actions.count("s7comm-write-var") == 3
    assert actions[0] == "s7comm-setup-communication"
    cotp = [e for e in h.events if e.action.startswith("s7comm-cotp-")]
    assert [e.action for e in cotp][:2] == [
        "s7comm-cotp-connection-request",
        "s7comm-cotp-connection-confirm",
    ]
    request = cotp[0].fields
    assert (request["src_tsap"], request["dst_tsap"], request["connection_type"]) == (
        "0x0100",
        "0x0202",
        "op",
    )
    read = next(e for e in s7_events if e.action == "s7comm-read-var")
    assert read.fields["connection"]["connection_type"] == "op"  # an HMI, not an engineering PG
    item = read.fields["items"][0]
    assert item["area_name"] == "data_block" and item["db"] >= 1
    assert read.fields["values"][0]["return_code_name"] == "success"
    assert h.pdu_count == 372  # tshark: 372 S7comm PDUs


def pdus_without_frames(h: FlowHarness) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "frame"} for p in h.pdus]


REFERENCE = None


def reference() -> list[dict[str, Any]]:
    global REFERENCE
    if REFERENCE is None:
        h = replay(lab_flow())
        h.close()
        REFERENCE = pdus_without_frames(h)
    return REFERENCE


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 10_000), max_size=60, unique=True), data=st.data())
def test_any_segmentation_gives_the_same_pdus(cuts: list[int], data: st.DataObject) -> None:
    flow = lab_flow()
    client = b"".join(p for c, p in flow if c)
    server = b"".join(p for c, p in flow if not c)
    h = harness()

    def cut(blob: bytes) -> list[bytes]:
        points = sorted({c % len(blob) for c in cuts} - {0})
        bounds = [0, *points, len(blob)]
        return [blob[a:b] for a, b in pairwise(bounds)]

    # interleave: every client piece, then the server's (pairing only needs jobs first)
    for piece in cut(client):
        h.send(True, piece)
    for piece in cut(server):
        h.send(False, piece)
    h.close()
    ours = pdus_without_frames(h)
    ref = reference()
    for direction in ("request", "response"):
        assert [p for p in ours if p["direction"] == direction] == [
            p for p in ref if p["direction"] == direction
        ]
    assert h.streams[True].stats.no_progress == 0
    assert h.streams[True].stats.dissector_errors == 0


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=300)), max_size=30),
    gaps=st.lists(st.integers(0, 29), max_size=3),
)
def test_arbitrary_bytes_never_raise_and_always_progress(
    chunks: list[tuple[bool, bytes]], gaps: list[int]
) -> None:
    h = harness()
    for i, (from_client, payload) in enumerate(chunks):
        if i in gaps:
            h.skip(from_client, 5)
        h.send(from_client, payload)
    h.close()
    stats = h.streams[True].stats
    assert stats.dissector_errors == 0 and stats.no_progress == 0


def test_s7_pdu_split_over_cotp_dt_tpdus() -> None:
    job = s7(1, 7, READ_DB1)
    h = harness()
    h.send(True, dt(job[:9], eot=False) + dt(job[9:15], eot=False))
    h.send(True, dt(job[15:]))
    (pdu,) = h.pdus
    assert (pdu["rosctr"], pdu["pdu_reference"], pdu["function"], pdu["item_count"]) == (1, 7, 4, 1)
    assert pdu["frame"] == 2 and pdu["items"][0]["byte"] == 0 and pdu["items"][0]["db"] == 1


def test_several_tpkts_in_one_segment_and_one_tpkt_over_many() -> None:
    jobs = b"".join(dt(s7(1, ref, READ_DB1)) for ref in range(1, 6))
    h = harness()
    h.send(True, jobs[:3])
    h.send(True, jobs[3:40])
    h.send(True, jobs[40:])
    assert [p["pdu_reference"] for p in h.pdus] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("payload", "anomaly"),
    [
        (dt(s7(9, 1, READ_DB1)), "s7comm.unknown_rosctr"),
        (dt(s7(1, 1, bytes.fromhex("99"))), "s7comm.unknown_function"),
        (dt(s7(1, 1, bytes.fromhex("0402") + READ_DB1[2:])), "s7comm.item_count_mismatch"),
        (dt(s7(1, 1, READ_DB1)[:-2]), "s7comm.invalid_length"),
        (tpkt(bytes([9, 0xF0, 0x80])), "s7comm.invalid_cotp_length"),
        (dt(bytes.fromhex("4500001c")), "s7comm.unknown_protocol"),
    ],
    ids=["rosctr", "function", "item-count", "s7-length", "cotp-length", "not-s7"],
)
def test_malformed_pdus_carry_stable_anomaly_ids(payload: bytes, anomaly: str) -> None:
    h = harness()
    h.send(True, payload)
    h.send(True, dt(s7(1, 2, READ_DB1)))  # still in step afterwards
    h.close()
    assert any(anomaly in e.anomalies for e in h.events), [e.anomalies for e in h.events]
    assert h.pdus[-1]["pdu_reference"] == 2 and not h.pdus[-1]["anomalies"]


def test_unsolicited_ack_and_flooding() -> None:
    h = harness(max_open_transactions=4)
    h.send(False, dt(s7(3, 99, bytes.fromhex("0401"), bytes.fromhex("ff040020deadbeef"))))
    for ref in range(1, 11):
        h.send(True, dt(s7(1, ref, READ_DB1)))
    assert "s7comm.unsolicited_ack" in h.events[0].anomalies
    flooded = [e for e in h.events if "s7comm.flooded" in e.anomalies]
    assert [e.fields["pdu_reference"] for e in flooded] == [1, 2, 3, 4, 5, 6]
    assert len(h.session.pending) == 4


def test_junk_is_one_event_and_the_stream_recovers() -> None:
    h = harness()
    h.send(True, b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n")
    h.send(True, dt(s7(1, 3, READ_DB1)))
    h.close()
    junk = [e for e in h.events if e.action == "s7comm-non-s7-payload"]
    assert len(junk) == 1 and junk[0].anomalies == ("s7comm.non_s7_payload",)
    assert [p["pdu_reference"] for p in h.pdus if "pdu_reference" in p] == [3]


def test_connection_ending_inside_a_tpkt_is_reported() -> None:
    h = harness()
    h.send(True, dt(s7(1, 3, READ_DB1))[:12])
    h.close()
    (event,) = h.events
    assert event.action == "s7comm-truncated-tpkt"
    assert event.anomalies == ("s7comm.invalid_tpkt_length",)


def test_probe() -> None:
    first_client = next(p for c, p in lab_flow() if c)
    assert probe(first_client, True)  # the COTP connection request
    assert probe(dt(s7(1, 1, READ_DB1)) * 2, True)
    assert not probe(b"GET / HTTP/1.1\r\n\r\n", True)
    assert not probe(bytes.fromhex("000100000006010300000001"), True)  # a Modbus ADU
    assert SPEC.ports == (102,)


@pytest.mark.parametrize("name", ["s7comm_normal.pcap", "s7comm_engineering.pcap"])
def test_short_read_var_path_records_what_the_general_path_records(
    name: str, tmp_path: Path
) -> None:
    """Read var jobs and acks take a short path unless PDUs are traced: same events either way."""
    path = LAB_PCAPS / name
    if not path.exists():
        pytest.skip(f"{path} missing")

    def events(tracer: Tracer | None, out: Path) -> list[tuple[Any, ...]]:
        seen: list[tuple[Any, ...]] = []

        def hook(event: Event) -> list[Alert]:
            env = event.envelope
            seen.append(
                (env.ts, env.direction, event.action, event.fields, event.anomalies)
                + (event.outcome, event.duration_ns, event.identity)
            )
            return []

        pipeline = Pipeline(Config(), out, tracer=tracer)
        pipeline.event_hooks.append(hook)
        with open_capture(path) as reader:
            pipeline.run(reader)
        pipeline.finish()
        return seen

    short = events(None, tmp_path / "a")
    general = events(lambda *args: None, tmp_path / "b")
    assert len(short) > 150
    assert short == general


def test_a_refused_userdata_request_keeps_what_was_asked(tmp_path: Path) -> None:
    """python-snap7 answers requests it does not support under group 4 / read SZL: the event
    still names the request's group and sub-function, and keeps the answer's apart."""
    path = LAB_PCAPS / "s7comm_attacks.pcap"
    if not path.exists():
        pytest.skip("lab capture missing")
    seen = [e for e in replay_events(path, tmp_path)[0] if "response_userdata_group" in e.fields]
    by_action = {e.action: e.fields for e in seen}
    force = by_action["s7comm-force"]
    assert (force["userdata_group"], force["userdata_subfunction"]) == (1, 9)
    assert force["userdata_group_name"] == "programmer_commands"
    assert (force["response_userdata_group"], force["response_userdata_subfunction"]) == (4, 1)
