"""Opt-in: against a real Elasticsearch cluster (8.11+ or 9.x) when ``OTSENTRY_TEST_ES_URL`` is set.

Credentials and TLS come from the same environment variables the sensor reads:
``OTSENTRY_ES_API_KEY`` or ``OTSENTRY_ES_USERNAME`` / ``OTSENTRY_ES_PASSWORD``, and
``OTSENTRY_ES_CA_FILE`` or ``OTSENTRY_ES_FINGERPRINT`` for an https URL. Each run writes to its
own data stream namespace and deletes it afterwards. Covers what the in-memory test server
cannot: data streams, ILM, TLS verification, API keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from otsentry.config import Config
from otsentry.sinks.clients import ClusterClient, connect, settings_for
from tests.conftest import LAB_PCAPS

URL = os.environ.get("OTSENTRY_TEST_ES_URL")

pytestmark = pytest.mark.skipif(
    not URL, reason="set OTSENTRY_TEST_ES_URL (and credentials) to run against a real cluster"
)


def otsentry(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otsentry", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def client() -> Iterator[ClusterClient]:
    c = connect(settings_for("elasticsearch", URL, Config()))
    yield c
    c.close()


@pytest.fixture
def namespace(client: ClusterClient) -> Iterator[str]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    client.request("DELETE", f"/_data_stream/*-otsentry.*-{ns}")


def test_check_setup_and_idempotence() -> None:
    assert URL
    check = otsentry("es", "check", "--es", URL)
    assert check.returncode == 0, check.stdout + check.stderr
    first = otsentry("es", "setup", "--es", URL, "--json")
    assert first.returncode == 0, first.stderr
    second = otsentry("es", "setup", "--es", URL, "--json")
    assert second.returncode == 0, second.stderr
    steps = [step for c in json.loads(second.stdout)["clusters"] for step in c["steps"]]
    assert steps and {step["outcome"] for step in steps} <= {"unchanged", "skipped"}


def test_replay_lands_in_data_streams_with_ilm(
    client: ClusterClient, namespace: str, tmp_path: Path
) -> None:
    assert URL
    assert otsentry("es", "setup", "--es", URL).returncode == 0
    config = tmp_path / "otsentry.yaml"
    config.write_text(f"outputs:\n  elasticsearch:\n    namespace: {namespace}\n")
    out = tmp_path / "out"
    captures = [LAB_PCAPS / "modbus_attacks.pcap", LAB_PCAPS / "s7comm_attacks.pcap"]
    done = otsentry("replay", *captures, "--out", out, "--es", URL, "-c", config, "--json", "-q")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)["outputs"]["elasticsearch"]
    assert stats["spool"]["documents"] == 0 and stats["rejected"] == 0

    stream = f"logs-otsentry.alert-{namespace}"
    status, body = client.request("GET", f"/_data_stream/{stream}")
    assert status == 200, body
    (info,) = body["data_streams"]
    assert info.get("ilm_policy") == "otsentry"
    client.request("POST", f"/{stream}/_refresh")
    alerts = [orjson.loads(line) for line in (out / "alerts.ndjson").read_bytes().splitlines()]
    status, body = client.request("GET", f"/{stream}/_count")
    assert body["count"] == len(alerts)
    status, hits = client.request(
        "POST",
        f"/{stream}/_search",
        {"query": {"term": {"source.ip": "10.10.30.0/24"}}, "size": 1},
    )
    hit = hits["hits"]["hits"][0]["_source"]
    assert hit["event"]["ingested"]
    status, mapping = client.request("GET", f"/{stream}/_mapping/field/source.ip")
    (index,) = mapping.values() if len(mapping) == 1 else list(mapping.values())[:1]
    assert index["mappings"]["source.ip"]["mapping"]["ip"]["type"] == "ip"


def test_api_key_is_what_authenticates(client: ClusterClient) -> None:
    if not os.environ.get("OTSENTRY_ES_API_KEY"):
        pytest.skip("OTSENTRY_ES_API_KEY not set")
    status, body = client.request("GET", "/_security/_authenticate")
    assert status == 200
    assert body["authentication_type"] == "api_key"


def test_tls_is_verified(tmp_path: Path) -> None:
    assert URL
    if not URL.startswith("https://"):
        pytest.skip("OTSENTRY_TEST_ES_URL is not https")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OTSENTRY_ES_CA_FILE", "OTSENTRY_ES_FINGERPRINT")
    }
    bogus = tmp_path / "other-ca.pem"  # a CA that signed nothing the cluster holds
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(bogus),
            "-days",
            "1",
            "-subj",
            "/CN=otsentry-test-ca",
        ],
        check=True,
        capture_output=True,
    )
    env["OTSENTRY_ES_CA_FILE"] = str(bogus)
    done = subprocess.run(
        [sys.executable, "-m", "otsentry", "es", "check", "--es", URL],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1  # a certificate the given CA did not sign is refused
