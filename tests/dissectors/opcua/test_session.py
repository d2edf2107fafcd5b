"""The OPC UA session on the lab's asyncua traffic and on chunks rebuilt from it, through the real
TCP reassembler."""

from __future__ import annotations

import os
import struct
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.capture import open_capture
from otsentry.config import Config
from otsentry.dissectors.opcua import SPEC, OpcUaSession, probe
from otsentry.model import Direction
from otsentry.pipeline import Pipeline
from tests.conftest import LAB_PCAPS
from tests.dissectors.harness import FlowHarness
from tests.dissectors.s7comm.lab_streams import Segments, flows_to_port

NORMAL = LAB_PCAPS / "opcua_normal.pcap"
pytestmark = pytest.mark.skipif(not NORMAL.exists(), reason="lab capture missing")
BASIC256SHA256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def harness(**kw: Any) -> FlowHarness:
    return FlowHarness(factory=OpcUaSession, **kw)


def lab_flows() -> list[Segments]:
    return flows_to_port(NORMAL, 4840)


def replay(segments: Segments, h: FlowHarness | None = None) -> FlowHarness:
    h = h if h is not None else harness()
    for i, (from_client, payload) in enumerate(segments):
        h.send(from_client, payload, ts=i * 1_000_000)
    return h


def chunks_of(blob: bytes) -> list[bytes]:
    """Split a direction's bytes into whole UA TCP chunks."""
    out, pos = [], 0
    while pos + 8 <= len(blob):
        size = struct.unpack_from("<I", blob, pos + 4)[0]
        out.append(blob[pos : pos + size])
        pos += size
    return out


def ua_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def chunk(mtype: bytes, ctype: bytes, body: bytes) -> bytes:
    return mtype + ctype + struct.pack("<I", 8 + len(body)) + body


def test_lab_sessions_pair_every_service_call() -> None:
    events = []
    for flow in lab_flows():
        h = replay(flow)
        h.close()
        events.extend(h.events)
    actions = [e.action for e in events]
    for action in (
        "opcua-hello",
        "opcua-open-secure-channel",
        "opcua-get-endpoints",
        "opcua-create-session",
        "opcua-activate-session",
        "opcua-browse",
        "opcua-read",
        "opcua-write",
        "opcua-call",
        "opcua-create-subscription",
        "opcua-create-monitored-items",
        "opcua-publish",
        "opcua-close-session",
    ):
        assert action in actions, action
    paired = [e for e in events if e.envelope.direction is Direction.TRANSACTION]
    assert len(paired) >= 60
    reads = [e for e in events if e.action == "opcua-read"]
    assert all(e.fields["channel"]["security_policy"] == "None" for e in reads)
    assert all(not e.anomalies for e in reads)
    hello = next(e for e in events if e.action == "opcua-hello")
    assert hello.fields["endpoint_url"].startswith("opc.tcp://")


def _client_server(flow: Segments) -> tuple[bytes, bytes]:
    return (b"".join(p for c, p in flow if c), b"".join(p for c, p in flow if not c))


def pdus(h: FlowHarness) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k != "frame"} for p in h.pdus]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 100_000), max_size=50, unique=True))
def test_any_segmentation_gives_the_same_messages(cuts: list[int]) -> None:
    flow = max(lab_flows(), key=len)
    client, server = _client_server(flow)
    whole = harness()
    whole.send(True, client)
    whole.send(False, server)
    whole.close()
    h = harness()
    for blob, from_client in ((client, True), (server, False)):
        points = sorted({c % len(blob) for c in cuts} - {0})
        for a, b in pairwise([0, *points, len(blob)]):
            h.send(from_client, blob[a:b])
    h.close()
    assert pdus(h) == pdus(whole)
    assert h.streams[True].stats.no_progress == 0 and h.streams[True].stats.dissector_errors == 0


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=300)), max_size=30),
    gaps=st.lists(st.integers(0, 29), max_size=3),
)
def test_arbitrary_bytes_never_raise_and_always_progress(
    data: list[tuple[bool, bytes]], gaps: list[int]
) -> None:
    h = harness()
    for i, (from_client, payload) in enumerate(data):
        if i in gaps:
            h.skip(from_client, 9)
        h.send(from_client, payload)
    h.close()
    stats = h.streams[True].stats
    assert stats.dissector_errors == 0 and stats.no_progress == 0


