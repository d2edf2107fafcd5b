"""TLS to the cluster: verified by default, trusted through a CA file or a pinned fingerprint.

A small TLS terminator in front of the test cluster stands in for an https cluster; its
certificate is signed by a CA the test makes with openssl.
"""

from __future__ import annotations

import contextlib
import hashlib
import select
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otsentry.config import ClusterConfig, Config, OutputsConfig
from otsentry.sinks.clients import ClusterUnavailable, connect, settings_for
from tests.esnode import PlainJsonNode

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "2", "-subj", "/CN=otsentry test CA")  # fmt: skip
    _openssl("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.pem"),
             "-days", "2", "-extfile", str(d / "san.ext"))  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture
def https_url(pki: dict[str, Path], osmem_url: str) -> Iterator[str]:
    """https://127.0.0.1:PORT terminating TLS and forwarding bytes to the test cluster."""
    upstream = osmem_url.removeprefix("http://").split(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def pump(tls: ssl.SSLSocket, back: socket.socket) -> None:
        """Both directions in one thread: an SSL socket must not be read and written at once."""
        try:
            while True:
                readable, _, _ = select.select([tls, back], [], [], 5.0)
                if not readable:
                    continue
                if tls in readable:
                    chunk = tls.recv(65536)
                    if not chunk:
                        return
                    back.sendall(chunk)
                    while tls.pending():
                        back.sendall(tls.recv(tls.pending()))
                if back in readable:
                    chunk = back.recv(65536)
                    if not chunk:
                        return
                    tls.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (tls, back):
                with contextlib.suppress(OSError):
                    sock.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()  # the client refused our certificate
                continue
            back = socket.create_connection((upstream[0], int(upstream[1])))
            threading.Thread(target=pump, args=(tls, back), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def _fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


@pytest.mark.parametrize("kind", ["opensearch", "elasticsearch"])
def test_unknown_certificate_is_refused_by_default(kind: str, https_url: str) -> None:
    client = connect(settings_for(kind, https_url, Config(), environ={}), node_class=PlainJsonNode)  # type: ignore[arg-type]
    with pytest.raises(ClusterUnavailable, match="certificate"):
        client.info()


@pytest.mark.parametrize("kind", ["opensearch", "elasticsearch"])
def test_ca_file_from_environment(kind: str, https_url: str, pki: dict[str, Path]) -> None:
    prefix = "OTSENTRY_ES_" if kind == "elasticsearch" else "OTSENTRY_OPENSEARCH_"
    env = {f"{prefix}CA_FILE": str(pki["ca"])}
    client = connect(settings_for(kind, https_url, Config(), environ=env), node_class=PlainJsonNode)  # type: ignore[arg-type]
    assert client.info()["version"]["number"]


def test_pinned_fingerprint_without_ca(https_url: str, pki: dict[str, Path]) -> None:
    env = {"OTSENTRY_ES_FINGERPRINT": _fingerprint(pki["cert"])}
    client = connect(
        settings_for("elasticsearch", https_url, Config(), environ=env), node_class=PlainJsonNode
    )
    assert client.info()["version"]["number"]
    wrong = {"OTSENTRY_ES_FINGERPRINT": "00" * 32}
    client = connect(
        settings_for("elasticsearch", https_url, Config(), environ=wrong), node_class=PlainJsonNode
    )
    with pytest.raises(ClusterUnavailable):
        client.info()


def test_verification_off_only_when_the_config_says_so(https_url: str) -> None:
    config = Config(outputs=OutputsConfig(opensearch=ClusterConfig(verify_certs=False)))
    client = connect(settings_for("opensearch", https_url, config, environ={}))
    assert client.info()["version"]["number"]
