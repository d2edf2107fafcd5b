"""``otsentry kibana setup`` against a small HTTP server standing in for Kibana's import API, and
(opt-in, ``OTSENTRY_TEST_KIBANA_URL``) against a real Kibana."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from otsentry import kibana
from otsentry.cli.app import app

SECRET = "s3cr3t-Pa55-w0rd"
OBJECTS = kibana.list_objects()


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKibana:
    """Records every request; answers from ``replies`` (path → status, JSON body)."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    version: str = "8.11.4"
    replies: dict[str, tuple[int, Any]] = field(default_factory=dict)

    def imports(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/api/saved_objects/_import")]

    def answer(self, path: str) -> tuple[int, Any]:
        if path in self.replies:
            return self.replies[path]
        if path == "/api/status":
            return 200, {"name": "kibana", "version": {"number": self.version}}
        if path.endswith("/api/saved_objects/_import"):
            return 200, all_imported()
        return 404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}


def all_imported() -> dict[str, Any]:
    return {
        "success": True,
        "successCount": len(OBJECTS),
        "successResults": [
            {"type": o.type, "id": o.id, "meta": {"title": o.title, "icon": "x"}} for o in OBJECTS
        ],
    }


def serve(fake: FakeKibana, context: ssl.SSLContext | None = None) -> Iterator[FakeKibana]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            fake.requests.append(
                Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            status, body = fake.answer(parts.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    scheme = "https" if context else "http"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTSENTRY_KIBANA_", "OTSENTRY_ES_")):
            monkeypatch.delenv(name)


@pytest.fixture
def fake() -> Iterator[FakeKibana]:
    yield from serve(FakeKibana())


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, ["kibana", "setup", *args], env=env)


def multipart_file(req: Request) -> tuple[str, bytes]:
    """The uploaded part's filename and bytes."""
    head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + req.body)
    assert message.is_multipart()
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return str(part.get_filename()), payload


