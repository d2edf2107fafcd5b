"""Cluster settings from config and environment, and what the clients put on the wire."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otsentry.config import ClusterConfig, Config, ConfigError, OutputsConfig
from otsentry.sinks.clients import ClusterUnavailable, connect, describe_error, settings_for


def config(**options: object) -> Config:
    return Config(
        outputs=OutputsConfig(elasticsearch=ClusterConfig(**options))  # type: ignore[arg-type]
    )


def test_url_from_option_wins_and_secrets_come_from_environment() -> None:
    cfg = config(url="https://es-config:9200", username="cfg-user", password="cfg-pass")
    env = {"OTSENTRY_ES_USERNAME": "env-user", "OTSENTRY_ES_PASSWORD": "env-pass"}
    s = settings_for("elasticsearch", "https://es-option:9200/", cfg, environ=env)
    assert s.hosts == ("https://es-option:9200",)
    assert (s.username, s.password) == ("env-user", "env-pass")
    assert "env-pass" not in repr(s)
    s = settings_for("elasticsearch", None, cfg, environ={})
    assert s.hosts == ("https://es-config:9200",)
    assert (s.username, s.password) == ("cfg-user", "cfg-pass")
    assert s.verify_certs  # TLS verification is on unless the config turns it off


def test_api_key_ca_file_and_fingerprint_from_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "OTSENTRY_ES_API_KEY": "c2VjcmV0LWtleQ==",
        "OTSENTRY_ES_CA_FILE": str(ca),
        "OTSENTRY_ES_FINGERPRINT": "AB:CD",
    }
    s = settings_for("elasticsearch", "https://es:9200", Config(), environ=env)
    assert (s.api_key, s.ca_file, s.fingerprint) == ("c2VjcmV0LWtleQ==", ca, "AB:CD")
    assert "c2VjcmV0" not in repr(s)


@pytest.mark.parametrize(
    ("kind", "url", "env", "problem"),
    [
        ("elasticsearch", "http://elastic:pw@es:9200", {}, "credentials in the URL"),
        ("elasticsearch", "ftp://es:9200", {}, "expected an http:// or https:// URL"),
        ("elasticsearch", None, {}, "no elasticsearch URL"),
        ("opensearch", "https://os:9200", {"OTSENTRY_OPENSEARCH_API_KEY": "k"}, "not an API key"),
        (
            "elasticsearch",
            "https://es:9200",
            {"OTSENTRY_ES_CA_FILE": "/nonexistent.pem"},
            "CA file",
        ),
        ("elasticsearch", "https://es:9200", {"OTSENTRY_ES_USERNAME": "u"}, "go together"),
    ],
)
def test_unusable_settings(kind: str, url: str | None, env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        settings_for(kind, url, Config(), environ=env)  # type: ignore[arg-type]
    assert "pw" not in str(info.value)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []  # noqa: RUF012 - one test's record

    def do_GET(self) -> None:
        _Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"version": {"number": "9.1.0"}, "tagline": "You Know, for Search"}'
        self.send_response(200)
        self.send_header("content-type", "application/vnd.elasticsearch+json; compatible-with=8")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_elasticsearch_client_speaks_version_8_which_8x_and_9x_clusters_accept(
    recorder: str,
) -> None:
    import elasticsearch

    assert elasticsearch.__versionstr__.startswith("8.")
    env = {"OTSENTRY_ES_API_KEY": "aWQ6a2V5"}
    client = connect(settings_for("elasticsearch", recorder, Config(), environ=env))
    assert client.info()["version"]["number"] == "9.1.0"
    (headers,) = _Recorder.seen
    assert "compatible-with=8" in headers["accept"]
    assert headers["authorization"] == "ApiKey aWQ6a2V5"


def test_unreachable_cluster_is_named_plainly() -> None:
    for kind in ("elasticsearch", "opensearch"):
        client = connect(settings_for(kind, "http://127.0.0.1:9", Config(), environ={}))  # type: ignore[arg-type]
        with pytest.raises(ClusterUnavailable) as info:
            client.info()
        assert str(info.value) == "connection refused"
    assert describe_error(TimeoutError("read timed out")) == "timed out"