def rechunk(message: bytes, pieces: int) -> list[bytes]:
    """A single-chunk MSG cut into ``pieces`` chunks ('C'… then 'F'), as a stack would send it:
    each with the channel id, token id, its own sequence number and the same request id."""
    mtype = message[:3]
    scid, token, seq, rid = struct.unpack_from("<IIII", message, 8)
    body = message[24:]
    step = -(-len(body) // pieces)
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    out = []
    for i, part in enumerate(parts):
        ctype = b"F" if i == len(parts) - 1 else b"C"
        out.append(chunk(mtype, ctype, struct.pack("<IIII", scid, token, seq + i, rid) + part))
    return out


def test_a_message_in_many_chunks_is_one_record_at_its_last_chunk() -> None:
    flow = max(lab_flows(), key=len)
    client, server = _client_server(flow)
    server_chunks = chunks_of(server)
    # the largest single-chunk MSG response, cut into 5 chunks
    big = max((c for c in server_chunks if c[:4] == b"MSGF"), key=len)
    whole = harness()
    for c in chunks_of(client):
        whole.send(True, c)
    for c in server_chunks:
        whole.send(False, c)
    expected = next(
        p
        for p in pdus(whole)
        if p.get("sequence_number") is not None
        and p["direction"] == "response"
        and p.get("request_id") == struct.unpack_from("<I", big, 20)[0]
    )
    h = harness()
    for c in chunks_of(client):
        h.send(True, c)
    for c in server_chunks:
        if c is big:
            pieces = rechunk(big, 5)
            for piece in pieces:
                h.send(False, piece)
        else:
            h.send(False, c)
    got = next(
        p
        for p in h.pdus
        if p["direction"] == "response" and p.get("request_id") == expected["request_id"]
    )
    assert got["chunk_count"] == 5
    assert got["service_id"] == expected["service_id"]
    assert got["frame"] == h.frame - (len(server_chunks) - server_chunks.index(big) - 1)
    assert "opcua.sequence_gap" not in got["anomalies"]


def test_abort_chunk_and_sequence_gap() -> None:
    flow = max(lab_flows(), key=len)
    client_chunks = chunks_of(_client_server(flow)[0])
    msg = next(c for c in client_chunks if c[:4] == b"MSGF")
    h = harness()
    for c in client_chunks[: client_chunks.index(msg)]:
        h.send(True, c)
    first, *_ = rechunk(msg, 3)
    scid, token, seq, rid = struct.unpack_from("<IIII", first, 8)
    h.send(True, first)
    h.send(True, chunk(b"MSG", b"A", struct.pack("<IIII", scid, token, seq + 1, rid) + b"\0" * 8))
    # a chunk whose sequence number skips 10
    h.send(True, msg[:16] + struct.pack("<I", seq + 12) + msg[20:])
    anomalies = [a for e in h.events for a in e.anomalies]
    assert "opcua.chunk_aborted" in anomalies
    assert "opcua.sequence_gap" in [a for p in h.pdus for a in p["anomalies"]]


def test_encrypted_channel_is_flagged_never_decoded() -> None:
    h = harness()
    opn = chunk(
        b"OPN",
        b"F",
        struct.pack("<I", 0)
        + ua_string(BASIC256SHA256)
        + struct.pack("<i", 4)
        + b"cert"
        + struct.pack("<i", 20)
        + b"\x11" * 20
        + os.urandom(200),
    )
    h.send(True, opn)
    msg = chunk(b"MSG", b"F", struct.pack("<II", 7, 1) + os.urandom(120))
    h.send(True, msg)
    h.close()
    records = [p for p in h.pdus if p.get("message_type") in ("OPN", "MSG")]
    assert [p.get("encrypted") for p in records] == [True, True]
    assert all("service_id" not in p for p in records)
    opn_event = next(e for e in h.events if e.action == "opcua-open-secure-channel")
    channel = opn_event.fields["channel"]
    assert channel["security_policy"] == "Basic256Sha256"
    assert (
        channel["client_certificate_thumbprint"] == __import__("hashlib").sha1(b"cert").hexdigest()
    )
    assert any(e.action == "opcua-encrypted-message" for e in h.events)


def test_junk_and_bad_chunk_size_are_reported_and_the_stream_recovers() -> None:
    flow = max(lab_flows(), key=len)
    client_chunks = chunks_of(_client_server(flow)[0])
    h = harness()
    h.send(True, b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n")
    h.send(True, client_chunks[0])  # HEL
    h.close()
    junk = [e for e in h.events if e.action == "opcua-non-opcua-payload"]
    assert len(junk) == 1 and "opcua.non_opcua_payload" in junk[0].anomalies
    assert any(p.get("message_type") == "HEL" for p in h.pdus)
    h = harness()
    h.send(True, b"MSGF" + struct.pack("<I", 3) + b"\0" * 16)
    h.close()
    assert any("opcua.invalid_chunk_size" in e.anomalies for e in h.events)


def test_unsolicited_response() -> None:
    flow = max(lab_flows(), key=len)
    server_chunks = chunks_of(_client_server(flow)[1])
    msg = next(c for c in server_chunks if c[:4] == b"MSGF")
    h = harness()
    h.send(False, msg)
    assert any("opcua.unsolicited_response" in e.anomalies for e in h.events)


def test_probe() -> None:
    flow = max(lab_flows(), key=len)
    hel = chunks_of(_client_server(flow)[0])[0]
    assert probe(hel, True)
    assert not probe(b"GET / HTTP/1.1\r\n\r\n", True)
    assert not probe(bytes.fromhex("0300001602f080"), True)  # a TPKT
    assert SPEC.ports == (4840,)


def test_identity_and_security_reach_the_assets(tmp_path: Path) -> None:
    """Server and client descriptions, the security offered and the security used."""
    secure = LAB_PCAPS / "opcua_secure.pcap"
    if not secure.exists():
        pytest.skip("lab capture missing")
    pipeline = Pipeline(Config(), tmp_path)
    with open_capture(secure) as reader:
        pipeline.run(reader)
    pipeline.finish()
    assets = {a.ip: dict(a.identity) for a in pipeline.inventory.assets()}
    server = assets["10.10.30.7"]["opcua"]
    assert server["application_uri"] == "urn:otsentry:lab:opcsrv"
    assert set(server["security_offered"]) == {
        "Basic256Sha256/SignAndEncrypt",
        "Basic256Sha256/Sign",
    }
    assert set(server["security_used"]) == set(server["security_offered"])
    assert assets["10.10.30.10"]["opcua"]["application_type"] == "Client"