def test_import_request_shape_and_success(fake: FakeKibana) -> None:
    result = run("--url", fake.url + "/", env={"OTSENTRY_KIBANA_API_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert f"imported {len(OBJECTS)} objects" in result.output
    assert SECRET not in result.output
    [req] = fake.imports()
    assert req.method == "POST"
    assert req.path == "/api/saved_objects/_import"
    assert req.query == {"overwrite": ["true"]}
    assert req.headers["kbn-xsrf"]
    assert req.headers["authorization"] == f"ApiKey {SECRET}"
    assert req.headers["content-type"].startswith("multipart/form-data; boundary=")
    filename, payload = multipart_file(req)
    assert filename.endswith(".ndjson")
    assert payload == kibana.objects_ndjson()
    # the version check went first, with the same credentials
    assert fake.requests[0].path == "/api/status"
    assert fake.requests[0].headers["authorization"] == f"ApiKey {SECRET}"


@pytest.mark.parametrize(
    ("env", "user"),
    [
        ({"OTSENTRY_KIBANA_USERNAME": "analyst", "OTSENTRY_KIBANA_PASSWORD": SECRET}, "analyst"),
        ({"OTSENTRY_ES_USERNAME": "elastic", "OTSENTRY_ES_PASSWORD": SECRET}, "elastic"),
        (
            {
                "OTSENTRY_KIBANA_USERNAME": "analyst",
                "OTSENTRY_KIBANA_PASSWORD": SECRET,
                "OTSENTRY_ES_API_KEY": "es-key",
            },
            "analyst",
        ),
    ],
)
def test_basic_auth_from_environment(fake: FakeKibana, env: dict[str, str], user: str) -> None:
    result = run("--url", fake.url, env=env)
    assert result.exit_code == 0, result.output
    [req] = fake.imports()
    expected = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
    assert req.headers["authorization"] == f"Basic {expected}"
    assert SECRET not in result.output


def test_es_api_key_is_the_fallback(fake: FakeKibana) -> None:
    assert run("--url", fake.url, env={"OTSENTRY_ES_API_KEY": SECRET}).exit_code == 0
    assert fake.imports()[0].headers["authorization"] == f"ApiKey {SECRET}"


def test_config_file_credentials_are_the_last_fallback(fake: FakeKibana, tmp_path: Path) -> None:
    config = tmp_path / "otsentry.yaml"
    config.write_text(
        "outputs:\n  elasticsearch:\n    url: https://es01:9200\n"
        f"    username: cfg-user\n    password: {SECRET}\n"
    )
    assert run("--url", fake.url, "--config", str(config)).exit_code == 0
    expected = base64.b64encode(f"cfg-user:{SECRET}".encode()).decode()
    assert fake.imports()[0].headers["authorization"] == f"Basic {expected}"

    env = {"OTSENTRY_ES_API_KEY": "from-env"}
    assert run("--url", fake.url, "--config", str(config), env=env).exit_code == 0
    assert fake.imports()[1].headers["authorization"] == "ApiKey from-env"


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "otsentry.yaml"
    config.write_text("outputs:\n  elasticsearch:\n    colour: blue\n")
    result = run("--url", "http://127.0.0.1:5601", "--config", str(config))
    assert result.exit_code == 2
    assert "colour" in result.output


def test_no_credentials_sends_no_authorization(fake: FakeKibana) -> None:
    assert run("--url", fake.url).exit_code == 0
    assert "authorization" not in fake.imports()[0].headers


def test_space_goes_into_the_path(fake: FakeKibana) -> None:
    result = run("--url", fake.url, "--space", "ot-soc")
    assert result.exit_code == 0, result.output
    assert fake.imports()[0].path == "/s/ot-soc/api/saved_objects/_import"


def test_partial_errors_are_reported_per_object(fake: FakeKibana) -> None:
    answer = all_imported()
    bad = answer["successResults"][-2:]
    answer["successResults"] = answer["successResults"][:-2]
    answer["success"] = False
    answer["errors"] = [
        {
            "type": bad[0]["type"],
            "id": bad[0]["id"],
            "title": bad[0]["meta"]["title"],
            "error": {
                "type": "missing_references",
                "references": [{"type": "index-pattern", "id": "otsentry-logs"}],
            },
        },
        {
            "type": bad[1]["type"],
            "id": bad[1]["id"],
            "error": {"type": "unknown", "message": "Document has a newer typeMigrationVersion"},
        },
    ]
    fake.replies["/api/saved_objects/_import"] = (200, answer)
    result = run("--url", fake.url)
    assert result.exit_code == 1
    assert f"{bad[0]['id']}" in result.output
    assert "missing references: index-pattern otsentry-logs" in result.output
    assert f"{bad[1]['id']} ({bad[1]['meta']['title']}): unknown: Document has a newer" in (
        result.output
    )
    assert f"imported {len(OBJECTS) - 2} objects, 2 failed" in result.output

    as_json = run("--url", fake.url, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert len(report["imported"]) == len(OBJECTS) - 2
    assert [e["id"] for e in report["errors"]] == [b["id"] for b in bad]


def test_json_success(fake: FakeKibana) -> None:
    result = run("--url", fake.url, "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {(o["type"], o["id"]) for o in report["imported"]} == {(o.type, o.id) for o in OBJECTS}


def test_unauthorized_names_the_credentials_source_and_hides_the_secret(fake: FakeKibana) -> None:
    refusal = {
        "statusCode": 401,
        "error": "Unauthorized",
        "message": f"[security_exception]: unable to authenticate user [elastic] with {SECRET}",
    }
    fake.replies["/api/status"] = (401, refusal)
    env = {"OTSENTRY_ES_USERNAME": "elastic", "OTSENTRY_ES_PASSWORD": SECRET}
    result = run("--url", fake.url, env=env)
    assert result.exit_code == 1
    assert "401" in result.output
    assert "OTSENTRY_ES_USERNAME/PASSWORD" in result.output
    assert SECRET not in result.output
    assert not fake.imports()
    assert "Traceback" not in result.output


def test_refusal_of_the_import_itself_is_one_line_without_secrets(fake: FakeKibana) -> None:
    fake.replies["/api/saved_objects/_import"] = (
        400,
        {"statusCode": 400, "error": "Bad Request", "message": f"bad file {SECRET}"},
    )
    result = run("--url", fake.url, env={"OTSENTRY_KIBANA_API_KEY": SECRET})
    assert result.exit_code == 1
    assert "answered HTTP 400: bad file ***" in result.output
    assert SECRET not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_space_is_named(fake: FakeKibana) -> None:
    fake.replies["/s/nope/api/saved_objects/_import"] = (404, {"statusCode": 404})
    result = run("--url", fake.url, "--space", "nope")
    assert result.exit_code == 1
    assert "no space 'nope'" in result.output


def test_kibana_older_than_8_11_is_refused_before_importing(fake: FakeKibana) -> None:
    fake.version = "8.10.2"
    result = run("--url", fake.url)
    assert result.exit_code == 1
    assert "8.10.2" in result.output and "8.11 or newer" in result.output
    assert not fake.imports()


def test_unreadable_status_does_not_block_the_import(fake: FakeKibana) -> None:
    fake.replies["/api/status"] = (503, {"message": "not ready"})
    assert run("--url", fake.url).exit_code == 0
    assert len(fake.imports()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_one_line_exit_1() -> None:
    result = run("--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "unreachable: connection refused" in lines[0]
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--url", f"http://elastic:{SECRET}@127.0.0.1:5601"], {}, "credentials in the URL"),
        (["--url", "ftp://127.0.0.1"], {}, "http:// or https://"),
        ([], {}, "--url is required"),
        (["--url", "http://127.0.0.1:5601", "--space", "Bad Space"], {}, "no space id"),
        (["--url", "http://127.0.0.1:5601"], {"OTSENTRY_KIBANA_USERNAME": "x"}, "go together"),
        (
            ["--url", "http://127.0.0.1:5601"],
            {"OTSENTRY_KIBANA_CA_FILE": "/nonexistent/ca.crt"},
            "is not a file",
        ),
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str], message: str) -> None:
    result = run(*args, env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert SECRET not in result.output


def test_url_from_environment(fake: FakeKibana) -> None:
    assert run(env={"OTSENTRY_KIBANA_URL": fake.url}).exit_code == 0
    assert len(fake.imports()) == 1


def test_dry_run_lists_the_objects_and_contacts_nobody() -> None:
    result = run("--dry-run", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(OBJECTS)
    assert lines[0].split()[:2] == ["index-pattern", "otsentry-logs"]
    listed = json.loads(run("--dry-run", "--json").stdout)
    assert [(o["type"], o["id"]) for o in listed] == [(o.type, o.id) for o in OBJECTS]


# --- TLS ----------------------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    pytest.importorskip("cryptography")
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otsentry test kibana")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "kibana.crt", tmp / "kibana.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_fake(tmp_path: Path) -> Iterator[tuple[FakeKibana, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for fake in serve(FakeKibana(), context):
        yield fake, cert


def test_tls_is_verified_and_the_ca_file_comes_from_the_environment(
    tls_fake: tuple[FakeKibana, Path],
) -> None:
    fake, cert = tls_fake
    refused = run("--url", fake.url)
    assert refused.exit_code == 1
    assert "TLS verification failed" in refused.output
    assert "OTSENTRY_KIBANA_CA_FILE" in refused.output
    assert not fake.requests

    trusted = run("--url", fake.url, env={"OTSENTRY_KIBANA_CA_FILE": str(cert)})
    assert trusted.exit_code == 0, trusted.output
    assert len(fake.imports()) == 1

    via_es = run("--url", fake.url, env={"OTSENTRY_ES_CA_FILE": str(cert)})
    assert via_es.exit_code == 0, via_es.output


# --- a real Kibana (opt-in) ---------------------------------------------------------------------

REAL_KIBANA = os.environ.get("OTSENTRY_TEST_KIBANA_URL")
#: the credentials the sensor would read, kept before the other tests' clean environment
REAL_ENV = {
    k: v for k, v in os.environ.items() if k.startswith(("OTSENTRY_KIBANA_", "OTSENTRY_ES_"))
}


@pytest.mark.skipif(
    not REAL_KIBANA,
    reason="set OTSENTRY_TEST_KIBANA_URL (and OTSENTRY_KIBANA_* or OTSENTRY_ES_* credentials)",
)
def test_real_kibana_import_is_complete_and_repeatable() -> None:
    """Imports twice (the second overwrites), then reads every object back. Credentials and CA
    file come from the variables ``otsentry kibana setup`` reads."""
    import urllib3

    assert REAL_KIBANA is not None
    auth = kibana.KibanaAuth.from_env(REAL_ENV)
    for _ in range(2):
        result = kibana.import_objects(REAL_KIBANA, auth=auth)
        assert result.ok, result.errors
        assert {(o.type, o.id) for o in result.imported} == {(o.type, o.id) for o in OBJECTS}
    pool = urllib3.PoolManager(ca_certs=str(auth.ca_file) if auth.ca_file else None)
    body = json.dumps([{"type": o.type, "id": o.id} for o in OBJECTS])
    resp = pool.request(
        "POST",
        REAL_KIBANA.rstrip("/") + "/api/saved_objects/_bulk_get",
        body=body,
        headers={"kbn-xsrf": "otsentry", "Content-Type": "application/json", **auth.headers()},
    )
    assert resp.status == 200
    found = json.loads(resp.data)["saved_objects"]
    assert [o.get("error") for o in found] == [None] * len(OBJECTS)
